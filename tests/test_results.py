"""Results store: fixed schema, one file per run, atomic writes, no duplicates on rewrite; a corrupted
file is skipped with a warning naming it, a copied file is counted once."""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mentor_ray.common import embeddings
from mentor_ray.common.config import make_config
from mentor_ray.common.errors import MentorRayError
from mentor_ray.report import results
from mentor_ray.report.leaderboard import write_leaderboard


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


def test_memory_columns_carry_the_summary_and_an_older_file_reads_them_as_null(tmp_path):
    s = {**_summary(), "peak_rss_mb": 1450.0, "rss_start_mb": 700.0, "peak_gpu_mb": 812.5}
    row = results.rows_from_summary(s, "final", "s", version="test").to_pylist()[0]
    assert (row["peak_rss_mb"], row["rss_start_mb"], row["peak_gpu_mb"]) == (1450.0, 700.0, 812.5)
    assert row["peak_memory_mb"] == 812.5  # unchanged: the GPU peak when there is one
    cpu = results.rows_from_summary(_summary(), "final", "s", version="test").to_pylist()[0]
    assert cpu["rss_start_mb"] is None and cpu["peak_gpu_mb"] is None and cpu["peak_rss_mb"] == 900.0
    table = results.rows_from_summary(s, "search", "s", version="test")
    pq.write_table(table.drop_columns(["peak_rss_mb", "rss_start_mb", "peak_gpu_mb"]),
                   tmp_path / f"{table.column('run_id')[0]}.parquet")
    back = results.read_results(tmp_path)
    assert back.schema == results.SCHEMA and back.num_rows == 16
    assert back.column("rss_start_mb").null_count == 16 and back.column("peak_memory_mb")[0].as_py() == 812.5


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


# --------------------------------------------------------------------------- corrupted and duplicated files


def _write(root, summary, role="final", sweep="s"):
    """results.record without its git call (fast)."""
    return results.write_run(root, results.rows_from_summary(summary, role, sweep, version="test"))


