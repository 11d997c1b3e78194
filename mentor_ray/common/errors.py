"""Errors a user can act on.

Every error raised for bad input or a bad setting is a :class:`MentorRayError` whose message is
one line: the file, field or flag; what was found; what is allowed. Command-line entry points
print it as ``error: <message>`` and exit with status 2 (see :func:`mentor_ray.cli.run`). The limits
of the environment (a full disk, a permission, memory) are no MentorRayError, but have their one line
too (:func:`environment_message`, exit status 1).
"""

from __future__ import annotations

import typing
from typing import Any


class MentorRayError(Exception):
    """Base class: a problem with the user's input, data or settings (not a bug)."""

    def __init__(self, message: str):
        # One line, always: newlines would break the contract of the command-line tools.
        super().__init__(" ".join(str(message).split()))


class DataError(MentorRayError):
    """A dataset file is missing, unreadable or violates the MMRec layout."""


class ConfigError(MentorRayError):
    """A setting, flag or YAML key is unknown or has a value outside its allowed range."""


class CheckpointError(MentorRayError):
    """No checkpoint of a run can be read back."""


class DivergedError(MentorRayError):
    """Training produced a NaN or infinite loss."""


class EnvironmentProblem(MentorRayError):
    """The machine, not the input: a service that did not start (Ray's node on an overloaded machine). Exit 1,
    as for a full disk, where input errors exit 2."""

    exit_code = 1


