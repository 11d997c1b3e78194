"""A sweep whose driver is killed mid-way and re-run with --resume completes, with no duplicated or
missing rows (subprocesses: the first driver gets SIGKILL, as an OOM kill or a lost head would)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mentor_ray.common.config import BASELINES, MENTOR_VARIANTS
from mentor_ray.report import results


def _sweep(tmp_path, *extra):
    return [sys.executable, "-m", "mentor_ray.tune", "--dataset", "synth-tiny", "--space", "smoke",
            "--num-samples", "3", "--seeds", "1", "--ablation", "--grace-period", "2",
            "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "s"), *extra]


def test_a_killed_sweep_resumes_without_duplicates_or_gaps(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(_sweep(tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 400
    while not list((tmp_path / "r").glob("final-*.parquet")):  # killed after the finals, mid-ablation
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.time() < deadline, "the sweep made no final run in time"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = {p.name for p in (tmp_path / "r").glob("*.parquet")}
    assert not any(p.startswith("ablation-") for p in before if "mentor_" in p)  # the ablation was cut short

    second = subprocess.run(_sweep(tmp_path, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    table = results.read_results(tmp_path / "r").to_pandas()
    assert not table.duplicated(["run_id", "split", "metric", "k"]).any()
    runs = table.drop_duplicates("run_id")
    assert sorted(runs[runs.role == "ablation"].variant) == sorted(MENTOR_VARIANTS + BASELINES)
    assert len(runs[runs.role == "final"]) == 1 and (runs.role == "search").sum() >= 2
    assert before <= {f"{r}.parquet" for r in runs.run_id}  # nothing recorded before the kill was lost
