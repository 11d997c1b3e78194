"""One driver per results store and storage folder: a lock that names its holder and outlives no one.

Two sweep drivers on one ``--results``/``--storage`` (two ``scripts/run.sh``, or a ``--resume`` while
the first still runs) would write the same experiments at once. :class:`DriverLock` takes an
exclusive ``flock`` on ``<dir>/.mentor_ray.lock`` of every directory it covers (all or none); the kernel
releases it when its holder dies, however it dies, so a lock left by a killed driver is never mistaken
for a live one. Beside it, ``.mentor_ray.lock.json`` names the holder (host, pid, start time, command)
for the refusal message.

A driver killed with SIGKILL cannot stop the processes it started (its local Ray instance), so the next
driver that takes the lock over ends them. Which processes those are is proved, never read from the
file: the holder puts a random token in its environment (``MENTOR_RAY_DRIVER_TOKEN``) before it starts
anything, so every process it starts, and every process those start, carries it in
``/proc/<pid>/environ``. The token begins with a hash of the directories locked, and the lock file
records it; a driver taking over ends only processes of its own user whose environment holds exactly a
token recorded for, and bound to, the directory it took over, and never itself, its ancestors or its
descendants. A lock file written by anyone else can therefore name any pid it likes: nothing is ended
because of it (:func:`leftovers`). The same token lets a driver end what its own Ray left running when
it shuts down (:meth:`DriverLock.end_own_processes`).

Files whose names start with ``.`` are ignored by Parquet readers, so the store stays a plain dataset.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import sys
from pathlib import Path
from typing import Any, Sequence

from mentor_ray.common.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".mentor_ray.lock"
INFO_NAME = ".mentor_ray.lock.json"
TOKEN_ENV = "MENTOR_RAY_DRIVER_TOKEN"
# Ray's processes set their titles (ray::DashboardAgent, ray::IDLE, ...) with setproctitle, which by default
# writes the title over the memory /proc/<pid>/environ reads, and the token would be lost from it; with
# SPT_NOENV set, the title stays within the command line's memory and the environment stays readable.
_KEEP_ENVIRON = ("SPT_NOENV", "1")
_TOKEN = re.compile(r"^[0-9a-f]{16}:[0-9a-f]{32}$")
DEFAULT_ADVICE = "wait for it to end, or stop it and re-run with --resume"


class DriverLock:
    """An exclusive lock on ``directories`` (one path, or several: all are taken or none) for this process.

    ``what`` names each directory in messages (its flag): one name for all, or one per directory. ``None``
    entries and URIs (``s3://...``: object storage has no file locks) are skipped. The directories are
    locked in sorted order, so two drivers locking overlapping sets never wait on each other in a circle.
    ``advice`` ends the refusal message (what the user can do about the other driver).
    """

    def __init__(self, directories: str | Path | Sequence[str | Path | None] | None,
                 what: str | Sequence[str], advice: str = DEFAULT_ADVICE):
        many = directories if isinstance(directories, (list, tuple)) else [directories]
        flags = [what] * len(many) if isinstance(what, str) else list(what)
        if len(flags) != len(many):
            raise ValueError(f"DriverLock: {len(many)} directories but {len(flags)} names for them")
        chosen: dict[Path, str] = {}
        for directory, flag in zip(many, flags):
            if directory is None or "://" in str(directory):
                continue
            chosen.setdefault(Path(directory).expanduser().resolve(), flag)
        self.directories = sorted(chosen)
        self.whats = [chosen[d] for d in self.directories]
        self.advice = advice
        self.token: str | None = None
        self._held: list[tuple[Path, Any, list[Path]]] = []  # (directory, its lock, the folders it created)
        self._saved_env: dict[str, str | None] = {}

    @property
    def directory(self) -> Path:
        """The first directory locked (the only one, for a lock on one directory)."""
        return self.directories[0]

    @property
    def what(self) -> str:
        return self.whats[0]

    @property
    def info_path(self) -> Path:
        return self.directory / INFO_NAME

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Lock every directory or none; then end what earlier, dead holders left running, and mark this
        process's environment with the token (before anything, Ray included, is started under the lock)."""
        if self._held:
            return
        try:
            for directory, what in zip(self.directories, self.whats):
                self._lock_one(directory, what)
            # before this driver's own lock files replace theirs: killed while ending them, it leaves the
            # dead holders' tokens on disk for the next driver to finish the job
            self._end_dead_holders()
            self.token = make_token(self.directories)
            self._mark_environment()
            info = {"host": socket.gethostname(), "pid": os.getpid(),
                    "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "command": " ".join(sys.argv)[:500], "token": self.token,
                    "directories": [str(d) for d in self.directories], "processes": []}
            for directory in self.directories:
                self._write(directory, info)
        except BaseException:
            self.release()
            raise

    def _end_dead_holders(self) -> None:
        """A lock file under a lock just taken is a dead holder's (a live one would hold the lock): end the
        processes it provably started (:func:`proven_token`), once per token."""
        ended: set[str] = set()
        for directory in self.directories:
            info = holder_info(directory)
            if not info:
                continue
            log.warning("%s %s: taking over the lock of %s, which is no longer running", self._what(directory),
                        directory, _describe(info))
            token = proven_token(info, directory)
            if token is None or token in ended:
                continue
            ended.add(token)
            count = end_token_processes(token)
            if count:
                log.warning("ended %d process(es) left running by pid %s (its Ray instance)", count, info.get("pid"))

    def _lock_one(self, directory: Path, what: str) -> None:
        import filelock

        # the folders this lock creates, removed again on release if nothing but the lock went into them
        created = [p for p in (directory, *directory.parents) if not p.exists()]
        directory.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(directory / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            _remove_created(directory, created)
            raise ConfigError(f"{what} {directory}: in use by {_describe(holder_info(directory))}; "
                              f"{self.advice}") from None
        self._held.append((directory, lock, created))

    def _mark_environment(self) -> None:
        for key, value in ((TOKEN_ENV, self.token), _KEEP_ENVIRON):
            self._saved_env[key] = os.environ.get(key)
            if key == TOKEN_ENV or key not in os.environ:
                os.environ[key] = value

    def _restore_environment(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}

    def record_children(self) -> None:
        """Note the processes this driver has started (its local Ray instance) in its lock files.

        For reports only (the fault campaign counts how many a killed driver left): nothing is ever ended
        because a lock file names it; the next driver finds them by this driver's token instead."""
        import psutil

        children = [{"pid": p.pid, "create_time": p.create_time()} for p in psutil.Process().children(recursive=True)]
        for directory, _lock, _created in self._held:
            info = holder_info(directory) or {}
            info["processes"] = children
            self._write(directory, info)

    def end_own_processes(self, grace: float = 5.0) -> int:
        """End the processes still running that this driver started while holding the lock (those that
        carry its token), other than itself and its ancestors: what a shut-down Ray left behind, or an
        interrupted run's. How many there were."""
        return end_token_processes(self.token, grace=grace) if self.token else 0

    def release(self) -> None:
        """Unlock every directory (in the reverse order), removing the folders the lock created when nothing
        else went into them, and give the environment back its previous token."""
        held, self._held = self._held, []
        try:
            for directory, lock, created in reversed(held):
                try:
                    (directory / INFO_NAME).unlink(missing_ok=True)
                finally:
                    lock.release()
                _remove_created(directory, created)
        finally:
            self._restore_environment()

    def _what(self, directory: Path) -> str:
        return self.whats[self.directories.index(directory)]

    def _write(self, directory: Path, info: dict[str, Any]) -> None:
        from mentor_ray.common.io import write_json_atomic

        write_json_atomic(directory / INFO_NAME, info)


def _remove_created(directory: Path, created: list[Path]) -> None:
    """Remove the folders a lock created for ``directory``, if nothing but its lock files went there
    (a refused or failed driver leaves no empty folders behind)."""
    if not created or not directory.is_dir():
        return
    if {p.name for p in directory.iterdir()} <= {LOCK_NAME, INFO_NAME}:
        (directory / LOCK_NAME).unlink(missing_ok=True)
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # not empty: something else was written there meanwhile
                break


def make_token(directories: Sequence[Path]) -> str:
    """A fresh token bound to ``directories``: ``<hash of their sorted paths>:<random>``."""
    return f"{_directories_hash([str(d) for d in directories])}:{secrets.token_hex(16)}"


def _directories_hash(directories: Sequence[str]) -> str:
    return hashlib.sha256("\0".join(sorted(directories)).encode()).hexdigest()[:16]


def proven_token(info: dict[str, Any] | None, directory: str | Path) -> str | None:
    """The token of the lock file ``info`` found in ``directory``, if it can name processes to end: recorded
    on this host, well formed, and bound to the directories it lists, ``directory`` among them (a token
    copied from another directory's lock file is not). None otherwise."""
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return None
    token, listed = info.get("token"), info.get("directories")
    if not isinstance(token, str) or not _TOKEN.match(token) or not isinstance(listed, list):
        return None
    if not all(isinstance(d, str) for d in listed) or str(Path(directory).expanduser().resolve()) not in listed:
        return None
    return token if token.split(":")[0] == _directories_hash(listed) else None


def token_processes(token: str) -> list:
    """The running processes of this user whose environment holds exactly ``token``, other than this process,
    its ancestors and its descendants."""
    import psutil

    me = psutil.Process()
    spared = {me.pid, *(p.pid for p in me.parents()), *(p.pid for p in me.children(recursive=True))}
    uid = os.getuid()
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid in spared or p.uids().real != uid or p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(TOKEN_ENV) == token:
                found.append(p)
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return found


def end_token_processes(token: str, grace: float = 5.0) -> int:
    """End (SIGTERM, then SIGKILL) the processes :func:`token_processes` finds; how many there were."""
    found = token_processes(token)
    end_processes(found, grace=grace)
    return len(found)


def leftovers(directory: str | Path) -> list:
    """The processes left running by the holder named in ``directory``'s lock file that it provably
    started (see :func:`proven_token`): what the next driver taking the lock over ends."""
    token = proven_token(holder_info(directory), directory)
    return token_processes(token) if token else []


def holder_info(directory: str | Path) -> dict[str, Any] | None:
    """What the lock file of ``directory`` says of its holder (or last holder, if it was killed); None
    when there is none or it is unreadable."""
    try:
        info = json.loads((Path(directory) / INFO_NAME).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "another mentor_ray driver (its details are unreadable)"
    return (f"the mentor_ray driver pid {info.get('pid')} on {info.get('host')}, started {info.get('started_at')} "
            f"({info.get('command', '?')})")


def recorded_alive(entries: list[dict[str, Any]]) -> list:
    """The processes of a lock file's ``processes`` list (``{"pid", "create_time"}``) still running: a pid
    counts only with its creation time, since pids are reused. For reports: never a reason to end one."""
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
    """SIGTERM, then SIGKILL for those still running after ``grace`` seconds (psutil refuses to signal a
    pid that another process has taken since it was found)."""
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
