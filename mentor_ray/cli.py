"""The ``mentor-ray`` console script, and the plumbing every command shares.

Each subcommand is one module at the top of the package, also runnable as ``python -m mentor_ray.<name>``
(cluster command lines use that form)::

    mentor-ray train --dataset synth-small --variant mentor --max-epochs 20
    mentor-ray tune --dataset synth-tiny --space smoke --num-samples 4 --seeds 2 --results runs/r
    mentor-ray leaderboard --results runs/r --out runs/leaderboard
    mentor-ray <command> --help

Errors: bad input is one ``error:`` line and exit 2 (:class:`~mentor_ray.common.errors.MentorRayError`); a
full disk, a permission, too little memory one line naming the file and exit 1; anything else (a bug) one
``error: internal error: ...`` line naming the file its traceback was saved to, exit 1. ``--debug`` (before
or after the command) or ``MENTOR_RAY_DEBUG=1`` prints tracebacks on the terminal too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from mentor_ray.common.errors import Interrupted, MentorRayError, environment_message, shown

LOG_FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"

COMMANDS = {
    "data": "inspect a dataset, or convert the DiffMM layout",
    "synthetic": "list or write the synth-* stand-in datasets",
    "graphs": "build (or load from cache) a dataset's user-item and item kNN graphs",
    "train": "train MENTOR, an ablation or a baseline (in-process or on Ray Train)",
    "tune": "sweep a search space on Ray Tune, re-run the best point over seeds, ablate",
    "spaces": "show a search space",
    "results": "inspect a results store",
    "leaderboard": "paper-style tables and plots from a results store",
    "bench": "benchmarks written to docs/benchmarks.md, and the GPU check",
}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (it may be swapped, e.g. by a test's capture)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


# What would break a line on a terminal or in a log file (str.splitlines' boundaries), or drive the terminal (ESC,
# the other C0 controls but tab): escaped in mentor_ray's own log records and the error line, so that a path or
# name a user typed (--out $'a\nb') never splits one, nor rewrites the screen
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, 0x85) if c != 0x09}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def one_line(text: str) -> str:
    """``text`` with line breaks and terminal controls escaped (``\\n``, ``\\x1b``)."""
    return text.translate(_ESCAPES)


class _Formatter(logging.Formatter):
    """A logged exception (``log.exception``, ``exc_info=``) stays on the record's one line, as the errors of
    :func:`run` do: its type, message and the file its traceback was saved to (the traceback itself with
    ``--debug``). mentor_ray's own records are one line whatever they quote (:func:`one_line`); other
    libraries' records are left as they wrote them."""

    def format(self, record: logging.LogRecord) -> str:
        text = self._format(record)
        own = record.name == "mentor_ray" or record.name.startswith("mentor_ray.")
        return one_line(text) if own and not debugging() else text

    def _format(self, record: logging.LogRecord) -> str:
        if record.exc_info and record.exc_info[1] is not None and not debugging():
            exc = record.exc_info[1]
            saved = save_traceback(exc)
            where = f"; full traceback in {saved}" if saved else ""
            # a copy: other handlers of the same record (Ray's) keep theirs
            record = logging.makeLogRecord({**record.__dict__, "args": None, "exc_info": None, "exc_text": None,
                                            "msg": f"{record.getMessage()} ({type(exc).__name__}: "
                                                   f"{_message(exc, 200)}{where})"})
        return super().format(record)


