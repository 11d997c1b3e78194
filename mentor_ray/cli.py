"""Shared plumbing for the ``python -m mentor_ray.<cmd>`` entry points."""

from __future__ import annotations

import logging
import sys
from typing import Callable, Sequence

from mentor_ray.common.errors import MentorRayError

LOG_FORMAT = "%(asctime)s %(levelname).1s %(name)s: %(message)s"


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


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)``; a :class:`MentorRayError` becomes one ``error:`` line and exit code 2."""
    try:
        return int(main(argv) or 0)
    except MentorRayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
