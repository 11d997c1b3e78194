"""Errors a user can act on.

Every error raised for bad input or a bad setting is a :class:`MentorRayError` whose message is
one line: the file, field or flag; what was found; what is allowed. Command-line entry points
print it as ``error: <message>`` and exit with status 2 (see :func:`mentor_ray.cli.run`).
"""

from __future__ import annotations


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
    key = ".".join(str(p) for p in first.get("loc", ())) or "<root>"
    found = first.get("input")
    if first.get("type") == "extra_forbidden":
        allowed = _allowed_keys(model, first.get("loc", ()))
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        msg = f"{source}: unknown key '{key}'{hint}"
    else:
        msg = f"{source}: key '{key}' = {found!r}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return msg


def _allowed_keys(model: type | None, loc: tuple) -> list[str]:
    """Field names of the (possibly nested) pydantic model that holds the unknown key."""
    for part in loc[:-1]:
        if model is None or not hasattr(model, "model_fields"):
            return []
        field = model.model_fields.get(str(part))
        model = getattr(field, "annotation", None) if field else None
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if fields else []