def setup_logging(verbose: bool = False, level: int | None = None) -> None:
    """Log to stderr so that stdout stays for tables and JSON; ``level`` (default INFO, DEBUG when
    ``verbose``) e.g. WARNING for a command whose progress is printed, so that only its warnings and errors
    are logged, one line each."""
    handler = _StderrHandler()
    handler.setFormatter(_Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    level = level if level is not None else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Tune's TensorBoard logger renames every metric with "@" in it at INFO, once per result
    logging.getLogger("tensorboardX").setLevel(logging.WARNING)


# What an interrupted command tells the user to do next (a sweep: re-run it with --resume); a command
# that can be continued sets it with :func:`set_resume_hint` once it knows how.
_resume_hint: str | None = None


def set_resume_hint(hint: str | None) -> None:
    """The advice after ``error: interrupted (SIG...)``, e.g. ``re-run the same command with --resume``."""
    global _resume_hint
    _resume_hint = hint


def _interrupted(name: str, code: int) -> int:
    hint = f"; {_resume_hint}" if _resume_hint else ""
    print(f"error: interrupted ({name}){hint}", file=sys.stderr, flush=True)
    return code


@contextlib.contextmanager
def signals_as_exceptions():
    """SIGTERM and SIGHUP raise :class:`Interrupted` in the main thread (SIGINT already raises
    KeyboardInterrupt), so that a terminated command unwinds like Ctrl-C: trials cancelled, what finished
    recorded, Ray shut down. A second signal while unwinding is ignored rather than raised again inside a
    ``finally`` block. Off the main thread (where signals cannot be caught) nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)  # one unwinding at a time
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- the error boundary

DEBUG_FLAG = "--debug"
DEBUG_ENV = "MENTOR_RAY_DEBUG"
_debug = False


def debugging() -> bool:
    """Whether tracebacks go to the terminal: ``--debug``, or ``MENTOR_RAY_DEBUG`` set to anything but 0."""
    return _debug or os.environ.get(DEBUG_ENV, "0").strip() not in ("", "0")


def strip_debug(argv: Sequence[str]) -> tuple[list[str], bool]:
    """``argv`` without its ``--debug`` arguments (those before a ``--``), and whether there was one.

    Taken out before argparse runs, so that every command accepts it wherever it stands and no command's
    options (``SweepOptions(**vars(args))``) ever see it."""
    argv = list(argv)
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [a for a in argv[:end] if a != DEBUG_FLAG]
    return kept + argv[end:], len(kept) != end


def errors_dir() -> Path:
    """Where tracebacks are saved: ``errors/`` under the cache root (``$MENTOR_RAY_CACHE``); may raise OSError."""
    from mentor_ray.common.io import cache_root

    return cache_root() / "errors"


def save_traceback(exc: BaseException) -> Path | None:
    """Write ``exc``'s traceback, with the command line and versions, to a new file under :func:`errors_dir`
    (or the system's temporary directory when that cannot be written); its path, or None when neither can
    be written. Never raises: it runs while another error is being reported."""
    import datetime as dt
    import tempfile
    import traceback

    try:
        from mentor_ray import __version__

        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        text = (f"command: {' '.join(sys.argv)}\nmentor_ray {__version__}, Python {sys.version.split()[0]}, "
                f"pid {os.getpid()}, {stamp}\n\n" + "".join(traceback.format_exception(exc)))
        data = text.encode("utf-8", "backslashreplace")
    except Exception:  # noqa: BLE001 - a broken __str__ or traceback: nothing to save
        return None
    for folder in (errors_dir, lambda: Path(tempfile.gettempdir()) / "mentor_ray-errors"):
        try:
            path = folder()
            path.mkdir(parents=True, exist_ok=True)
            path = path / f"{stamp}-{os.getpid()}.txt"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never over another run's file
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return path
        except Exception:  # noqa: BLE001 - a full or read-only disk: try the next place
            continue
    return None


def _message(exc: BaseException, limit: int) -> str:
    """``str(exc)`` on one line, cut to ``limit`` (it may repeat a user's file); never raises."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001
        text = "<message not printable>"
    return shown(text, limit, quote=False) if text.strip() else "(no message)"


def _unexpected(exc: BaseException) -> tuple[str, int]:
    """The one line and exit code of an exception that is not a :class:`MentorRayError`: the environment's
    limits (a full disk, a permission, memory: :func:`~mentor_ray.common.errors.environment_message`) name
    the file and what to do; anything else is an internal error, its traceback saved to a file."""
    known = environment_message(exc)
    if known is not None and not isinstance(exc, RecursionError):
        return known, 1
    saved = save_traceback(exc)
    where = f"full traceback in {saved}" if saved else "no traceback file could be written; re-run with --debug"
    if known is not None:
        return f"{known}; {where}", 1
    return f"internal error: {type(exc).__name__}: {_message(exc, 200)}; {where}", 1


def _report(line: str, exc: BaseException) -> None:
    """Print ``error: <line>`` (after the traceback when debugging); never raises."""
    try:
        if debugging():
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        print(f"error: {one_line(line)}", file=sys.stderr, flush=True)
    except Exception:  # noqa: BLE001 - stderr itself is gone: the exit code still says it
        pass


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
        debug: bool = False) -> int:
    """Run ``main(argv)`` behind the one error boundary of every command (see the module docstring): a
    :class:`MentorRayError` becomes one ``error:`` line and exit code 2; any other exception one line and
    exit code 1 (:func:`_unexpected`); SIGINT and SIGTERM one ``error: interrupted (...)`` line and 130 /
    143 (128 + the signal). ``--debug`` is taken out of ``argv`` (default ``sys.argv[1:]``) here."""
    global _debug
    argv, flag = strip_debug(sys.argv[1:] if argv is None else argv)
    previous, _debug = _debug, debug or flag
    set_resume_hint(None)  # each command says for itself how it can be continued (in-process runs share this)
    try:
        return _run(main, argv)
    finally:
        _debug = previous
        set_resume_hint(None)


def _run(main: Callable[[Sequence[str] | None], int | None], argv: list[str]) -> int:
    import signal

    try:
        with signals_as_exceptions():
            return int(main(argv) or 0)
    except MentorRayError as exc:
        _report(_message(exc, 10_000), exc)  # our own message: one line already, and said in full
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        return _interrupted("SIGINT", 128 + signal.SIGINT)
    except Interrupted as exc:
        return _interrupted(exc.name, 128 + exc.signum)
    except BrokenPipeError:  # stdout closed early (`... | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the boundary: no raw traceback reaches the terminal
        try:
            line, code = _unexpected(exc)
        except Exception:  # noqa: BLE001 - never crash while reporting
            line, code = f"internal error: {type(exc).__name__}", 1
        _report(line, exc)
        return code


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <prog>: <message> (see --help)``, exit 2 (argparse would
    print the whole usage first). Subparsers are of this class too. An argument may hold a newline or 10,000
    characters: the line stays one line and repeats at most a few hundred characters of it."""

    def parse_args(self, args=None, namespace=None):
        # argparse would join the unrecognized arguments raw (a newline in one breaks the line, an empty one
        # vanishes): each is quoted and cut instead, and only the first few are named
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            named = ", ".join(shown(a, 80) for a in extra[:5])
            more = f" and {len(extra) - 5:,} more" if len(extra) > 5 else ""
            self.error(f"unrecognized arguments: {named}{more}")
        return parsed

    def error(self, message: str):
        print(f"error: {self.prog}: {_one_line(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)

    def format_help(self) -> str:
        # --debug is no option of any parser (run() takes it out first), so each command's help says it here
        return super().format_help() + f"\n{DEBUG_HELP}\n"


def seed_arg(text: str) -> int:
    """argparse ``type`` of every ``--seed``: a whole number numpy and torch both take (0 to 2**32 - 1), so a seed
    out of range is refused with the flag's one line before any work, never deep inside a generator."""
    from mentor_ray.common.config import LIMITS

    digits = text.strip()  # ASCII digits only: int() would also take "1_0" and other scripts' digits
    value = int(digits) if digits.isascii() and digits.isdigit() else None
    if value is None or not 0 <= value <= LIMITS["seed"]:
        raise argparse.ArgumentTypeError(f"{shown(text, 40)}: must be a whole number from 0 to {LIMITS['seed']:,}")
    return value


def _one_line(message: str) -> str:
    """argparse's ``message`` on one line, each word cut to 200 characters and the whole to 500: its messages
    repeat what the user typed (``invalid int value: '...'``)."""
    words = [w if len(w) <= 200 else f"{w[:200]}...({len(w):,} characters)" for w in message.split()]
    return one_line(shown(" ".join(words), 500, quote=False))


DEBUG_HELP = f"{DEBUG_FLAG} (anywhere before a --), or {DEBUG_ENV}=1: print the traceback of an error too."


def _usage() -> str:
    from mentor_ray import __version__

    width = max(map(len, COMMANDS))
    lines = [f"usage: mentor-ray <command> [options]    (mentor_ray {__version__})", "", "commands:"]
    lines += [f"  {name:{width}s}  {help_}" for name, help_ in COMMANDS.items()]
    lines += ["", "mentor-ray <command> --help shows a command's options.", DEBUG_HELP]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``mentor-ray <command> ...`` to the command's module."""
    argv, debug = strip_debug(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from mentor_ray import __version__

        print(f"mentor_ray {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"error: mentor-ray {name}: no such command; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2

    # imported behind the boundary: a broken install (a missing dependency) is one line too
    def command(args: Sequence[str] | None) -> int | None:
        return importlib.import_module(f"mentor_ray.{name}").main(args)

    return run(command, argv[1:], debug=debug)


def console() -> None:
    """Entry point of the ``mentor-ray`` console script."""
    raise SystemExit(main())
