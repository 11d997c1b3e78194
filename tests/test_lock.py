"""One driver per results store and storage folder: a second is refused naming the first; a dead one's lock
is taken over and the processes it provably started (they carry its token) are ended; nothing a lock file
merely names is ever ended."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from mentor_ray.common.errors import ConfigError
from mentor_ray.common.lock import INFO_NAME, LOCK_NAME, TOKEN_ENV, DriverLock, make_token

HOLDER = """
import subprocess, sys, time
from mentor_ray.common.lock import DriverLock
sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
early = subprocess.Popen(sleep, stdout=subprocess.DEVNULL)  # started before the lock
lock = DriverLock(sys.argv[1:], "--results")
lock.acquire()
child = subprocess.Popen(sleep, stdout=subprocess.DEVNULL)  # stands in for its Ray
lock.record_children()
print(early.pid, child.pid, flush=True)
time.sleep(300)
"""


def _holder(*directories):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, directories)], stdout=subprocess.PIPE, text=True)
    early, child = map(int, p.stdout.readline().split())
    return p, early, child


def _stop(*pids: int) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def _ended(pid: int, within: float = 10.0) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _detached_sleep(env: dict | None = None, user: int | None = None) -> psutil.Process:
    """A `sleep 60` that is neither this process's child nor descendant (its shell exits at once), as an
    unrelated process of the machine would be; optionally with ``env`` and running as ``user``."""
    kwargs = {"user": user} if user is not None else {}
    out = subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, check=True, **kwargs)
    return psutil.Process(int(out.stdout))


def test_a_second_driver_is_refused_with_the_holders_name(tmp_path):
    holder, early, child = _holder(tmp_path / "r")
    try:
        with pytest.raises(ConfigError) as err:
            DriverLock(tmp_path / "r", "--results").acquire()
        msg = str(err.value)
        assert msg.startswith(f"--results {tmp_path / 'r'}: in use by the mentor_ray driver pid {holder.pid} on "
                              f"{socket.gethostname()}, started 20")
        assert "re-run with --resume" in msg and "\n" not in msg
    finally:
        holder.kill()
        holder.wait()
        _stop(early, child)


def test_a_dead_drivers_lock_is_taken_over_and_only_the_processes_carrying_its_token_ended(tmp_path, caplog):
    holder, early, child = _holder(tmp_path / "r")
    token = json.loads((tmp_path / "r" / INFO_NAME).read_text())["token"]
    assert psutil.Process(child).environ()[TOKEN_ENV] == token  # what it starts under the lock carries it
    assert TOKEN_ENV not in psutil.Process(early).environ()
    os.kill(holder.pid, signal.SIGKILL)  # as an OOM kill would: no chance to clean up
    holder.wait()
    assert psutil.pid_exists(child)  # what it started outlives it
    try:
        with caplog.at_level(logging.WARNING, logger="mentor_ray.common.lock"):
            with DriverLock(tmp_path / "r", "--results"):
                assert f"taking over the lock of the mentor_ray driver pid {holder.pid}" in caplog.text
                assert "ended 1 process(es) left running" in caplog.text
                assert _ended(child)
                # listed in the lock file too, but started before the token: nothing proves it the driver's
                assert psutil.Process(early).is_running() and psutil.Process(early).status() != psutil.STATUS_ZOMBIE
            assert not (tmp_path / "r" / INFO_NAME).exists()  # released cleanly: no holder to name
        with DriverLock(tmp_path / "r", "--results"):  # and free again
            pass
    finally:
        _stop(early, child)


def _forge(directory, pid: int | None, token: str, directories: list[str]) -> None:
    """A lock file as a dead holder's would read, naming ``pid`` (with its real start time) as its process."""
    directory.mkdir(parents=True, exist_ok=True)
    named = [{"pid": pid, "create_time": psutil.Process(pid).create_time()}] if pid else []
    (directory / INFO_NAME).write_text(json.dumps({
        "host": socket.gethostname(), "pid": 1, "started_at": "2020-01-01T00:00:00", "command": "forged",
        "token": token, "directories": directories, "processes": named}))


def test_a_forged_lock_file_ends_nothing_it_names(tmp_path):
    """A lock file anyone could have written names a live process (its pid and real start time), with a
    token bound to this directory but not in that process's environment, or one that is in its environment
    but copied from another directory's lock: taking the lock over ends none of them."""
    d, other = (tmp_path / "d").resolve(), (tmp_path / "e").resolve()
    copied = make_token([other])  # the token of another directory's lock, which the victim carries
    unrelated, carrier = _detached_sleep(), _detached_sleep(env={TOKEN_ENV: copied})
    try:
        for victim, token, listed in [(unrelated, make_token([d]), [str(d)]),  # its pid named; no token
                                      (carrier, copied, [str(other)]),  # another directory's lock file, copied
                                      (carrier, copied, [str(d)])]:  # the same, its directory list edited
            _forge(d, victim.pid, token, listed)
            with DriverLock(d, "--results"):
                pass
            time.sleep(0.5)
            assert victim.is_running() and victim.status() != psutil.STATUS_ZOMBIE, (token, listed)
    finally:
        _stop(unrelated.pid, carrier.pid)


