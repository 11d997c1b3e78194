"""The ``mentor-ray`` console script, and the plumbing every command shares.

Each subcommand is one module at the top of the package, also runnable as ``python -m mentor_ray.<name>``
(cluster command lines use that form)::

    mentor-ray train --dataset synth-small --variant mentor --max-epochs 20
    mentor-ray tune --dataset synth-tiny --space smoke --num-samples 4 --seeds 2 --results runs/r
    mentor-ray leaderboard --results runs/r --out runs/leaderboard
    mentor-ray <command> --help
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from typing import Callable, Sequence

from mentor_ray.common.errors import Interrupted, MentorRayError

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


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr so that stdout stays for tables and JSON."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
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


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a :class:`MentorRayError` becomes one ``error:`` line and exit code 2; SIGINT and
    SIGTERM one ``error: interrupted (...)`` line and 130 / 143 (128 + the signal)."""
    import signal

    try:
        with signals_as_exceptions():
            return int(main(argv) or 0)
    except MentorRayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted("SIGINT", 128 + signal.SIGINT)
    except Interrupted as exc:
        return _interrupted(exc.name, 128 + exc.signum)
    except BrokenPipeError:  # stdout closed early (`... | head`): not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <prog>: <message> (see --help)``, exit 2 (argparse would
    print the whole usage first). Subparsers are of this class too."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _usage() -> str:
    from mentor_ray import __version__

    width = max(map(len, COMMANDS))
    lines = [f"usage: mentor-ray <command> [options]    (mentor_ray {__version__})", "", "commands:"]
    lines += [f"  {name:{width}s}  {help_}" for name, help_ in COMMANDS.items()]
    lines += ["", "mentor-ray <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``mentor-ray <command> ...`` to the command's module."""
    argv = list(sys.argv[1:] if argv is None else argv)
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
    module = importlib.import_module(f"mentor_ray.{name}")
    return run(module.main, argv[1:])


def console() -> None:
    """Entry point of the ``mentor-ray`` console script."""
    raise SystemExit(main())
