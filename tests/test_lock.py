"""One driver per results store: a second is refused naming the first; a dead one's lock is taken over
and the processes it left running are ended."""

from __future__ import annotations

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
from mentor_ray.common.lock import INFO_NAME, DriverLock

HOLDER = """
import subprocess, sys, time
from mentor_ray.common.lock import DriverLock
lock = DriverLock(sys.argv[1], "--results")
lock.acquire()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # stands in for its Ray
lock.record_children()
print(child.pid, flush=True)
time.sleep(300)
"""


def _holder(directory):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    child = int(p.stdout.readline())
    return p, child


def test_a_second_driver_is_refused_with_the_holders_name(tmp_path):
    holder, child = _holder(tmp_path / "r")
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
        psutil.Process(child).kill()


def test_a_dead_drivers_lock_is_taken_over_and_its_processes_ended(tmp_path, caplog):
    holder, child = _holder(tmp_path / "r")
    os.kill(holder.pid, signal.SIGKILL)  # as an OOM kill would: no chance to clean up
    holder.wait()
    assert psutil.pid_exists(child)  # what it started outlives it
    with caplog.at_level(logging.WARNING, logger="mentor_ray.common.lock"):
        with DriverLock(tmp_path / "r", "--results"):
            assert f"taking over the lock of the mentor_ray driver pid {holder.pid}" in caplog.text
            assert "ended 1 process(es) left running" in caplog.text
            deadline = time.time() + 10
            while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
                assert time.time() < deadline
                time.sleep(0.1)
        assert not (tmp_path / "r" / INFO_NAME).exists()  # released cleanly: no holder to name
    with DriverLock(tmp_path / "r", "--results"):  # and free again
        pass


def test_a_reused_pid_is_never_ended(tmp_path):
    from mentor_ray.common.lock import end_leftovers

    me = psutil.Process()
    info = {"host": socket.gethostname(), "pid": 1, "processes": [{"pid": me.pid, "create_time": me.create_time() - 5}]}
    assert end_leftovers(info) == 0  # same pid, another start time: not the process that was recorded
    info["host"] = "another-host"
    info["processes"][0]["create_time"] = me.create_time()
    assert end_leftovers(info) == 0  # another host's pids mean nothing here


def test_a_sweep_on_a_store_in_use_is_refused_before_ray_starts(tmp_path):
    ray = pytest.importorskip("ray")
    from mentor_ray import tune as tune_cmd

    if ray.is_initialized():
        ray.shutdown()
    holder, child = _holder(tmp_path / "r")
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
        psutil.Process(child).kill()


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