def _store_with_bad_files(root):
    """Two good final runs (seeds 0 and 1) and one corrupted file of each kind; the bad files' paths."""
    good = _write(root, _summary(seed=0))
    _write(root, _summary(seed=1))
    data = good.read_bytes()
    wrong_type = results.rows_from_summary(_summary(seed=2), "final", "s", version="test")
    wrong_type = wrong_type.set_column(wrong_type.schema.get_field_index("seed"), "seed",
                                       pa.array(["two"] * wrong_type.num_rows))
    bad = {"truncated": root / "final-truncated.parquet", "empty": root / "final-empty.parquet",
           "random": root / "final-random.parquet", "schema": root / "final-other-schema.parquet",
           "type": root / "final-wrong-type.parquet"}
    bad["truncated"].write_bytes(data[: len(data) // 2])  # a copy cut short
    bad["empty"].write_bytes(b"")
    bad["random"].write_bytes(random.Random(0).randbytes(2000))
    pq.write_table(pa.table({"user": [1, 2], "item": [3, 4]}), bad["schema"])  # Parquet, not a results file
    pq.write_table(wrong_type, bad["type"])
    return bad


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == results.__name__ and r.levelno == logging.WARNING]


def test_corrupted_files_are_skipped_with_one_warning_naming_each(tmp_path, caplog):
    bad = _store_with_bad_files(tmp_path)
    with caplog.at_level(logging.WARNING, logger=results.__name__):
        table = results.read_results(tmp_path).to_pandas()
    assert len(table) == 2 * 16 and sorted(table.seed.unique()) == [0, 1]
    messages = _warnings(caplog)
    assert len(messages) == len(bad)
    for path in bad.values():
        (line,) = [m for m in messages if str(path) in m]
        assert "\n" not in line and "delete it" in line and "--resume" in line
    assert "no column run_id" in next(m for m in messages if str(bad["schema"]) in m)
    assert "column seed is string" in next(m for m in messages if str(bad["type"]) in m)
    with caplog.at_level(logging.WARNING, logger=results.__name__):  # a filtered read skips them too
        assert results.read_results(tmp_path, seed=1, split="valid").num_rows == 8


def test_the_leaderboard_builds_from_a_store_with_corrupted_and_copied_files(tmp_path, caplog):
    store = tmp_path / "r"
    _store_with_bad_files(store)
    shutil.copy(next(store.glob("*-s0.parquet")), store / "copy of a run.parquet")
    with caplog.at_level(logging.WARNING, logger=results.__name__):
        markdown = write_leaderboard(store, tmp_path / "lb", "md,csv")
    assert "MENTOR" in markdown and len(_warnings(caplog)) == 6
    overall = pd.read_csv(tmp_path / "lb" / "csv" / "overall.csv")
    assert overall.loc[overall.variant == "mentor", "seeds"].tolist() == [2]


def test_results_show_warns_on_stderr_and_exits_0(tmp_path):
    bad = _store_with_bad_files(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "mentor_ray.results", "show", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("2 runs, 32 rows")
    lines = [line for line in proc.stderr.splitlines() if "corrupted run file" in line]
    assert len(lines) == len(bad) and all(any(str(p) in line for line in lines) for p in bad.values())
    assert "Traceback" not in proc.stderr


def test_a_copied_file_is_counted_once(tmp_path, caplog):
    first = _write(tmp_path, _summary(seed=0))
    _write(tmp_path, _summary(seed=1))
    copy = tmp_path / f"{first.stem} (1).parquet"
    shutil.copy(first, copy)
    with caplog.at_level(logging.WARNING, logger=results.__name__):
        r20 = results.read_results(tmp_path, role="final", split="valid", metric="recall", k=20).to_pandas()
    assert len(r20) == 2 and sorted(r20.seed) == [0, 1]  # 2 seeds, not 3
    (message,) = _warnings(caplog)
    assert str(first) in message and "counted once" in message and message.endswith(f"extra copies: {copy}")
    assert "conflict" not in message


def test_a_conflicting_copy_keeps_the_newest_file(tmp_path, caplog):
    old = _write(tmp_path, _summary(r20=0.1))
    new = tmp_path / "restored.parquet"
    shutil.copy(old, new)
    _write(tmp_path, _summary(r20=0.3))  # rewrites `old` with other metrics
    os.utime(old, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    os.utime(new, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
    with caplog.at_level(logging.WARNING, logger=results.__name__):
        r20 = results.read_results(tmp_path, split="valid", metric="recall", k=20)
        assert results.read_results(tmp_path).num_rows == 16
    assert r20.column("value").to_pylist() == [pytest.approx(0.1)]  # the newest file's, whatever its name
    message = _warnings(caplog)[0]
    assert "conflicting metrics" in message and f"kept the newest, {new}" in message and str(old) in message
    os.utime(old, ns=(3_000_000_000_000_000_000, 3_000_000_000_000_000_000))
    r20 = results.read_results(tmp_path, split="valid", metric="recall", k=20)
    assert r20.column("value").to_pylist() == [pytest.approx(0.3)]


def test_threads_and_torch_version_are_recorded(tmp_path):
    import torch

    from mentor_ray.common import config
    from mentor_ray.training.trainer import Trainer

    cfg = config.make_config(flags={"dataset": "synth-tiny", "variant": "mf_bpr", "max_epochs": 1},
                             overrides=["embedding_dim=8", "batch_size=64"])
    summary = Trainer(cfg).fit()
    assert summary["threads"] == torch.get_num_threads() and summary["torch_version"] == torch.__version__
    results.record(tmp_path, summary, "final", "x")
    df = results.read_results(tmp_path).to_pandas()
    assert set(df.threads) == {torch.get_num_threads()} and set(df.torch_version) == {torch.__version__}


def test_per_user_values_are_kept_for_final_runs_only(tmp_path):
    s = _summary()
    s["test_users"] = {"user": [3, 5, 8], "recall@10": [1.0, 0.0, 0.5], "recall@20": [1.0, 1.0, 0.5],
                       "ndcg@10": [0.5, 0.0, 0.25], "ndcg@20": [0.5, 0.3, 0.25]}
    final = results.rows_from_summary(s, "final", "sw", version="test").to_pylist()
    kept = {(r["metric"], r["k"]): r for r in final if r["user_ids"] is not None}
    assert set(kept) == {("recall", 10), ("recall", 20), ("ndcg", 10), ("ndcg", 20)}
    assert all(r["split"] == "test" for r in kept.values())
    assert kept[("ndcg", 20)]["user_ids"] == [3, 5, 8]
    assert kept[("ndcg", 20)]["user_values"] == pytest.approx([0.5, 0.3, 0.25])
    search = results.rows_from_summary(s, "search", "sw", version="test").to_pylist()
    assert all(r["user_ids"] is None and r["user_values"] is None for r in search)  # trials stay lean
    results.write_run(tmp_path, results.rows_from_summary(s, "final", "sw", version="test"))
    from mentor_ray.report.select import load_runs

    runs = load_runs(tmp_path)
    ids, values = runs.loc[0, "users:test_recall@20"]
    assert ids.tolist() == [3, 5, 8] and values.tolist() == [1.0, 1.0, 0.5]


def test_a_row_with_k_but_no_metric_or_the_reverse_is_a_corrupted_file(tmp_path, caplog):
    """Found by the fuzz campaign: a file whose k column was nulled crashed the leaderboard (int(NaN))."""
    _write(tmp_path, _summary(seed=0))
    rows = results.rows_from_summary(_summary(seed=1), "final", "s", version="test")
    k = rows.schema.get_field_index("k")
    pq.write_table(rows.set_column(k, "k", pa.nulls(rows.num_rows, pa.int32())), tmp_path / "final-nulled-k.parquet")
    with caplog.at_level(logging.WARNING, logger=results.__name__):
        table = results.read_results(tmp_path).to_pandas()
    assert sorted(table.seed.unique()) == [0]
    assert any("final-nulled-k.parquet" in m and "some of split, metric and k null" in m for m in _warnings(caplog))


_STORED_COLUMNS = [c for c in results.SCHEMA.names if c not in ("finished_at",)]
_KEPT = embeddings.encode(np.arange(3), {"id": np.eye(3, 2, dtype=np.float32), "image": np.ones((3, 2), np.float32)})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 50), r20=st.floats(0.0, 1.0), users=st.booleans(), cuda=st.booleans(),
       started=st.one_of(st.none(), st.integers(1_600_000_000, 1_900_000_000)),
       role=st.sampled_from(["final", "ablation"]), curve=st.lists(st.floats(0.0, 1.0), max_size=5))
def test_a_stored_run_reads_back_as_the_summary_that_wrote_it(tmp_path_factory, seed, r20, users, cuda, started,
                                                                role, curve):
    """stored_summary inverts rows_from_summary: the rows written again from what it reads are the rows in
    the file (all but finished_at, the time of the write), so a sweep that takes a run from the store (more
    seeds after fewer) records and reports it exactly as the run that trained it did."""
    root = tmp_path_factory.mktemp("store")
    s = _summary(seed=seed, r20=r20)
    s.update(valid_curve=curve, wall_seconds=12.5, device="cuda:0" if cuda else "cpu", world_size=1,
             threads=2, torch_version="2.2.1", stop_reason="patience", started_at=started,
             peak_gpu_mb=512.0 if cuda else None, rss_start_mb=300.0, item_embeddings=_KEPT)
    if users:
        s["test_users"] = {"user": [3, 5, 8], "recall@10": [1.0, 0.0, 0.5], "recall@20": [1.0, 1.0, 0.5],
                           "ndcg@10": [0.5, 0.0, 0.25], "ndcg@20": [0.5, 0.3, 0.25]}
    written = results.write_run(root, results.rows_from_summary(s, role, "sw", version="v1"))
    back = results.stored_summary(root, role, s["config"])
    assert back is not None and back["test"] == pytest.approx(s["test"]) and back["seed"] == seed
    again = results.rows_from_summary(back, role, "sw").select(_STORED_COLUMNS)
    assert again.equals(pq.read_table(written).select(_STORED_COLUMNS))


def test_a_stored_run_is_taken_only_when_it_is_the_same_completed_run(tmp_path):
    s = _summary()
    results.write_run(tmp_path, results.rows_from_summary(s, "final", "sw", version="v1"))
    cfg = s["config"]
    assert results.stored_summary(tmp_path, "final", cfg) is not None
    assert results.stored_summary(tmp_path, "final", {**cfg, "infonce_chunk": 7}) is not None  # runtime only
    assert results.stored_summary(tmp_path, "ablation", cfg) is None  # another role: another run
    assert results.stored_summary(tmp_path, "final", {**cfg, "seed": 1}) is None
    assert results.stored_summary(tmp_path, "final", {**cfg, "max_epochs": cfg["max_epochs"] + 1}) is None
    assert results.stored_summary(tmp_path, "final", {**cfg, "dropout": 0.1}) is None
    assert results.stored_summary(tmp_path, "final", {**cfg, "data_root": "/elsewhere"}) is None
    results.write_run(tmp_path, results.rows_from_summary({**s, "status": "failed", "error": "boom"}, "final", "sw",
                                                          version="v1"))
    assert results.stored_summary(tmp_path, "final", cfg) is None  # a failed run is trained again
    path = next(tmp_path.glob("final-*.parquet"))
    path.write_bytes(b"not parquet")
    assert results.stored_summary(tmp_path, "final", cfg) is None  # unreadable: trained again, replaced
    with pytest.raises(MentorRayError, match="final and ablation runs"):
        results.stored_summary(tmp_path, "search", cfg)


def _add(tmp_path, *args):
    from mentor_ray import results as results_cli
    from mentor_ray.cli import run

    return run(results_cli.main, ["add", *map(str, args)])


def test_results_add_writes_summaries_that_a_sweep_then_takes_from_the_store(tmp_path, capsys):
    """Runs trained outside a sweep (a GPU node without Ray) join the store as final runs: their rows are a
    sweep's, stored_summary finds them (so a sweep with the same point and seeds does not train them again),
    a second add keeps what is there unless --replace, and a run given twice in one call is refused whole."""
    import json

    store = tmp_path / "store"
    files = []
    for seed in (0, 1):
        files.append(tmp_path / f"s{seed}.json")
        files[-1].write_text(json.dumps({**_summary(seed=seed), "test_users": {
            "user": [1, 2], **{f"{m}@{k}": [0.5, 1.0] for m in ("recall", "ndcg") for k in (10, 20)}}}))
    assert _add(tmp_path, "--results", store, "--role", "final", "--sweep", "gpu_point", *files) == 0
    assert "2 run(s) written" in capsys.readouterr().out
    table = results.read_results(store).to_pandas()
    assert set(table.sweep) == {"gpu_point"} and set(table.role) == {"final"} and table.run_id.nunique() == 2
    assert table[table.split == "test"].user_ids.notna().any()  # per-user values kept: Fig. 6, paired tests
    for seed in (0, 1):
        assert results.stored_summary(store, "final", _summary(seed=seed)["config"]) is not None
    before = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    assert _add(tmp_path, "--results", store, "--role", "final", files[0]) == 0
    assert "kept" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in store.iterdir()} == before
    assert _add(tmp_path, "--results", store, "--role", "final", "--replace", files[0]) == 0
    assert "1 run(s) written" in capsys.readouterr().out
    other = tmp_path / "other"
    assert _add(tmp_path, "--results", other, "--role", "final", files[0], files[1], files[0]) != 0
    assert "repeat a run" in capsys.readouterr().err and not other.exists()


def _json_values():
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=5))
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                  st.dictionaries(st.text(max_size=6), c, max_size=3)),
                        max_leaves=8)