def test_another_users_process_is_never_ended_even_with_the_token(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process as another user")
    d = (tmp_path / "d").resolve()
    token = make_token([d])
    tmp_path.chmod(0o755)
    other_user = _detached_sleep(env={TOKEN_ENV: token}, user=65534)  # nobody
    try:
        assert other_user.uids().real == 65534 and other_user.environ()[TOKEN_ENV] == token
        _forge(d, other_user.pid, token, [str(d)])
        with DriverLock(d, "--results"):
            pass
        time.sleep(0.5)
        assert other_user.is_running() and other_user.status() != psutil.STATUS_ZOMBIE
    finally:
        _stop(other_user.pid)


TAKEOVER = """
import sys
from mentor_ray.common.lock import DriverLock
with DriverLock(sys.argv[1], "--results"):
    print("alive", flush=True)
"""


def test_a_driver_never_ends_itself_or_its_ancestors(tmp_path):
    """A driver started (through a shell) by the dead holder inherits its token: taking over that holder's
    lock ends neither it nor the shell."""
    d = (tmp_path / "d").resolve()
    token = make_token([d])
    _forge(d, None, token, [str(d)])  # the token alone: what a real holder's file proves
    out = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" "$1"; echo "shell alive $?"', TAKEOVER, str(d)],
                         env={**os.environ, TOKEN_ENV: token}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["alive", "shell", "alive", "0"], out.stderr


def test_several_directories_are_locked_together_all_or_none(tmp_path):
    results, storage, other = tmp_path / "r", tmp_path / "s", tmp_path / "r2"
    holder, early, child = _holder(results, storage)
    try:
        info = json.loads((storage / INFO_NAME).read_text())
        assert info == json.loads((results / INFO_NAME).read_text())  # one holder, one token, both directories
        assert info["directories"] == sorted([str(results.resolve()), str(storage.resolve())])
        # the same --storage with another --results (a --resume of the live sweep) is refused on --storage
        with pytest.raises(ConfigError, match=f"^--storage {storage}: in use by the mentor_ray driver pid "
                           f"{holder.pid}"):
            DriverLock([other, storage], ["--results", "--storage"]).acquire()
        assert not other.exists()  # all or none: the lock it had taken is given back, its folder removed
        with pytest.raises(ConfigError, match=f"^--results {results}: in use"):
            DriverLock([results, tmp_path / "s2"], ["--results", "--storage"]).acquire()
        assert not (tmp_path / "s2").exists()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        with DriverLock([storage, "s3://bucket/runs", None, results], ["--storage", "--storage", "--x", "--results"]) \
                as lock:
            assert lock.directories == sorted([results.resolve(), storage.resolve()])  # the URI and None skipped
            assert _ended(child)
            assert os.environ[TOKEN_ENV] == lock.token  # what this driver starts now carries its own token
        assert TOKEN_ENV not in os.environ
        assert {p.name for p in results.iterdir()} == {LOCK_NAME} == {p.name for p in storage.iterdir()}
    finally:
        holder.kill()
        holder.wait()
        _stop(early, child)


def test_a_sweep_on_a_store_in_use_is_refused_before_ray_starts(tmp_path):
    ray = pytest.importorskip("ray")
    from mentor_ray import tune as tune_cmd

    if ray.is_initialized():
        ray.shutdown()
    holder, early, child = _holder(tmp_path / "r")
    try:
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"--results {tmp_path / 'r'}: in use by the mentor_ray driver pid "
                           f"{holder.pid}"):
            tune_cmd.main(["--dataset", "synth-tiny", "--space", "smoke", "--results", str(tmp_path / "r"),
                           "--storage", str(tmp_path / "s")])
        assert time.monotonic() - started < 30 and not ray.is_initialized()
        assert (tmp_path / "r" / INFO_NAME).exists()  # the holder's lock is untouched
    finally:
        holder.kill()
        holder.wait()
        _stop(early, child)


def test_a_lock_removes_the_folders_it_created_when_nothing_else_went_there(tmp_path):
    with DriverLock(tmp_path / "a" / "b", "--results"):
        pass
    assert not (tmp_path / "a").exists()
    with DriverLock(tmp_path / "c" / "d", "--results"):
        (tmp_path / "c" / "d" / "run.parquet").write_text("")
    assert (tmp_path / "c" / "d" / "run.parquet").exists()
    (tmp_path / "e").mkdir()
    with DriverLock(tmp_path / "e", "--results"):
        pass
    assert (tmp_path / "e").is_dir()  # it was there before: kept
