"""A sweep whose driver is killed mid-way and re-run with --resume completes, with no duplicated or
missing rows (subprocesses: the first driver gets SIGKILL, as an OOM kill or a lost head would)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from mentor_ray.report import results
from mentor_ray.sweep.tune import Sweep

ABLATION = Sweep.ablation_variants()  # MENTOR's variants and the general baselines


def _sweep(tmp_path, *extra):
    return [sys.executable, "-m", "mentor_ray.tune", "--dataset", "synth-tiny", "--space", "smoke",
            "--num-samples", "3", "--seeds", "1", "--ablation", "--grace-period", "2",
            "--results", str(tmp_path / "r"), "--storage", str(tmp_path / "s"), *extra]


@pytest.mark.driver
@pytest.mark.slow  # a killed sweep and its resume: the slow tier (.ci/run)
def test_a_killed_sweep_resumes_without_duplicates_or_gaps(tmp_path):
    """The driver kills itself (SIGKILL, its pid only) once its first ablation run is recorded; the Ray
    processes it started outlive it until the resumed driver takes the store over and ends them."""
    from mentor_ray.benchmarks.faults import _alive, _recorded_processes
    from mentor_ray.common.runtime import KILL_AT_ENV, KILL_MARKER_ENV

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    kill = {KILL_AT_ENV: "driver-ablation", KILL_MARKER_ENV: str(tmp_path / "killed")}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.run(_sweep(tmp_path), env={**env, **kill}, stdout=log, stderr=subprocess.STDOUT,
                               timeout=600)
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    recorded = _recorded_processes(tmp_path / "r")
    assert recorded  # the killed driver's Ray instance, as the lock file lists it
    before = {p.name for p in (tmp_path / "r").glob("*.parquet")}
    assert sum(p.startswith("ablation-") for p in before) == 1  # the ablation was cut short after one run

    second = subprocess.run(_sweep(tmp_path, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    assert _alive(recorded) == 0  # ended by the second driver, if Ray had not ended them itself
    table = results.read_results(tmp_path / "r").to_pandas()
    assert not table.duplicated(["run_id", "split", "metric", "k"]).any()
    runs = table.drop_duplicates("run_id")
    assert sorted(runs[runs.role == "ablation"].variant) == sorted(ABLATION)
    assert len(runs[runs.role == "final"]) == 1 and (runs.role == "search").sum() >= 2
    assert before <= {f"{r}.parquet" for r in runs.run_id}  # nothing recorded before the kill was lost
    assert runs.started_at.notna().all() and (runs.wall_seconds > 0).all()  # also the runs resumed


@pytest.mark.driver
@pytest.mark.slow  # a killed sweep and its resume: the slow tier (.ci/run)
def test_a_budget_stops_the_search_and_a_resume_does_not_count_twice(tmp_path):
    """--budget 10 trial-epochs on an 8-point space of 4-epoch trials: TPE (the whole grid would need 32),
    stopped once 10 epochs are spent. The driver is killed after its first search trial; the resumed
    one reads what was spent from the ledger, so the search ends with the budget spent once."""
    import json

    from mentor_ray.common.runtime import KILL_AT_ENV, KILL_MARKER_ENV
    from mentor_ray.sweep.trials import spent_epochs

    args = [sys.executable, "-m", "mentor_ray.tune", "--dataset", "synth-tiny", "--space", "smoke", "--seeds", "1",
            "--budget", "10", "--grace-period", "4", "--quiet", "--results", str(tmp_path / "r"),
            "--storage", str(tmp_path / "s"), "--leaderboard", "none"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    kill = {KILL_AT_ENV: "driver-search", KILL_MARKER_ENV: str(tmp_path / "killed")}
    first = subprocess.run(args, env={**env, **kill}, capture_output=True, text=True, timeout=600)
    assert first.returncode == -signal.SIGKILL, (first.stdout + first.stderr)[-3000:]
    assert "search trials for 10 trial-epochs" in first.stdout and "search budget 10 trial-epochs" in first.stdout
    second = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    assert "spent before this resume" in second.stdout
    runs = results.read_results(tmp_path / "r").to_pandas().drop_duplicates("run_id")
    search = runs[runs.role == "search"]
    ledger = next((tmp_path / "s" / "budgets").glob("search-*.json"))
    spent = spent_epochs(ledger)
    before = int(re.search(r"([\d,]+) spent before this resume", second.stdout).group(1))
    assert 0 < before < 10  # the first driver had spent part of the budget; the second went on from there
    assert 10 <= spent <= 10 + 2 and len(search) < 8  # at most one epoch more per concurrent trial (2 CPUs)
    # the store shows what the checkpoints hold: Tune keeps no checkpoint of an epoch it stops a trial after
    assert spent - len(search) <= int(search.epochs_run.sum()) <= spent
    assert set(search.budget_epochs) == {10}
    # grace period 4 = the cap: ASHA has no rung, so what stopped a trial early is the budget, recorded as such
    assert set(search[search.status == "stopped_early"].stop_reason) <= {"budget"}
    assert set(search[search.status == "completed"].stop_reason) <= {"early_stopping", "max_epochs"}
    assert "stopped by ASHA" not in second.stdout
    axes = json.loads(search.space_axes.iloc[0])
    assert axes == {"dropout": [0.3, 0.5], "lambda_f": [1.0, 1.5], "tau": [0.2, 0.5]}
    assert f"{int(search.epochs_run.sum())} trial-epochs of a budget of 10" in second.stdout