class Interrupted(BaseException):
    """SIGTERM (or SIGHUP) arrived: raised in the main thread by the handler :func:`mentor_ray.cli.run` installs,
    so that ``finally`` blocks run (trials cancelled, Ray shut down) as for Ctrl-C's KeyboardInterrupt.
    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


SHOWN_LIMIT = 200  # characters of anything read from a user's file that an error message may repeat


def shown(value: object, limit: int = SHOWN_LIMIT, quote: bool = True) -> str:
    """``value`` as an error message may show it: ``repr`` (or ``str`` without ``quote``), on one line,
    cut to ``limit`` characters with the full length said, so that no message floods a terminal or
    repeats a file that was never meant to be shown."""
    text = repr(value) if quote else str(value)
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


# What to do about an OSError, by errno: each family of the environment's limits gets its advice here, and
# every OSError the same one-line form (environment_message); errnos not listed get the system's words only.
_OS_ADVICE = {
    "ENOSPC": "free some space, or write elsewhere",
    "EDQUOT": "your disk quota is used up; free some space, or write elsewhere",
    "EACCES": "check the permissions of that path, or choose another",
    "EPERM": "check the permissions of that path, or choose another",
    "EROFS": "that file system is read-only; choose a writable place",
    "ENAMETOOLONG": "use a shorter path (a name may have at most 255 bytes, a path 4,096)",
    "ENOENT": "check the path",
    "ENOTDIR": "a part of the path is a file, not a directory",
    "EISDIR": "it is a directory; give a file",
    "ELOOP": "the path has a symbolic link loop",
    "EIO": "the disk or network file system failed; check it (dmesg) and retry",
    "ENOMEM": "the system is out of memory; try smaller settings (batch_size, eval_batch_size, infonce_chunk) "
              "or fewer concurrent trials",
    "EXDEV": "source and target are on different file systems",
    # mkdir over a file: e.g. a file where the cache (MENTOR_RAY_CACHE) or one of its folders should be
    "EEXIST": "something is in the way (a file where a folder is needed, or a name taken); move it away, or "
              "choose another path",
}
MEMORY_ADVICE = ("try smaller settings (e.g. eval_batch_size, batch_size, infonce_chunk, embedding_dim, or "
                 "infonce_scope=batch), fewer concurrent trials, or a machine with more memory")


def environment_message(exc: BaseException) -> str | None:
    """The one line for an exception that is the environment's limit rather than a bug or bad input: an
    OSError with an errno (a full disk, a permission, a read-only file system, too many open files, a name
    too long, ...) names ``exc.filename`` and says what to do; running out of memory (MemoryError, or any
    ``*OutOfMemoryError`` such as CUDA's) suggests smaller settings; RecursionError says the input is nested
    too deeply. None for anything else. Never raises."""
    try:
        return _environment_message(exc)
    except Exception:  # noqa: BLE001 - called while reporting another error
        return None


def _environment_message(exc: BaseException) -> str | None:
    import errno as errno_

    if isinstance(exc, MemoryError) or any(c.__name__.endswith("OutOfMemoryError") for c in type(exc).__mro__):
        detail = shown(str(exc), 200, quote=False) if str(exc).strip() else "MemoryError"
        return f"out of memory ({detail}); {MEMORY_ADVICE}"
    if isinstance(exc, RecursionError):
        return "input nested too deeply, or a recursion without end (RecursionError)"
    if not isinstance(exc, OSError) or not isinstance(exc.errno, int):
        return None
    name = errno_.errorcode.get(exc.errno, f"errno {exc.errno}")
    reason = exc.strerror.lower() if exc.strerror else "operating system error"
    files = [f for f in (exc.filename, exc.filename2) if f is not None]
    where = " -> ".join(shown(str(f), SHOWN_LIMIT, quote=False) for f in files)
    code = name
    if name in ("ENOSPC", "EDQUOT") and files:
        free = _free_space(files[0])
        code += f"; {free} free on that file system" if free else ""
    line = f"{where}: {reason} ({code})" if where else f"{reason} ({code})"
    advice = _open_files_advice() if name in ("EMFILE", "ENFILE") else _OS_ADVICE.get(name)
    return f"{line}; {advice}" if advice else line


def _free_space(filename: object) -> str | None:
    """Free space on the file system of ``filename`` (its nearest existing parent), e.g. ``1.2 GB``."""
    import shutil
    from pathlib import Path

    path = Path(str(filename)).absolute()
    for candidate in (path, *path.parents):
        try:
            if candidate.exists():
                free = shutil.disk_usage(candidate).free
                break
        except OSError:
            continue
    else:
        return None
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if free < 1024 or unit == "TB":
            return f"{free:,} bytes" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return None


def _open_files_advice() -> str:
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = f" (now {soft:,})"
    except (ImportError, OSError, ValueError):
        limit = ""
    return f"raise the limit of open files{limit} with `ulimit -n`, or run fewer trials at once"


def check_flags(**bounds: tuple[float | None, float, bool]) -> None:
    """``flag=(value, low, strict)``: a one-line :class:`ConfigError` unless ``value`` is above ``low``
    (``strict``) or at least ``low``; ``None`` (flag not given) passes. Flag names use ``_`` for ``-``."""
    for flag, (value, low, strict) in bounds.items():
        if value is None or (value > low if strict else value >= low):
            continue
        rule = f"greater than {low:g}" if strict else f"at least {low:g}"
        raise ConfigError(f"--{flag.replace('_', '-')} {value:g}: must be {rule}")


def pydantic_message(source: str, exc: Exception, model: type | None = None) -> str:
    """One line from a pydantic ``ValidationError``: the key, what was found, what is allowed.

    ``source`` names where the values came from (a file, or ``override``); ``model`` is the
    pydantic model class, used to list the allowed keys when a key is unknown.
    """
    errors = exc.errors()  # type: ignore[attr-defined]
    first = errors[0]
    key = shown(".".join(str(p) for p in first.get("loc", ())), 120, quote=False) or "<root>"
    found = first.get("input")
    if first.get("type") == "extra_forbidden":
        allowed = _allowed_keys(model, first.get("loc", ()))
        hint = f"; {allowed_keys_text(allowed, key)}" if allowed else ""
        msg = f"{source}: unknown key '{key}'{hint}"
    else:
        rule = (first.get("ctx") or {}).get("error") if first.get("type") == "value_error" else None
        rule = rule or first.get("msg", "invalid value")  # a validator's own rule without pydantic's "Value error, "
        msg = f"{source}: key '{key}' = {shown(found)}: {rule}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return msg


ALLOWED_CHARS = 360  # an "allowed keys" list longer than this is cut to the keys closest to the one given


def allowed_keys_text(allowed, key: str) -> str:
    """``allowed keys: a, b, ...`` for an error line: every key while they fit in :data:`ALLOWED_CHARS`, else the
    ones closest to ``key`` and how many more there are (every model adds its own keys, so the full list
    grows past what one error line can carry)."""
    import difflib

    every = ", ".join(allowed)
    if len(every) <= ALLOWED_CHARS:
        return f"allowed keys: {every}"
    close = difflib.get_close_matches(str(key), list(allowed), n=8, cutoff=0.0)
    shown_keys, size = [], 0
    for k in close:
        if size + len(k) + 2 > ALLOWED_CHARS:
            break
        shown_keys.append(k)
        size += len(k) + 2
    return (f"closest allowed keys: {', '.join(shown_keys)} (and {len(allowed) - len(shown_keys)} more: "
            f"the training settings of mentor_ray/common/config.py and each model's own, docs/baselines/)")


def _allowed_keys(model: type | None, loc: tuple) -> list[str]:
    """Field names of the (possibly nested) pydantic model that holds the unknown key."""
    return sorted(keys_at(model, loc[:-1]))


def keys_at(model: Any, path: tuple) -> list[str]:
    """The keys of the JSON object at ``path`` in pydantic ``model`` (a field's alias where it has one), in their
    declared order; a field's model is found inside ``X | None`` and ``Annotated[X, ...]``. Empty where ``path``
    leads to no model."""
    for part in path:
        fields = getattr(model, "model_fields", None) or {}
        field = next((f for n, f in fields.items() if (f.alias or n) == str(part)), None)
        model = _model_in(field.annotation) if field else None
    fields = getattr(model, "model_fields", None) or {}
    return [f.alias or n for n, f in fields.items()]


def _model_in(annotation: Any) -> Any:
    """The pydantic model an annotation (``X | None``, ``Annotated[X, ...]``) holds, or None."""
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    return next((m for m in map(_model_in, typing.get_args(annotation)) if m is not None), None)
