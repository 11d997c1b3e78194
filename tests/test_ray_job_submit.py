"""`ray start --head` + `ray job submit` runs Ray Train DDP end to end (slow: a real local cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"  # the job's `python` is this environment's
    env["RAY_TMPDIR"] = str(tmp_path / "ray")  # an isolated head, never a user's running cluster
    env.pop("RAY_ADDRESS", None)
    return env


def test_job_submit_trains_with_two_workers(tmp_path):
    env = _env(tmp_path)
    ray = str(BIN / "ray")
    subprocess.run([ray, "start", "--head", "--num-cpus", "4", "--include-dashboard", "true",
                    "--dashboard-port", "8297", "--port", "6391", "--disable-usage-stats"],
                   check=True, env=env, capture_output=True, timeout=180)
    try:
        proc = subprocess.run(
            [ray, "job", "submit", "--address", "http://127.0.0.1:8297", "--working-dir", str(REPO), "--",
             "python", "-m", "mentor_ray.train", "--dataset", "synth-small", "--workers", "2",
             "--max-epochs", "2", "--storage", str(tmp_path / "runs")],
            env=env, capture_output=True, text=True, timeout=900,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        assert "succeeded" in out and "synth-small (synthetic) / mentor / seed 0" in out
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
