"""One driver per results store and storage folder: a lock that names its holder and outlives no one.

Two sweep drivers on one ``--results``/``--storage`` (two ``scripts/run.sh``, or a ``--resume`` while
the first still runs) would write the same experiments at once. :class:`DriverLock` takes an
exclusive ``flock`` on ``<dir>/.mentor_ray.lock``; the kernel releases it when its holder dies, however
it dies, so a lock left by a killed driver is never mistaken for a live one. Beside it,
``.mentor_ray.lock.json`` names the holder (host, pid, start time, command) for the refusal message,
and lists the processes the holder started (its local Ray instance): a driver killed with SIGKILL
cannot stop them, so the next driver that takes the lock over ends them.

Files whose names start with ``.`` are ignored by Parquet readers, so the store stays a plain dataset.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from mentor_ray.common.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".mentor_ray.lock"
INFO_NAME = ".mentor_ray.lock.json"


class DriverLock:
    """An exclusive lock on ``directory`` for this process; ``what`` names it in messages (a flag)."""

    def __init__(self, directory: str | Path, what: str):
        self.directory, self.what = Path(directory).expanduser().absolute(), what
        self._lock = None
        self._created: list[Path] = []

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    @property
    def info_path(self) -> Path:
        return self.directory / INFO_NAME

    def acquire(self) -> None:
        import filelock

        # the folders this lock creates, removed again on release if nothing but the lock went into them
        self._created = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.directory / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise ConfigError(f"{self.what} {self.directory}: in use by {_describe(self._read())}; wait for it to "
                              f"end, or stop it and re-run with --resume") from None
        self._lock = lock
        previous = self._read()
        if previous and previous.get("pid") != os.getpid():
            log.warning("%s %s: taking over the lock of %s, which is no longer running", self.what,
                        self.directory, _describe(previous))
            end_leftovers(previous)
        self._write({"host": socket.gethostname(), "pid": os.getpid(),
                     "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                     "command": " ".join(sys.argv)[:500], "processes": []})

    def record_children(self) -> None:
        """Note the processes this driver has started (its local Ray instance), to be ended by the next
        driver if this one is killed before it can end them itself."""
        import psutil

        info = self._read() or {}
        info["processes"] = [{"pid": p.pid, "create_time": p.create_time()}
                             for p in psutil.Process().children(recursive=True)]
        self._write(info)

    def release(self) -> None:
        if self._lock is None:
            return
        try:
            self.info_path.unlink(missing_ok=True)
        finally:
            self._lock.release()
            self._lock = None
        if self._created and {p.name for p in self.directory.iterdir()} <= {LOCK_NAME, INFO_NAME}:
            (self.directory / LOCK_NAME).unlink(missing_ok=True)  # refused or failed before any work
            for folder in self._created:
                try:
                    folder.rmdir()
                except OSError:  # not empty: something else was written there meanwhile
                    break

    def _read(self) -> dict[str, Any] | None:
        return holder_info(self.directory)

    def _write(self, info: dict[str, Any]) -> None:
        from mentor_ray.common.io import write_json_atomic

        write_json_atomic(self.info_path, info)


def holder_info(directory: str | Path) -> dict[str, Any] | None:
    """What the lock file of ``directory`` says of its holder (or last holder, if it was killed); None
    when there is none or it is unreadable."""
    try:
        return json.loads((Path(directory) / INFO_NAME).read_text())
    except (OSError, ValueError):
        return None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "another mentor_ray driver (its details are unreadable)"
    return (f"the mentor_ray driver pid {info.get('pid')} on {info.get('host')}, started {info.get('started_at')} "
            f"({info.get('command', '?')})")


def end_leftovers(info: dict[str, Any]) -> int:
    """End the processes a dead driver on this host started and left running; how many were ended."""
    if info.get("host") != socket.gethostname():
        return 0
    alive = recorded_alive(info.get("processes", []))
    end_processes(alive)
    if alive:
        log.warning("ended %d process(es) left running by pid %s (its Ray instance)", len(alive), info.get("pid"))
    return len(alive)


def recorded_alive(entries: list[dict[str, Any]]) -> list:
    """The recorded processes (``{"pid", "create_time"}``) still running: a pid counts only with its creation
    time, since pids are reused."""
    import psutil

    alive = []
    for entry in entries:
        try:
            p = psutil.Process(entry["pid"])
            if abs(p.create_time() - entry["create_time"]) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except (psutil.Error, KeyError, TypeError):
            continue
    return alive


def end_processes(processes: list, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL for those still running after ``grace`` seconds."""
    import psutil

    for p in processes:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(processes, timeout=grace)
    for p in still:
        try:
            p.kill()
        except psutil.Error:
            pass
