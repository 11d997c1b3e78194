"""A search interrupted (Ctrl-C) and resumed gives the same sweep as one left to run: the trials running at
the interrupt are judged by ASHA at the rungs they had not passed, against the same values as without the
interrupt (:mod:`mentor_ray.sweep.asha`), and the output has no ERROR line."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from mentor_ray.common.runtime import KILL_AT_ENV, KILL_MARKER_ENV, KILL_SIGNAL_ENV
from mentor_ray.report import leaderboard
from mentor_ray.report.select import load_runs

# 6 learning rates on synth-tiny, up to 9 epochs, rungs at 1, 3 and 9 epochs: ASHA stops 4 of the 6 (torch 2.2.1)
# or 5 (torch 2.13)
SPACE = """name: asha_probe
search:
  lr: [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2]
fixed:
  embedding_dim: 16
  knn_k: 5
  batch_size: 256
  max_epochs: 9
  patience: 9
  infonce_scope: batch
"""


def _sweep(tmp_path, store: str, *extra):
    return [sys.executable, "-m", "mentor_ray.tune", "--dataset", "synth-tiny", "--space", str(tmp_path / "asha.yaml"),
            "--seeds", "1", "--grace-period", "1", "--max-concurrent", "1", "--cpus-per-trial", "1", "--quiet",
            "--leaderboard", "none", "--results", str(tmp_path / store / "r"), "--storage",
            str(tmp_path / store / "s"), *extra]


def _search_runs(store):
    runs = load_runs(store)
    search = runs[runs.role == "search"]
    # stop_reason: what stopped each (ASHA: no budget here), recorded the same by the driver that ended the trial
    return sorted(zip(search.config_hash, search.status, search.stop_reason.fillna("?"), search.epochs_run,
                      search["valid_recall@20"].round(6)))


def _sweep_table(store):
    """The sweep table's columns that do not measure time."""
    frame = leaderboard.sweep_frame(load_runs(store))
    timed = [c for c in frame.columns if "seconds" in c]
    return frame.drop(columns=timed).to_dict("records")


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The search left to run: the store every interrupted one is compared with, and its trials' epoch counts
    in the order they ran."""
    tmp_path = tmp_path_factory.mktemp("asha")
    (tmp_path / "asha.yaml").write_text(SPACE)
    proc = subprocess.run(_sweep(tmp_path, "whole"), env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    store = tmp_path / "whole" / "r"
    ended = [(status, why) for _, status, why, _, _ in _search_runs(store)]
    stopped = sum(status == "stopped_early" for status, _ in ended)
    assert 1 <= stopped <= 5  # ASHA decided something here (4 under torch 2.2.1, 5 under 2.13)
    assert {why for status, why in ended if status == "stopped_early"} == {"asha"}
    assert {why for status, why in ended if status == "completed"} <= {"early_stopping", "max_epochs"}
    runs = load_runs(store)
    search = runs[runs.role == "search"].sort_values("started_at")
    return tmp_path, store, [len(c) for c in search.valid_curve]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def _interrupt_at(epochs: list[int], where: str) -> int:
    """Which epoch result (counted over the search, 1 at a time) to interrupt at: ``judged``, the first result of
    the second trial (the one ASHA judges it on at the first rung); ``between``, the second epoch of the first
    later trial that trained 3 epochs or more (between the first two rungs)."""
    done = list(itertools.accumulate(epochs))
    if where == "judged":
        return done[0] + 1
    later = [k for k in range(1, len(epochs)) if epochs[k] >= 3]
    if not later:
        pytest.skip("no later trial trained past the first rung in this profile")
    return done[later[0] - 1] + 2


@pytest.mark.driver
@pytest.mark.slow  # two sweeps in subprocesses per case, plus the uninterrupted one (~2.5 min in all)
@pytest.mark.parametrize("where", ["judged", "between"])
def test_an_interrupted_and_resumed_search_equals_an_uninterrupted_one(whole, where):
    tmp_path, store, epochs = whole
    at = _interrupt_at(epochs, where)
    cut = f"cut{at}"
    stop = {KILL_AT_ENV: f"driver-search-result{at}", KILL_MARKER_ENV: str(tmp_path / f"interrupted{at}"),
            KILL_SIGNAL_ENV: "INT"}
    first = subprocess.run(_sweep(tmp_path, cut), env={**_env(), **stop}, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 130, (first.stdout + first.stderr)[-3000:]
    assert (tmp_path / f"interrupted{at}").exists()
    second = subprocess.run(_sweep(tmp_path, cut, "--resume"), env=_env(), capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    for proc in (first, second):
        assert "ERROR" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]

    assert _search_runs(tmp_path / cut / "r") == _search_runs(store)
    assert _sweep_table(tmp_path / cut / "r") == _sweep_table(store)
