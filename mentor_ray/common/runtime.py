"""Process-level settings for training processes.

glibc returns freed blocks of more than a few MB to the kernel at once and maps them again on
the next allocation; every training step allocates dozens of (n_nodes x width) temporaries, and
in a virtual machine each page fault is expensive, so freed memory is kept in the heap for reuse
(``mallopt``; measured in ``docs/benchmarks.md``, *Findings behind defaults*). Peak RSS is
unchanged: retained memory is reused, not added to.
Set ``MENTOR_RAY_MALLOPT=0`` to leave the allocator alone.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_done = False


def tune_allocator() -> bool:
    """Keep freed memory for reuse (glibc only; once per process). Returns whether it applied."""
    global _done
    if _done or os.environ.get("MENTOR_RAY_MALLOPT", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = (
            libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum: blocks up to 32 MB from the heap
            and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)  # keep up to 1 GB of freed heap for reuse
            and libc.mallopt(_M_TOP_PAD, 64 << 20)  # grow the heap in 64 MB steps
        )
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        ok = 0
    _done = True
    if ok:
        log.debug("allocator tuned: freed memory is kept for reuse")
    return bool(ok)


def reset_peak_memory() -> bool:
    """Restart this process's peak-RSS count at its current RSS, so that a run reports its own peak even
    in a process that ran another before it (a reused Tune actor). Freed memory that the allocator keeps
    for reuse (:func:`tune_allocator`) is first handed back to the system, else an earlier run's heap
    would count. Linux only (``/proc/self/clear_refs``, value 5, resets the high-water mark that
    ``ru_maxrss`` reads); elsewhere the peak stays the process's."""
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports ``ru_maxrss`` in KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident set size now, in MB (Linux ``/proc/self/statm``; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def worker_logging() -> None:
    """In a Ray worker (no logging set up by a command): mentor_ray's INFO lines to stderr, which Ray
    forwards to the driver, so progress inside long epochs shows there too."""
    import logging

    logger = logging.getLogger("mentor_ray")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[mentor_ray] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


KILL_AT_ENV = "MENTOR_RAY_KILL_AT"  # fault injection: the named point where the process kills itself
KILL_MARKER_ENV = "MENTOR_RAY_KILL_MARKER"  # a file: the kill happens once, whichever process gets there
KILL_SIGNAL_ENV = "MENTOR_RAY_KILL_SIGNAL"  # the signal sent: KILL (default), or INT / TERM (a user's Ctrl-C, a stop)


def kill_point(name: str) -> None:
    """SIGKILL this process here when ``MENTOR_RAY_KILL_AT`` names this point, once (the marker file
    records it): the fault campaign (``mentor-ray bench faults``) kills drivers and workers at chosen
    moments with it, and tests interrupt a driver with ``MENTOR_RAY_KILL_SIGNAL=INT`` as Ctrl-C would.
    A no-op otherwise."""
    if os.environ.get(KILL_AT_ENV) != name:
        return
    marker = os.environ.get(KILL_MARKER_ENV)
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # atomic: only the first gets here
        except FileExistsError:
            return
        os.write(fd, f"killed {name} pid {os.getpid()}\n".encode())
        os.close(fd)
    import signal

    os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get(KILL_SIGNAL_ENV, "KILL").upper(), signal.SIGKILL))


@functools.cache
def code_version() -> str:
    """The package version, and the git commit when running from a checkout (``.dirty`` if tracked files were
    modified): of the code this process loaded, taken at its first call and kept. A trainer takes it when it
    starts (``Trainer.summary``'s ``code_version``), so a run records the code that trained it, not the commit
    the checkout has moved to by the time its rows are written (a sweep lasts hours)."""
    from mentor_ray import __version__

    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha, dirty = "", ""
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}" if sha else __version__
