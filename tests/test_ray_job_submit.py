"""`ray start --head` + `ray job submit` runs Ray Train DDP end to end (slow: a real local cluster)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.driver]

BIN = Path(sys.executable).parent


def _env(ray_tmp: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"  # the job's `python` is this environment's
    env["RAY_TMPDIR"] = ray_tmp  # an isolated head, never a user's running cluster
    env.pop("RAY_ADDRESS", None)
    # Ray 2.60 turns token authentication on for a head when a token exists (a local ray.init() writes
    # ~/.ray/auth_token), and `ray job submit` then needs RAY_AUTH_MODE=token. Use it explicitly, with a
    # token of the test's own, so the test behaves the same on a fresh machine and a used one.
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN"] = "mentor-ray-test-token-0123456789abcdef0123456789abcdef"
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    return env


@pytest.fixture(scope="module")
def head():
    """A local head (`ray start --head`, dashboard on) of the tests' own; stopped at the end."""
    # Ray's Unix socket paths live under RAY_TMPDIR and must stay under ~107 bytes: pytest's tmp_path
    # is too deep for them, so the head gets a short directory of its own.
    ray_tmp = tempfile.mkdtemp(prefix="mr-ray-", dir="/tmp")
    env = _env(ray_tmp)
    ray = str(BIN / "ray")
    # The agents' ports are Ray's fixed defaults (e.g. 52365): taken by any other Ray instance on the
    # machine, they would leave this head without a job agent. Free ones, then.
    agents = [f"--{flag}={_free_port()}" for flag in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                      "runtime-env-agent-port", "metrics-export-port")]
    start = subprocess.run([ray, "start", "--head", "--num-cpus", "4", "--include-dashboard", "true",
                            "--dashboard-port", "8297", "--port", "6391", "--disable-usage-stats", *agents],
                           env=env, capture_output=True, text=True, timeout=180)
    assert start.returncode == 0, (start.stdout + start.stderr)[-3000:]
    try:
        yield env
    finally:
        _stop_head(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_head(ray_tmp: str) -> None:
    """Stop this test's head and nothing else. `ray stop` would end every Ray process on the machine,
    a user's running cluster or sweep included; the head's processes name its temp dir, and their
    workers go with them."""
    import psutil

    from mentor_ray.common.lock import end_processes

    mine = [p for p in psutil.process_iter(["cmdline"]) if any(ray_tmp in a for a in (p.info["cmdline"] or []))]
    procs = mine + [c for p in mine for c in _children(p)]
    end_processes(procs, grace=30)


def _children(proc):
    import psutil

    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _submit(env: dict, *command: str) -> str:
    """`ray job submit` to the test's head; retried while the head's job agent is still starting (on a
    busy machine it answers "No available agent to submit job, please try again later")."""
    import time

    deadline = time.time() + 180
    while True:
        proc = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", "http://127.0.0.1:8297", "--working-dir",
             str(REPO), "--", *command],
            env=env, capture_output=True, text=True, timeout=900,
        )
        out = proc.stdout + proc.stderr
        if proc.returncode == 0 or "No available agent" not in out or time.time() > deadline:
            break
        time.sleep(5)
    assert proc.returncode == 0, out[-3000:]
    assert "succeeded" in out
    return out


def test_job_submit_trains_with_two_workers(head, tmp_path):
    out = _submit(head, "python", "-m", "mentor_ray.train", "--dataset", "synth-small", "--workers", "2",
                  "--max-epochs", "2", "--storage", str(tmp_path / "runs"))
    assert "synth-small (synthetic) / mentor / seed 0" in out


def test_job_submit_runs_a_sweep(head, tmp_path):
    """The sweep issue's acceptance command, submitted as a job: search, finals, ablation, leaderboard."""
    from mentor_ray.report import results
    from mentor_ray.sweep.tune import Sweep

    out = _submit(head, "python", "-m", "mentor_ray.tune", "--dataset", "synth-tiny", "--space", "smoke",
                  "--num-samples", "4", "--seeds", "2", "--ablation", "--grace-period", "2",
                  "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "s"))
    assert "synth-tiny: search done" in out and "synth-tiny: done" in out and "# MENTOR leaderboard" in out
    runs = results.read_results(tmp_path / "r").to_pandas().drop_duplicates("run_id")
    assert set(runs.role) == {"search", "final", "ablation"}
    ablation = runs[runs.role == "ablation"]
    assert sorted(ablation.variant) == sorted(2 * Sweep.ablation_variants())  # MENTOR's and the general baselines
    assert (tmp_path / "r-leaderboard" / "leaderboard.html").is_file()