@st.composite
def _broken_summaries(draw):
    """Text that is not a finished run's summary: not JSON, any JSON value, a summary without one of its
    keys, with a setting out of range or unknown, a run that never evaluated, or one whose dataset, variant
    or seed is not its config's."""
    import json

    kind = draw(st.sampled_from(["text", "json", "missing", "setting", "unknown", "failed", "mismatch"]))
    if kind == "text":
        return draw(st.text(max_size=20).filter(lambda t: not _is_json(t)))
    if kind == "json":
        return json.dumps(draw(_json_values()))
    s = _summary(seed=draw(st.integers(0, 9)))
    if kind == "missing":
        del s[draw(st.sampled_from(["dataset", "variant", "seed", "config", "valid", "test"]))]
    elif kind == "setting":
        s["config"][draw(st.sampled_from(["lr", "dropout", "embedding_dim", "batch_size"]))] = draw(
            st.one_of(st.text(max_size=3), st.just(-1), st.just(True), st.none()))
    elif kind == "unknown":
        s["config"][draw(st.sampled_from(["lr_", "zzz", "Dropout"]))] = 1
    elif kind == "mismatch":  # the run id is made of these: a summary and its config must agree on them
        key = draw(st.sampled_from(["dataset", "variant", "seed"]))
        s[key] = draw(st.sampled_from({"dataset": ["tiktok", "synth-small"], "variant": ["lightgcn", "mmssl"],
                                       "seed": [10, 11, "0"]}[key]))  # never the config's (seeds 0-9)
    else:
        s.update(status=draw(st.sampled_from(["failed", "x" * 5000])), test=None)  # echoed, cut short
    return json.dumps(s)


