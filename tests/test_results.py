"""Results store: fixed schema, one file per run, atomic writes, no duplicates on rewrite."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from mentor_ray.common.config import make_config
from mentor_ray.common.errors import MentorRayError
from mentor_ray.report import results


def _summary(seed=0, dropout=0.5, variant="mentor", r20=0.1):
    cfg = make_config(flags={"dataset": "synth-tiny", "variant": variant, "seed": seed},
                      overrides=[f"dropout={dropout}"]).model_dump()
    metrics = {f"{m}@{k}": r20 * k / 20 for m in ("recall", "ndcg") for k in (5, 10, 20, 50)}
    return {"dataset": "synth-tiny", "synthetic": True, "variant": variant, "seed": seed, "best_epoch": 3,
            "epochs_run": 9, "valid": metrics, "test": {k: v / 2 for k, v in metrics.items()},
            "seconds_per_epoch": 1.5, "peak_rss_mb": 900.0, "peak_gpu_mb": None, "config": cfg}


def test_rows_carry_every_metric_split_and_k_under_the_fixed_schema(tmp_path):
    table = results.rows_from_summary(_summary(), "search", "sweep-a", version="test")
    assert table.schema == results.SCHEMA
    assert table.num_rows == 2 * 2 * 4  # split x metric x K
    rows = table.to_pylist()
    r = next(r for r in rows if (r["split"], r["metric"], r["k"]) == ("test", "recall", 20))
    assert r["value"] == pytest.approx(0.05) and r["dropout"] == 0.5 and r["lambda_g"] == 1e-3
    assert r["best_epoch"] == 3 and r["epochs_run"] == 9 and r["peak_memory_mb"] == 900.0
    assert r["run_id"].startswith("search-synth-tiny-sweep-a-mentor-") and r["run_id"].endswith("-s0")


def test_one_point_searched_by_two_spaces_is_two_trials(tmp_path):
    """A second sweep whose space contains the first one's best point (where ASHA may stop it early)
    must not replace the first sweep's trial."""
    results.record(tmp_path, {**_summary(r20=0.3), "status": "completed"}, "search", "paper_grid")
    results.record(tmp_path, {**_summary(r20=0.1), "status": "stopped_early"}, "search", "mentor_lr_reg")
    table = results.read_results(tmp_path, split="valid", metric="recall", k=20).to_pandas()
    expected = {"paper_grid": pytest.approx(0.3), "mentor_lr_reg": pytest.approx(0.1)}
    assert dict(zip(table.sweep, table.value)) == expected


def test_rewriting_a_run_replaces_it_and_other_runs_stay(tmp_path):
    results.record(tmp_path, _summary(r20=0.1), "final", "s")
    results.record(tmp_path, _summary(seed=1), "final", "s")
    results.record(tmp_path, _summary(r20=0.2), "final", "s")  # the same run again (a resume)
    table = results.read_results(tmp_path)
    assert table.num_rows == 2 * 16 and len(set(table.column("run_id").to_pylist())) == 2
    r20 = results.read_results(tmp_path, seed=0, split="valid", metric="recall", k=20)
    assert r20.column("value").to_pylist() == [pytest.approx(0.2)]


def test_config_hash_ignores_seed_and_budget_but_not_hyperparameters():
    a, b = _summary(seed=0)["config"], _summary(seed=5)["config"]
    assert results.config_hash(a) == results.config_hash({**b, "max_epochs": 7})
    assert results.config_hash(a) != results.config_hash(_summary(dropout=0.3)["config"])


def test_a_torn_temporary_file_is_never_read(tmp_path):
    path = results.record(tmp_path, _summary(), "search", "s")
    (tmp_path / f".{path.stem}.999.tmp").write_bytes(b"PAR1 torn")  # a write killed half-way
    assert results.read_results(tmp_path).num_rows == 16
    assert pq.read_table(path).num_rows == 16


def test_empty_store_and_bad_inputs(tmp_path):
    assert results.read_results(tmp_path / "none").num_rows == 0
    with pytest.raises(MentorRayError, match="role 'best'"):
        results.rows_from_summary(_summary(), "best", "s")
    with pytest.raises(MentorRayError, match="no column 'recall'"):
        results.record(tmp_path, _summary(), "search", "s")
        results.read_results(tmp_path, recall=1)


def test_status_curve_and_timing_columns(tmp_path):
    s = {**_summary(), "status": "stopped_early", "valid_curve": [0.1, 0.3, 0.2], "started_at": 1.7e9,
         "wall_seconds": 12.5, "device": "cpu", "world_size": 2}
    rows = results.rows_from_summary(s, "search", "s", version="test").to_pylist()
    assert {r["status"] for r in rows} == {"stopped_early"} and rows[0]["error"] is None
    assert rows[0]["valid_curve"] == [0.1, 0.3, 0.2] and rows[0]["wall_seconds"] == 12.5
    assert rows[0]["started_at"].timestamp() == 1.7e9 and rows[0]["world_size"] == 2
    done = results.rows_from_summary(_summary(), "final", "s", version="test").to_pylist()[0]
    assert done["status"] == "completed" and done["valid_curve"] == [] and done["started_at"] is None
    with pytest.raises(MentorRayError, match="status 'lost'"):
        results.rows_from_summary({**_summary(), "status": "lost"}, "final", "s")


def test_a_failed_run_is_one_row_without_metrics(tmp_path):
    cfg = _summary()["config"]
    failed = results.failure_summary(cfg, "Traceback ...\nConfigError: device = 'cuda' but no CUDA device\n")
    results.record(tmp_path, failed, "search", "s")
    results.record(tmp_path, _summary(seed=1), "search", "s")
    table = results.read_results(tmp_path).to_pandas()
    bad = table[table.status == "failed"]
    assert len(bad) == 1 and bad.iloc[0].error == "ConfigError: device = 'cuda' but no CUDA device"
    assert bad[["split", "metric", "value"]].isna().all(axis=None) and bad.iloc[0].epochs_run == 0
    assert (table.status == "completed").sum() == 16


def test_files_in_subdirectories_are_not_read(tmp_path):
    results.record(tmp_path, _summary(), "final", "s")
    (tmp_path / "leaderboard").mkdir()
    (tmp_path / "leaderboard" / "leaderboard.md").write_text("# not parquet")
    assert results.read_results(tmp_path).num_rows == 16