def _is_json(text):
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_broken_summaries(), good_first=st.booleans())
def test_results_add_refuses_anything_but_a_finished_summary_in_one_line_and_writes_nothing(
        tmp_path_factory, capsys, doc, good_first):
    """Whatever the file holds, a file that is not a finished run's summary is one line naming it, exit 2,
    and the store is left as it was, even where a good summary comes before it in the same call."""
    import json

    root = tmp_path_factory.mktemp("add")
    good, bad = root / "good.json", root / "bad.json"
    good.write_text(json.dumps(_summary()))
    bad.write_text(doc)
    capsys.readouterr()
    files = [good, bad] if good_first else [bad]
    assert _add(root, "--results", root / "store", "--role", "final", *files) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and len(err[0]) < 1000, err
    assert not (root / "store").exists()


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).parents[1] / "tune_spaces")
                                        .glob("*_point.yaml")))
def test_train_with_a_point_spaces_settings_is_the_sweeps_final_run(name):
    """tools/device_finals.sh trains a point-only space's finals in-process (`train` with the space's fixed
    settings as key=value, --max-epochs, --seed) where no Ray runs; `results add` then stores them. They are
    the runs a sweep of that space would train: same run id, and stored_summary's match."""
    from mentor_ray.common.config import resume_settings
    from mentor_ray.sweep.spaces import load_space
    from mentor_ray.sweep.trials import trial_config

    space = load_space(name)
    assert not space.search  # a point: nothing searched
    fixed = space.settings_for("tiktok")
    base = {"dataset": "tiktok", "data_root": "/data", **fixed, "max_epochs": 100}
    sweep = trial_config(base, space.model, 3, {}, space.model).model_dump()
    train = make_config(flags={"dataset": "tiktok", "data_root": "/data", "variant": space.model, "seed": 3,
                               "max_epochs": 100},
                        overrides=[f"{k}={v}" for k, v in fixed.items()] + ["device=cuda"]).model_dump()
    assert resume_settings(train) == resume_settings(sweep) and train["max_epochs"] == sweep["max_epochs"]
    assert results.config_hash(train) == results.config_hash(sweep)


def test_a_run_records_the_code_its_process_loaded_not_where_the_checkout_moved_since(monkeypatch):
    """code_version is taken once per process (a trainer takes it when it starts): a commit made while a sweep
    runs does not relabel the runs the sweep's processes trained with the earlier code."""
    import types

    from mentor_ray.common import runtime

    heads = iter(["aaaaaaaaaa", "", "bbbbbbbbbb", ""])  # rev-parse, then status, per call
    monkeypatch.setattr(runtime.subprocess, "run", lambda *a, **k: types.SimpleNamespace(stdout=next(heads)))
    runtime.code_version.cache_clear()
    try:
        first = runtime.code_version()
        assert first.endswith("+gaaaaaaaaaa") and runtime.code_version() == first  # not asked again
        s = {**_summary(), "code_version": first}
        rows = results.rows_from_summary(s, "final", "sw")
        assert set(rows.column("code_version").to_pylist()) == {first}
    finally:
        runtime.code_version.cache_clear()


def test_a_trainers_summary_names_the_code_that_trained_it():
    from mentor_ray.common.runtime import code_version
    from mentor_ray.training.trainer import Trainer

    cfg = make_config(flags={"dataset": "synth-tiny", "variant": "most_pop", "max_epochs": 1})
    trainer = Trainer(cfg)
    assert trainer.fit()["code_version"] == code_version()
