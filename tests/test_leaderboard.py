"""Leaderboard: Table 2 / ablations / Table 3 / sweep summary / plots from small result stores.

Expected numbers are computed here independently (statistics.mean/stdev, the paired t statistic and, for
3 seeds (2 degrees of freedom), its exact two-sided p = 1 - |t| / sqrt(2 + t^2)), never with scipy.
"""

from __future__ import annotations

import math
import re
import statistics

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mentor_ray import leaderboard as leaderboard_cmd
from mentor_ray.cli import run
from mentor_ray.common.config import VARIANTS, make_config, read_keys
from mentor_ray.common.errors import MentorRayError
from mentor_ray.common.names import KS
from mentor_ray.report import board, plots, render, results, select
from mentor_ray.report import leaderboard as lb
from tests.store_helpers import record

COLS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")  # the table's test columns, in order


# --------------------------------------------------------------------------- fixtures


def _summary(dataset="synth-a", variant="mentor", seed=0, test=(0.01, 0.02, 0.005, 0.008), valid=0.1,
             synthetic=True, status=None, curve=(), started=None, wall=0.0, spe=1.0, mem=500.0, device="cpu",
             world_size=1, epochs=5, stopped=False, gpu=None, rss_start=None, **hp):
    """A summary shaped like Trainer.summary(); ``test`` is (R@10, R@20, N@10, N@20), ``valid`` every valid metric;
    ``mem`` the peak RSS, ``rss_start`` the RSS at the run's start (absent when None: an older trainer's summary)."""
    cfg = make_config(flags={"dataset": dataset, "variant": variant, "seed": seed},
                      overrides=[f"{k}={v}" for k, v in hp.items()]).model_dump()
    tst = {f"{m}@{k}": 0.001 for m in ("recall", "ndcg") for k in KS} | dict(zip(COLS, test))
    summary = {"dataset": dataset, "synthetic": synthetic, "variant": variant, "seed": seed, "best_epoch": 2,
               "epochs_run": epochs, "valid": {f"{m}@{k}": valid for m in ("recall", "ndcg") for k in KS},
               "test": tst, "seconds_per_epoch": spe, "peak_rss_mb": mem, "peak_gpu_mb": gpu, "device": device,
               "world_size": world_size, "valid_curve": list(curve), "started_at": started, "wall_seconds": wall,
               "config": cfg}
    if status or stopped:
        summary["status"] = status or "stopped_early"
    if rss_start is not None:
        summary["rss_start_mb"] = rss_start
    return summary


_record = record  # tests.store_helpers


# Table-2 fixture, 3 seeds. MENTOR vs LightGCN differences per seed: R@10 (.010, .010, .013) and R@20
# (.010, .0105, .0102) are consistent (significant); N@10 (.010, -.005, .009) and N@20 (.010, .004, .012) are not.
TABLE2 = {
    "most_pop": [(0.010, 0.020, 0.005, 0.008), (0.011, 0.021, 0.006, 0.009), (0.012, 0.019, 0.004, 0.007)],
    "mf_bpr": [(0.020, 0.030, 0.010, 0.015), (0.022, 0.033, 0.012, 0.016), (0.021, 0.031, 0.011, 0.017)],
    "lightgcn": [(0.040, 0.060, 0.020, 0.030), (0.042, 0.061, 0.025, 0.031), (0.041, 0.065, 0.022, 0.033)],
    "mentor": [(0.050, 0.070, 0.030, 0.040), (0.052, 0.0715, 0.020, 0.035), (0.054, 0.0752, 0.031, 0.045)],
}


def _table2_store(root, dataset="synth-a", synthetic=True):
    for variant, per_seed in TABLE2.items():
        for seed, test in enumerate(per_seed):
            s = _summary(dataset, variant, seed, test, synthetic=synthetic, curve=[0.05, 0.08 + seed / 100, 0.09])
            _record(root, s, "final" if variant == "mentor" else "ablation")
            if variant == "mentor":
                _record(root, s, "ablation")  # the sweep records MENTOR's finals under both roles


def _values(variant, col):
    return [t[COLS.index(col)] for t in TABLE2[variant]]


def _cell(values, mark=0, star=False):
    """The Markdown of a cell, built from the values independently of the module."""
    text = f"{statistics.mean(values):.4f}"
    text = f"**{text}**" if mark == 1 else f"_{text}_" if mark == 2 else text
    text += "\\*" if star else ""
    return text + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else "")


def _paired(a, b):
    d = [x - y for x, y in zip(a, b)]
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
    return t, 1 - abs(t) / math.sqrt(2 + t * t)  # exact two-sided p for 2 degrees of freedom


def _row(md, name):
    return next(line for line in md.splitlines() if line.startswith(f"| {name} |"))


def _table(md, title):
    """The Markdown of the table whose heading starts with ``title`` (its heading, rows and note)."""
    return md.split(f"### {title}")[1].split("\n### ")[0].split("\n## ")[0]


SWEEP, SPEND, TIME = "Search per dataset and space", "What each search spent", "Wall-clock and run time"


def _board(root, out, formats=("md", "csv")):
    return lb.write_leaderboard(root, out, formats)


# --------------------------------------------------------------------------- Table 2


def test_overall_table_marks_best_and_second_improvement_and_significance(tmp_path):
    _table2_store(tmp_path / "r")
    md = _board(tmp_path / "r", tmp_path / "o")
    stats = {c: _paired(_values("mentor", c), _values("lightgcn", c)) for c in COLS}
    stars = {c: stats[c][1] < 0.05 for c in COLS}
    assert stars == {"recall@10": True, "recall@20": True, "ndcg@10": False, "ndcg@20": False}  # the fixture's design
    assert _row(md, "MENTOR") == "| MENTOR | " + " | ".join(
        _cell(_values("mentor", c), 1, stars[c]) for c in COLS) + " |"
    assert _row(md, "LightGCN") == "| LightGCN | " + " | ".join(_cell(_values("lightgcn", c), 2) for c in COLS) + " |"
    assert _row(md, "MostPop") == "| MostPop | " + " | ".join(_cell(_values("most_pop", c)) for c in COLS) + " |"
    pct = [(statistics.mean(_values("mentor", c)) / statistics.mean(_values("lightgcn", c)) - 1) * 100 for c in COLS]
    assert _row(md, "Improv.") == "| Improv. | " + " | ".join(f"{p:.2f}%" for p in pct) + " |"
    names = [line.split(" | ")[0][2:] for line in md.split("### Overall")[1].split("###")[0].splitlines()
             if line.startswith("| ") and not line.startswith("| Model")]
    assert names == ["MostPop", "MF-BPR", "LightGCN", "MENTOR", "Improv."]

    imp = pd.read_csv(tmp_path / "o" / "csv" / "improvement.csv").set_index("column")
    for c in COLS:
        row = imp.loc[f"test_{c}"]
        assert row.best_baseline == "lightgcn" and row.pairs == 3 and bool(row.significant) == stars[c]
        assert row.t == pytest.approx(stats[c][0], rel=1e-6) and row.p_value == pytest.approx(stats[c][1], rel=1e-6)
    overall = pd.read_csv(tmp_path / "o" / "csv" / "overall.csv").set_index("variant")
    assert overall.loc["mentor", "seeds"] == 3  # recorded as final and as ablation: counted once
    assert overall.loc["mentor", "test_ndcg@10_std"] == pytest.approx(statistics.stdev(_values("mentor", "ndcg@10")))


def test_missing_cells_and_synthetic_labels(tmp_path):
    root = tmp_path / "r"
    for variant, test in [("lightgcn", (0.03, 0.05, 0.02, 0.03)), ("mentor", (0.04, 0.06, 0.03, 0.04))]:
        _record(root, _summary("baby", variant, 0, test, synthetic=False))  # a real dataset: no MF-BPR run
    for variant, test in [("mf_bpr", (0.02, 0.03, 0.01, 0.02)), ("mentor", (0.05, 0.07, 0.04, 0.05))]:
        _record(root, _summary("synth-b", variant, 0, test))  # no LightGCN run
    md = _board(root, tmp_path / "o")
    header = next(line for line in md.splitlines() if line.startswith("| Model |"))
    assert header.startswith("| Model | baby R@10 | baby R@20 | baby N@10 | baby N@20 | synth-b (synthetic) R@10 |")
    second = lambda *vals: " | ".join(f"_{v:.4f}_" for v in vals)  # noqa: E731
    assert _row(md, "MF-BPR") == f"| MF-BPR | – | – | – | – | {second(0.02, 0.03, 0.01, 0.02)} |"
    assert _row(md, "LightGCN") == f"| LightGCN | {second(0.03, 0.05, 0.02, 0.03)} | – | – | – | – |"
    overall = pd.read_csv(tmp_path / "o" / "csv" / "overall.csv")
    missing = overall[(overall.dataset == "baby") & (overall.variant == "mf_bpr")].iloc[0]
    assert missing.seeds == 0 and math.isnan(missing["test_recall@20_mean"])
    assert set(overall.loc[overall.dataset == "synth-b", "synthetic"]) == {True}


def test_one_seed_has_no_std_no_test_and_no_star(tmp_path):
    root = tmp_path / "r"
    _record(root, _summary(variant="lightgcn", test=(0.03, 0.05, 0.02, 0.03)))
    _record(root, _summary(variant="mentor", test=(0.06, 0.09, 0.04, 0.05)))
    md = _board(root, tmp_path / "o")
    assert _row(md, "MENTOR") == "| MENTOR | **0.0600** | **0.0900** | **0.0400** | **0.0500** |"
    assert _row(md, "Improv.") == "| Improv. | 100.00% | 80.00% | 100.00% | 66.67% |"
    imp = pd.read_csv(tmp_path / "o" / "csv" / "improvement.csv")
    assert set(imp.pairs) == {1} and imp.p_value.isna().all() and not imp.significant.any()
    assert "fewer than 2 seeds shared by MENTOR and the best baseline; no t-test" in md


def test_no_star_when_mentor_is_significantly_behind(tmp_path):
    root = tmp_path / "r"
    base, mentor = [0.050, 0.060, 0.070], [0.040, 0.0505, 0.0598]  # MENTOR consistently ~0.01 behind
    for seed in range(3):
        _record(root, _summary(variant="lightgcn", seed=seed, test=(0.01, base[seed], 0.01, 0.01)))
        _record(root, _summary(variant="mentor", seed=seed, test=(0.01, mentor[seed], 0.01, 0.01)))
    md = _board(root, tmp_path / "o")
    t, p = _paired(mentor, base)
    assert t < 0 and p < 0.05
    imp = pd.read_csv(tmp_path / "o" / "csv" / "improvement.csv").set_index("column").loc["test_recall@20"]
    assert imp.p_value == pytest.approx(p, rel=1e-6) and not imp.significant
    pct = (statistics.mean(mentor) / statistics.mean(base) - 1) * 100
    assert _row(md, "Improv.").split(" | ")[2] == f"{pct:.2f}%" and pct < 0
    assert _row(md, "MENTOR").split(" | ")[2] == _cell(mentor, 2)


def test_tied_values_share_the_mark(tmp_path):
    root = tmp_path / "r"
    for variant, test in [("most_pop", (0.01, 0.01, 0.01, 0.01)), ("mf_bpr", (0.03, 0.05, 0.02, 0.02)),
                          ("lightgcn", (0.03, 0.05, 0.02, 0.02)), ("mentor", (0.02, 0.06, 0.02, 0.01))]:
        _record(root, _summary(variant=variant, test=test))
    md = _board(root, tmp_path / "o")
    # R@10: two baselines tie for best, MENTOR second; R@20: MENTOR best, the two baselines tie second;
    # N@10: three-way tie at the top, so MostPop's next value is second; N@20: MENTOR ties MostPop for second
    tied = "| **0.0300** | _0.0500_ | **0.0200** | **0.0200** |"
    assert _row(md, "MF-BPR").endswith(tied) and _row(md, "LightGCN").endswith(tied)
    assert _row(md, "MENTOR") == "| MENTOR | _0.0200_ | **0.0600** | **0.0200** | _0.0100_ |"
    assert _row(md, "MostPop") == "| MostPop | 0.0100 | 0.0100 | _0.0100_ | _0.0100_ |"
    assert lb.marks([0.3, None, 0.30000001, 0.1, 0.2]) == [1, 0, 1, 0, 2]  # equal at 4 decimals: tied


def test_baseline_only_dataset_has_no_improvement_row(tmp_path):
    root = tmp_path / "r"
    _record(root, _summary(variant="most_pop", test=(0.01, 0.02, 0.01, 0.01), epochs=0, spe=0.0))
    _record(root, _summary(variant="lightgcn", test=(0.03, 0.05, 0.02, 0.03)))
    md = _board(root, tmp_path / "o")
    assert "| Improv. |" not in md and "| LightGCN | **0.0300** |" in md
    assert "synth-a (synthetic): no MENTOR runs, so no Improv. for this dataset" in md
    assert "no ablation runs of mentor_base, mentor_l1, mentor_l2" in md and "### synth-a" not in md
    assert pd.read_csv(tmp_path / "o" / "csv" / "improvement.csv").empty


def test_selection_on_validation_never_on_test(tmp_path):
    root = tmp_path / "r"
    for seed, valid in enumerate([0.20, 0.22]):  # config A: better validation, worse test
        _record(root, _summary(variant="mentor_fg", seed=seed, valid=valid, test=(0.01, 0.05, 0.01, 0.01), dropout=0.3))
    for seed, valid in enumerate([0.19, 0.20]):  # config B: worse validation, better test
        _record(root, _summary(variant="mentor_fg", seed=seed, valid=valid, test=(0.02, 0.09, 0.02, 0.02), dropout=0.6))
    for dropout in (0.2, 0.4):  # MENTOR: two configs tied on validation -> the lower config hash
        _record(root, _summary(variant="mentor", valid=0.3, test=(0.01, 0.01 + dropout, 0.01, 0.01), dropout=dropout))
    _record(root, _summary(variant="mentor", valid=0.9, test=(0.9, 0.9, 0.9, 0.9), dropout=0.7), role="search")
    md = _board(root, tmp_path / "o")
    row = re.sub(r"_(\d\.\d+)_", r"\1", _row(md, "MENTOR_fg").replace("**", ""))
    assert row == "| MENTOR_fg | 0.0100 ± 0.0000 | 0.0500 ± 0.0000 | 0.0100 ± 0.0000 | 0.0100 ± 0.0000 |"
    overall = pd.read_csv(tmp_path / "o" / "csv" / "overall.csv").set_index("variant")
    assert overall.loc["mentor_fg", "test_recall@20_mean"] == pytest.approx(0.05)
    assert overall.loc["mentor_fg", "valid_recall@20_mean"] == pytest.approx(0.21)
    hashes = {d: results.config_hash(_summary(variant="mentor", dropout=d)["config"]) for d in (0.2, 0.4)}
    winner = min(hashes, key=hashes.get)
    assert overall.loc["mentor", "config_hash"] == hashes[winner]
    assert overall.loc["mentor", "test_recall@20_mean"] == pytest.approx(0.01 + winner)  # never the search run's 0.9


def test_ablation_tables(tmp_path):
    root = tmp_path / "r"
    vals = {"mentor_base": [0.040, 0.044], "mentor_l1": [0.050, 0.052], "mentor": [0.060, 0.061]}
    for variant, r20s in vals.items():
        for seed, r20 in enumerate(r20s):
            _record(root, _summary(variant=variant, seed=seed, test=(r20 / 2, r20, r20 / 4, r20 / 3)))
    md = _board(root, tmp_path / "o")
    section = md.split("### synth-a (synthetic): Multilevel cross-modal alignment (Fig. 3)")[1].split("###")[0]
    assert "| MENTOR_L2 | – | – | – | – |" in section
    assert f"| MENTOR_base | {_cell([v / 2 for v in vals['mentor_base']])} | {_cell(vals['mentor_base'])} |" in section
    assert f"| MENTOR (full) | {_cell([v / 2 for v in vals['mentor']], 1)} | {_cell(vals['mentor'], 1)} |" in section
    assert "no ablation runs of mentor_fg, mentor_f, mentor_g; no 'General feature enhancement" in md
    csv = pd.read_csv(tmp_path / "o" / "csv" / "ablation_alignment.csv").set_index("variant")
    assert csv.loc["mentor_l1", "test_recall@20_mean"] == pytest.approx(statistics.mean(vals["mentor_l1"]))


def test_efficiency_medians_and_device(tmp_path):
    root = tmp_path / "r"
    for seed, (spe, gpu) in enumerate([(1.0, 100.0), (3.0, 300.0), (2.5, 200.0)]):
        _record(root, _summary(variant="mentor", seed=seed, spe=spe, mem=2500.0, gpu=gpu, rss_start=2000.0,
                               device="cuda:0", world_size=2))
    _record(root, _summary(variant="most_pop", epochs=0, spe=0.0, mem=750.0, rss_start=700.0))
    md = _board(root, tmp_path / "o")
    assert "| Dataset | Model | Time (s/epoch) | Peak GPU memory (MB) | Peak RSS increase (MB, CPU) | Device |" in md
    assert "|:---|:---|---:|---:|---:|:---|" in md  # numbers right-aligned, text left
    assert "| synth-a (synthetic) | MostPop | – | – | 50 | cpu |" in md  # no epoch; on CPU: 750 - 700
    assert "|  | MENTOR | 2.50 | 200 | – | cuda:0 (2 workers) |" in md  # on CUDA: torch's GPU peak, never the RSS
    assert "Memory (MB)" not in md
    assert "compare ratios measured in one run" in _table(md, "Efficiency")  # times move with the machine's load
    eff = pd.read_csv(tmp_path / "o" / "csv" / "efficiency.csv").set_index("variant")
    assert eff.loc["mentor", "seconds_per_epoch_median"] == 2.5 and eff.loc["mentor", "runs"] == 3
    assert eff.loc["mentor", "peak_gpu_mb_median"] == 200 and eff.loc["most_pop", "rss_increase_mb_median"] == 50
    assert (eff.loc["mentor", "gpu_runs"], eff.loc["mentor", "cpu_runs"]) == (3, 0)


def test_memory_is_the_runs_own_so_mostpop_is_below_mentor_and_na_without_rss_start(tmp_path):
    """Peak RSS includes the interpreter, libraries and data (~700 MB for every model): MostPop's process
    can peak above MENTOR's. The table shows the increase over the RSS at the run's start instead."""
    root = tmp_path / "r"
    for seed in range(3):  # realistic CPU runs: MostPop's raw peak 782-784 MB, MENTOR's 745-747 MB
        _record(root, _summary("synth-a", "most_pop", seed, epochs=0, spe=0.0, mem=782.0 + seed, rss_start=766.0))
        _record(root, _summary("synth-a", "mentor", seed, mem=745.0 + seed, rss_start=690.0 + seed))
        # an older store: the same runs without rss_start_mb
        _record(root, _summary("synth-b", "most_pop", seed, epochs=0, spe=0.0, mem=782.0 + seed))
        _record(root, _summary("synth-b", "mentor", seed, mem=745.0 + seed))
    md = _board(root, tmp_path / "o")
    eff = pd.read_csv(tmp_path / "o" / "csv" / "efficiency.csv").set_index(["dataset", "variant"])
    pop, mentor = eff.loc[("synth-a", "most_pop"), "rss_increase_mb_median"], eff.loc[("synth-a", "mentor"),
                                                                                      "rss_increase_mb_median"]
    assert (pop, mentor) == (17.0, 55.0) and pop < mentor
    rows = [line for line in _table(md, "Efficiency").splitlines() if line.startswith("| ")]
    assert rows[0] == "| Dataset | Model | Time (s/epoch) | Peak RSS increase (MB, CPU) | Device |"
    assert rows[1:] == ["| synth-a (synthetic) | MostPop | – | 17 | cpu |", "|  | MENTOR | 1.00 | 55 | cpu |",
                        "| synth-b (synthetic) | MostPop | – | n/a | cpu |", "|  | MENTOR | 1.00 | n/a | cpu |"]
    assert "| Peak GPU memory (MB) |" not in md  # no run on CUDA: no GPU column
    assert eff.loc[("synth-b", "mentor"), "cpu_runs"] == 3 and math.isnan(eff.loc[("synth-b", "mentor"),
                                                                                  "rss_increase_mb_median"])
    for raw in ("783", "746"):  # the raw process peaks are shown nowhere
        assert f"| {raw} |" not in md
    assert "Note: medians over the seeds of the chosen runs." in md and "`peak_rss_mb - rss_start_mb`" in md
    assert "n/a: runs stored without `rss_start_mb`" in md


def test_a_gpu_run_stored_before_the_split_memory_columns_shows_its_gpu_peak(tmp_path):
    table = results.rows_from_summary(_summary(variant="mentor", device="cuda:0", gpu=321.0, mem=2000.0), "final",
                                      "old", version="test")
    assert table.column("peak_memory_mb")[0].as_py() == 321.0  # the GPU peak on CUDA, as every version stored it
    pq.write_table(table.drop_columns(["peak_rss_mb", "rss_start_mb", "peak_gpu_mb"]),
                   tmp_path / f"{table.column('run_id')[0]}.parquet")
    md = _board(tmp_path, tmp_path / "o")
    assert "| synth-a (synthetic) | MENTOR | 1.00 | 321 | cuda:0 |" in md and "| Peak RSS increase" not in md


def test_failed_runs_are_counted_in_the_sweep_but_never_in_tables(tmp_path):
    root = tmp_path / "r"
    t0 = 1_700_000_000.0
    search = [dict(dropout=0.3, valid=0.10, started=t0, finished=t0 + 100),
              dict(dropout=0.5, valid=0.12, started=t0 + 10, finished=t0 + 200),
              dict(dropout=0.7, valid=0.15, started=t0 + 20, finished=t0 + 150, stopped=True)]
    for p in search:
        s = _summary(variant="mentor", valid=p["valid"], started=p["started"], stopped=p.get("stopped", False),
                     wall=p["finished"] - p["started"], dropout=p["dropout"], tau=0.3)
        _record(root, s, "search", finished=p["finished"])
    cfg = make_config(flags={"dataset": "synth-a", "variant": "mentor", "seed": 0}, overrides=["dropout=0.1"])
    _record(root, results.failure_summary(cfg.model_dump(), "Traceback\nRuntimeError: CUDA out of memory", True),
            "search", finished=t0 + 300)  # no started_at
    _record(root, _summary(variant="mentor", test=(0.05, 0.06, 0.03, 0.04), started=t0 + 400, dropout=0.7, tau=0.3),
            finished=t0 + 500)
    _record(root, _summary(variant="lightgcn", test=(0.5, 0.5, 0.5, 0.5), status="failed", started=t0 + 400),
            "ablation", finished=t0 + 450)  # failed after some epochs, with metrics: still never in a table
    md = _board(root, tmp_path / "o")
    assert "LightGCN | 0.5000" not in md and "| LightGCN |" not in md.split("## Efficiency")[0]
    sweep = pd.read_csv(tmp_path / "o" / "csv" / "sweep.csv").iloc[0]
    assert (sweep.trials, sweep.completed, sweep.stopped_early, sweep.failed) == (4, 2, 1, 1)
    assert sweep["best_valid_recall@20"] == pytest.approx(0.15) and sweep.best_dropout == 0.7  # the ASHA-stopped one
    assert sweep.search_wall_seconds == pytest.approx(300) and sweep.sweep_wall_seconds == pytest.approx(500)
    assert sweep.search_run_seconds_sum == pytest.approx(100 + 190 + 130)  # the failed one ran 0 s
    assert sweep.sweep_run_seconds_sum == pytest.approx(420)  # the final and the ablation record no wall_seconds
    # the best config names the setting the search varied (dropout), at the best run's value
    # #28: the stopped trial's reason (no --budget: only ASHA stops a recorded trial early)
    assert "| synth-a (synthetic) | smoke | MENTOR | 4 | 2 | 1 (ASHA) | 1 | 0.1500 | dropout=0.7 |" in _table(md, SWEEP)
    assert "| synth-a (synthetic) | smoke | 5m 00s | 7m 00s | 8m 20s | 7m 00s |" in _table(md, TIME)
    assert "synth-a (synthetic): failed runs (1 search, 1 ablation) left out of the metric tables" in md
    assert "first error: RuntimeError: CUDA out of memory" in md


def test_a_baselines_own_search_is_its_own_sweep_row_and_stays_out_of_mentors_plots(tmp_path):
    root = tmp_path / "r"
    for dropout, r20 in [(0.3, 0.10), (0.5, 0.12)]:
        _record(root, _summary(variant="mentor", valid=r20, dropout=dropout), "search")
    for lr, r20 in [(1e-3, 0.09), (5e-3, 0.11)]:
        _record(root, _summary(variant="lightgcn", valid=r20, lr=lr), "search", sweep="lightgcn_grid")
    _board(root, tmp_path / "o")
    sweep = pd.read_csv(tmp_path / "o" / "csv" / "sweep.csv").set_index("space")
    assert sweep.loc["smoke", "model"] == "MENTOR" and sweep.loc["smoke", "best_config"] == "dropout=0.5"
    assert sweep.loc["lightgcn_grid", "model"] == "LightGCN" and sweep.loc["lightgcn_grid", "best_config"] == "lr=0.005"
    assert (sweep.trials == 2).all()
    assert sweep.loc["smoke", "best_dropout"] == 0.5  # MENTOR's searched value; LightGCN has no dropout
    unread = [f"best_{h}" for h in results.HPARAMS if h not in read_keys("lightgcn")]  # MENTOR's axes
    assert unread and sweep.loc[["lightgcn_grid"], unread].isna().all(axis=None)
    assert sweep.loc["lightgcn_grid", "best_lr"] == 0.005
    scored = plots.search_scores(select.load_runs(root), "synth-a")
    assert set(scored.variant) == {"mentor"}


def test_the_best_config_shows_every_searched_axis_even_one_tried_at_one_value(tmp_path):
    """#28: two trials that share lambda_f and tau: the best config still names them (the point can be rebuilt from
    the table); a store without the space (older) names the axes that differ, as before."""
    root = tmp_path / "r"
    axes = {"tau": [0.2, 0.5], "dropout": [0.3, 0.5], "lambda_f": [1.0, 1.5]}
    for dropout, r20 in [(0.3, 0.10), (0.5, 0.12)]:
        s = _summary(variant="mentor", valid=r20, dropout=dropout, lambda_f=1.0, tau=0.5)
        _record(root, {**s, "space_axes": axes}, "search")
        _record(root, _summary(variant="mentor", valid=r20, dropout=dropout, lambda_f=1.0, tau=0.5), "search",
                sweep="old")
    md = _board(root, tmp_path / "o")
    sweep = pd.read_csv(tmp_path / "o" / "csv" / "sweep.csv").set_index("space")
    assert sweep.loc["smoke", "best_config"] == "dropout=0.5, lambda_f=1, tau=0.5"  # the model's key order
    assert sweep.loc["old", "best_config"] == "dropout=0.5"
    assert "| 0.1200 | dropout=0.5, lambda_f=1, tau=0.5 |" in _table(md, SWEEP)


def test_a_later_stage_over_other_axes_stays_out_of_the_first_stages_plots(tmp_path):
    """mentor_lr_reg searches lr at one (dropout, lambda_f) point: its trials are not that cell's."""
    root = tmp_path / "r"
    for dropout, lf, r20 in [(0.3, 1.0, 0.10), (0.5, 1.0, 0.12), (0.3, 1.5, 0.11)]:
        _record(root, _summary(variant="mentor", valid=r20, dropout=dropout, lambda_f=lf), "search")
    for lr, r20 in [(1e-3, 0.13), (5e-3, 0.15)]:
        _record(root, _summary(variant="mentor", valid=r20, dropout=0.5, lambda_f=1.0, lr=lr), "search",
                sweep="mentor_lr_reg")
    runs = select.load_runs(root)
    grid = plots.sensitivity_grid(plots.search_scores(runs, "synth-a", ("dropout", "lambda_f")), "dropout", "lambda_f")
    assert grid.loc[1.0, 0.5] == pytest.approx(0.12)  # the first stage's trial, not the lr stage's 0.15
    assert len(plots.search_scores(runs, "synth-a")) == 5  # without axes: every MENTOR search run
    assert plots.search_scores(runs, "synth-a", ("lambda_align",)).empty  # no sweep varied it


def test_sweep_wall_is_wall_clock_and_the_sum_of_run_times_is_its_own_column(tmp_path):
    root = tmp_path / "r"
    t0 = 1_700_000_000.0
    for dropout, start, end in [(0.3, t0, t0 + 100), (0.5, t0 + 50, t0 + 150)]:  # two trials at once
        _record(root, _summary(variant="mentor", dropout=dropout, started=start, wall=end - start), "search",
                finished=end)
    md = _board(root, tmp_path / "o")
    sweep = pd.read_csv(tmp_path / "o" / "csv" / "sweep.csv").iloc[0]
    assert sweep.search_wall_seconds == pytest.approx(150) and sweep.search_run_seconds_sum == pytest.approx(200)
    assert sweep.search_wall_seconds < sweep.search_run_seconds_sum  # overlapping runs: the wall is not the sum
    assert ("| Dataset | Space | Search wall | Search run time (sum) | Sweep wall | Sweep run time (sum) |\n"
            "|:---|:---|---:|---:|---:|---:|\n"
            "| synth-a (synthetic) | smoke | 2m 30s | 3m 20s | 2m 30s | 3m 20s |") in _table(md, TIME)
    assert ("| Search epochs | Search device time | Budget | Points tried | Coverage | Values tried per axis |"
            in _table(md, SPEND))
    note = _table(md, TIME).split("Note: ")[1].splitlines()[0]
    assert "Search wall: wall-clock time of the search, from its first trial's start (`started_at`)" in note
    assert "Search run time (sum): the trials' own durations (`wall_seconds`) added up" in note
    assert "Note: Configs:" in (tmp_path / "o" / "leaderboard.md").read_text()


def test_without_start_times_the_wall_is_unknown_never_the_sum(tmp_path):
    root = tmp_path / "r"
    for dropout, wall in [(0.3, 30.0), (0.5, 45.5)]:
        _record(root, _summary(variant="mentor", wall=wall, dropout=dropout), "search")
    _record(root, _summary("synth-z", "lightgcn"))  # neither started_at nor wall_seconds: unknown, not 0
    md = _board(root, tmp_path / "o")
    sweep = pd.read_csv(tmp_path / "o" / "csv" / "sweep.csv").set_index("dataset")
    assert math.isnan(sweep.loc["synth-a", "search_wall_seconds"])
    assert sweep.loc["synth-a", "search_run_seconds_sum"] == pytest.approx(75.5)
    assert "| – | 1m 16s | – | 1m 16s |" in md
    assert math.isnan(sweep.loc["synth-z", "sweep_wall_seconds"]) and sweep.loc["synth-z", "trials"] == 0
    assert math.isnan(sweep.loc["synth-z", "sweep_run_seconds_sum"])
    assert "| synth-z (synthetic) | smoke | – | 0 | 0 | 0 | 0 | – | – |" in _table(md, SWEEP)
    assert "| synth-z (synthetic) | smoke | 0 | 0.0s | – | – | – | – |" in _table(md, SPEND)
    assert "| synth-z (synthetic) | smoke | – | – | – | – |" in _table(md, TIME)


def test_run_files_from_before_the_status_columns_count_as_completed(tmp_path):
    table = results.rows_from_summary(_summary(variant="mentor", dropout=0.3), "search", "old", version="test")
    old = ("status", "error", "valid_curve", "wall_seconds", "device", "world_size", "started_at")
    pq.write_table(table.drop_columns(list(old)), tmp_path / f"{table.column('run_id')[0]}.parquet")
    _board(tmp_path, tmp_path / "o")
    sweep = pd.read_csv(tmp_path / "o" / "csv" / "sweep.csv").iloc[0]
    assert (sweep.trials, sweep.completed, sweep.failed, sweep["best_valid_recall@20"]) == (1, 1, 0, 0.1)
    assert math.isnan(sweep.search_wall_seconds) and math.isnan(sweep.search_run_seconds_sum)


# --------------------------------------------------------------------------- plots and formats


def _search_grid(root, dataset="synth-a"):
    points = [(0.3, 1.0, 0.1, 1e-3, 0.1, 0.10), (0.3, 1.0, 0.2, 1e-4, 0.2, 0.14),  # same (p, lambda_f) cell
              (0.5, 1.5, 0.2, 1e-3, 0.1, 0.12), (0.5, 1.0, 0.1, 1e-4, 0.2, 0.11)]
    for p, lf, tau, lg, la, valid in points:
        s = _summary(dataset, "mentor", valid=valid, dropout=p, lambda_f=lf, tau=tau, lambda_g=lg, lambda_align=la)
        _record(root, s, "search")


def test_every_format_is_written_and_parseable_with_plots_and_skip_notes(tmp_path):
    root, out = tmp_path / "r", tmp_path / "o"
    _table2_store(root)
    _search_grid(root)
    _record(root, _summary("synth-c", "mentor"), "search")  # one trial: no sensitivity plot possible
    _record(root, _summary("synth-c", "mentor", test=(0.01, 0.02, 0.01, 0.01)))  # a final run without a curve
    md = lb.write_leaderboard(root, out)
    assert (out / "leaderboard.md").read_text() == md
    stems = ["sens_dropout_lambda_f", "sens_tau_lambda_g", "lambda_align", "valid_curves"]
    for stem in stems:
        png = out / "plots" / f"synth-a-{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"](plots/synth-a-{stem}.png)" in md
        assert not (out / "plots" / f"synth-c-{stem}.png").exists()
    assert ("plot 'synth-c (synthetic): sensitivity to (dropout, lambda_f)' skipped: no MENTOR search with a "
            "validation Recall@20 varied dropout and lambda_f") in md
    assert "plot 'synth-c (synthetic): validation curves of the final runs' skipped: no final run with a recorded" in md

    csvs = {p.stem: pd.read_csv(p) for p in (out / "csv").glob("*.csv")}
    assert set(csvs) == {"overall", "improvement", "versus", "sparsity", "ablation_alignment", "ablation_features",
                         "efficiency", "sweep"}
    assert set(csvs["overall"].dataset) == {"synth-a", "synth-c"} and len(csvs["sweep"]) == 2
    assert pd.api.types.is_float_dtype(csvs["overall"]["test_recall@20_mean"])

    page = (out / "leaderboard.html").read_text()
    tables = lb.build_board(select.load_runs(root), str(root)).tables  # a wide table is split into parts
    assert page.count("<table") == sum(len(render.parts(t, render.HTML_CHARS, fmt="html")) for t in tables)
    assert '<table id="T_overall">' in page and 'colspan="4">synth-a (synthetic)</th>' in page
    assert "<b>0.0520</b><sup>*</sup> ± 0.0020" in page and "<u>0.0410</u>" in page
    for stem in stems:
        assert f'<img src="plots/synth-a-{stem}.png"' in page
    assert "skipped: no MENTOR search with a validation Recall@20 varied dropout" in page

    tex = (out / "leaderboard.tex").read_text()
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == sum(
        len(render.parts(t, render.TEX_CHARS, render.TEX_COLUMNS)) for t in tables)
    assert r"\toprule" in tex and r"\multicolumn{4}{c}{synth-a (synthetic)}" in tex
    assert r"\textbf{0.0520}$^{*}$ $\pm$ 0.0020" in tex and r"\underline{0.0410}" in tex
    assert r"\label{tab:overall}" in tex and r"\label{tab:overall-2}" in tex  # one dataset a part, here
    assert tex.count("\\cmidrule(lr){2-5}\n") == 2
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary file left behind


def test_tex_escapes_underscores_and_percent():
    table = board.Table.of("x", "a_b 5%", [board.Column("Model"), board.Column("R@10", "percent", 2)],
                           [["MENTOR_fg", 5.0], ["MostPop", None]])
    tex = render.table_tex(table)
    assert r"\caption{a\_b 5\%}" in tex and r"MENTOR\_fg & 5.00\% \\" in tex and r"MostPop & -- \\" in tex
    assert r"\begin{tabular}{lr}" in tex


def test_every_variant_has_a_display_name():
    assert set(select.DISPLAY) == set(VARIANTS)
    assert list(select.DISPLAY)[:3] == ["most_pop", "mf_bpr", "lightgcn"] and list(select.DISPLAY)[-1] == "mentor"


# --------------------------------------------------------------------------- command line


def test_cli_prints_plain_text_and_writes_the_markdown(tmp_path, capsys):
    _table2_store(tmp_path / "r")
    argv = ["--results", str(tmp_path / "r"), "--out", str(tmp_path / "o"), "--format", "md"]
    assert run(leaderboard_cmd.main, argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("# MENTOR leaderboard")
    for markup in ("<u>", "</", "<b>", "**", "\\*", "\\|", "|---"):  # nothing a terminal would show raw
        assert markup not in out, markup
    assert "0.0520* ± 0.0020 (1)" in out and "(1) best, (2) second in its column" in out
    assert "_0.0410_" in (tmp_path / "o" / "leaderboard.md").read_text()
    assert [p.name for p in (tmp_path / "o").iterdir() if p.is_file()] == ["leaderboard.md"]


@pytest.mark.parametrize("case", ["missing", "empty", "format"])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    results_dir = tmp_path / ("nowhere" if case == "missing" else "r")
    if case != "missing":
        results_dir.mkdir()
    if case == "format":
        results.write_run(results_dir, results.rows_from_summary(_summary(), "final", "s", version="test"))
    fmt = "md,pdf" if case == "format" else "md"
    argv = ["--results", str(results_dir), "--out", str(tmp_path / "o"), "--format", fmt]
    assert run(leaderboard_cmd.main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    expected = {"missing": f"--results {results_dir}: no such directory",
                "empty": f"--results {results_dir}: no results in this directory",
                "format": "--format md,pdf: unknown format 'pdf'; allowed: md, csv, tex, html"}[case]
    assert expected in err
    assert not (tmp_path / "o").exists()


def test_parse_formats():
    assert lb.parse_formats("md, CSV,md") == ("md", "csv")
    with pytest.raises(MentorRayError, match="no format given"):
        lb.parse_formats(",")


def test_the_sweep_table_reports_spend_budget_and_coverage(tmp_path):
    """Three trials of a 2 x 3 = 6-point space, one of them a DDP run of 2 workers: 3 of 6 points, dropout
    2 of 2 values and tau 2 of 3, 5 + 5 + 3 = 13 epochs, and device time 100 + 100 + 2 x 50 s."""
    root = tmp_path / "r"
    axes = {"dropout": [0.3, 0.5], "tau": [0.2, 0.5, 0.8]}
    for dropout, tau, epochs, wall, workers in [(0.3, 0.2, 5, 100.0, 1), (0.5, 0.2, 5, 100.0, 1),
                                                 (0.5, 0.5, 3, 50.0, 2)]:
        summary = _summary(dropout=dropout, tau=tau, epochs=epochs, wall=wall, world_size=workers)
        _record(root, {**summary, "space_axes": axes, "budget_epochs": 13}, "search")
    md = _board(root, tmp_path / "o")
    sweep = pd.read_csv(tmp_path / "o" / "csv" / "sweep.csv").iloc[0]
    assert (sweep.search_epochs, sweep.budget_epochs, sweep.points, sweep.grid_size) == (13, 13, 3, 6)
    assert sweep.search_device_seconds == pytest.approx(300.0)
    assert sweep.axis_coverage == "dropout 2/2; tau 2/3"
    assert "| synth-a (synthetic) | smoke | 13 | 5m 00s | 13 epochs | 3 / 6 | 50.0% | dropout 2/2; tau 2/3 |" in md
    assert "Coverage: distinct points of the space tried, against its grid size" in md


# --------------------------------------------------------------------------- paired tests over users


def _users_store(root, mentor_hits, base_hits, n_users=200, seeds=3, mentor_r20=(0.40, 0.401, 0.402)):
    """MENTOR and LightGCN over ``seeds`` seeds, each run keeping per-user hits (1 for the users listed)."""
    for variant, hits, r20 in (("mentor", mentor_hits, mentor_r20), ("lightgcn", base_hits, (0.30,) * seeds)):
        for seed in range(seeds):
            s = _summary(variant=variant, seed=seed, test=(0.01, r20[seed], 0.01, 0.01))
            values = [1.0 if u in hits[seed] else 0.0 for u in range(n_users)]
            s["test_users"] = {"user": list(range(n_users)), "recall@20": values, "recall@10": values,
                               "ndcg@10": values, "ndcg@20": values}
            _record(root, s)


def test_paired_tests_over_users_against_an_independent_computation(tmp_path):
    # LightGCN hits users 0-59 in every seed; MENTOR hits 0-79 in every seed: 20 users gained, none lost
    mentor, base = [set(range(80))] * 3, [set(range(60))] * 3
    _users_store(tmp_path / "r", mentor, base)
    md = _board(tmp_path / "r", tmp_path / "o")
    imp = pd.read_csv(tmp_path / "o" / "csv" / "improvement.csv").set_index("column").loc["test_recall@20"]
    assert imp.users == 200 and imp.user_seeds == "3/3"
    assert imp.user_diff == pytest.approx(20 / 200)
    # every non-zero difference is +1: Wilcoxon's tie-corrected z is the sign test's (20 - 10) / sqrt(20 / 4)
    assert imp.wilcoxon_p == pytest.approx(math.erfc((10 / math.sqrt(5)) / math.sqrt(2)), rel=1e-9)
    # the bootstrap mean of 200 users with 20 ones: binomial-like, the interval about 0.1 ± 1.96 * 0.0212
    se = math.sqrt(0.1 * 0.9 / 200)
    assert imp.user_ci_low == pytest.approx(0.1 - 1.96 * se, abs=0.012) and imp.user_ci_low > 0
    assert imp.user_ci_high == pytest.approx(0.1 + 1.96 * se, abs=0.012)
    assert bool(imp.significant)  # the t-test over seeds agrees
    assert "MENTOR against the best baseline: paired tests over users and seeds" in md
    row = next(line for line in md.splitlines() if line.startswith("| synth-a (synthetic) | R@20 |"))
    assert f"[{imp.user_ci_low:+.4f}, {imp.user_ci_high:+.4f}]" in row and "200 (3/3)" in row


def test_mentor_is_tested_against_every_baseline_not_only_the_best(tmp_path):
    # LightGCN hits users 0-59, FREEDOM 0-69, MENTOR 0-79: each comparison has its own difference and tests
    root = tmp_path / "r"
    _users_store(root, [set(range(80))] * 3, [set(range(60))] * 3)
    for seed in range(3):
        s = _summary(variant="freedom", seed=seed, test=(0.01, 0.35, 0.01, 0.01))
        values = [1.0 if u < 70 else 0.0 for u in range(200)]
        s["test_users"] = {"user": list(range(200)), **{m: values for m in COLS}}
        _record(root, s)
    md = _board(root, tmp_path / "o")
    versus = pd.read_csv(tmp_path / "o" / "csv" / "versus.csv")
    r20 = versus[versus.column == "test_recall@20"].set_index("best_baseline")
    assert list(r20.index) == ["lightgcn", "freedom"]  # the paper's row order: general, then multimodal
    assert r20.loc["lightgcn", "user_diff"] == pytest.approx(20 / 200)
    assert r20.loc["freedom", "user_diff"] == pytest.approx(10 / 200)
    improv = pd.read_csv(tmp_path / "o" / "csv" / "improvement.csv").set_index("column").loc["test_recall@20"]
    assert improv.best_baseline == "freedom"  # the best baseline's table is the FREEDOM row of this one
    assert "MENTOR against each baseline: paired tests over users and seeds" in md


def test_no_star_when_the_users_do_not_agree_with_the_seeds(tmp_path):
    # the seeds say MENTOR is ahead (t-test), but per user it gains 3 and loses 1 of 200: the interval holds 0
    mentor, base = [set(range(63)) - {0}] * 3, [set(range(60))] * 3
    _users_store(tmp_path / "r", mentor, base)
    md = _board(tmp_path / "r", tmp_path / "o")
    imp = pd.read_csv(tmp_path / "o" / "csv" / "improvement.csv").set_index("column").loc["test_recall@20"]
    assert imp.p_value < 0.05 and imp.user_ci_low < 0 < imp.user_ci_high
    assert not imp.significant
    assert "\\*" not in _row(md, "MENTOR")


def test_per_user_values_of_different_seeds_are_averaged_over_shared_users(tmp_path):
    from mentor_ray.report import leaderboard as lbm

    root = tmp_path / "r"
    for seed, (users, vals) in enumerate([([0, 1, 2], [1.0, 0.0, 1.0]), ([1, 2, 3], [1.0, 0.0, 1.0])]):
        s = _summary(variant="mentor", seed=seed)
        s["test_users"] = {"user": users, **{m: vals for m in COLS}}
        _record(root, s)
    chosen = select.select_final(select.load_runs(root))
    ids, values, seeds = lbm.user_values(chosen, "synth-a", "mentor", "test_recall@20")
    assert ids.tolist() == [1, 2] and values.tolist() == [0.5, 0.5] and seeds == 2
    assert lbm.user_values(chosen, "synth-a", "lightgcn", "test_recall@20") is None


# --------------------------------------------------------------------------- stores with holes


def _sweep_line(md, space):
    return next(line for line in md.splitlines() if line.startswith("| synth-a (synthetic) | " + space + " |"))


def test_a_sweep_without_a_search_beside_one_with_renders_empty_cells(tmp_path):
    """`tune --space smoke` then `tune --space paper_best` into one store: paper_best searches nothing, so its
    sweep row has no coverage; in the frame that None sits beside smoke's text and pandas makes it NaN, which
    used to reach the renderer as a float ('float' object has no attribute 'mean')."""
    root = tmp_path / "r"
    axes = {"dropout": [0.3, 0.5], "tau": [0.2, 0.5]}
    for dropout, tau in [(0.3, 0.2), (0.5, 0.5)]:
        _record(root, {**_summary(dropout=dropout, tau=tau), "space_axes": axes}, "search", sweep="smoke")
    _record(root, _summary(dropout=0.5, tau=0.5), sweep="smoke")
    _record(root, _summary(seed=1), sweep="paper_best")
    md = _board(root, tmp_path / "o", ("md", "csv", "tex", "html"))
    sweep, spend = _table(md, SWEEP), _table(md, SPEND)
    assert _sweep_line(sweep, "paper_best") == "| synth-a (synthetic) | paper_best | – | 0 | 0 | 0 | 0 | – | – |"
    assert _sweep_line(spend, "paper_best") == "| synth-a (synthetic) | paper_best | 0 | 0.0s | – | – | – | – |"
    assert _sweep_line(sweep, "smoke") == ("| synth-a (synthetic) | smoke | MENTOR | 2 | 2 | 0 | 0 | 0.1000 | "
                                           "dropout=0.3, tau=0.2 |")
    assert _sweep_line(spend, "smoke") == ("| synth-a (synthetic) | smoke | 10 | 0.0s | – | 2 / 4 | 50.0% | "
                                           "dropout 2/2; tau 2/2 |")
    for name in ("leaderboard.md", "leaderboard.tex", "leaderboard.html"):
        assert not re.search(r"\bnan\b", (tmp_path / "o" / name).read_text(), re.I), name


def test_an_unreadable_space_axes_or_config_blanks_its_cells_and_says_so(tmp_path, caplog):
    """Run files whose JSON columns do not parse (hand-edited, foreign): the store may skip them when it reads
    them; the tables built from such rows all the same leave those cells blank instead of stopping."""
    axes = {"dropout": [0.3, 0.5]}
    tables = [results.rows_from_summary({**_summary(dropout=0.3), "space_axes": axes}, "search", "smoke",
                                        version="test")]
    for column, text, dropout in [("space_axes", "{not json", 0.5), ("config_json", "[1, 2", 0.7)]:
        table = results.rows_from_summary({**_summary(dropout=dropout), "space_axes": axes}, "search", "smoke",
                                          version="test")
        i = table.schema.get_field_index(column)
        tables.append(table.set_column(i, table.schema.field(i), pa.array([text] * table.num_rows)))
    for table in tables:
        results.write_run(tmp_path / "r", table)
    _board(tmp_path / "r", tmp_path / "o")  # read from the store: no crash, whatever the store keeps

    rows = select.runs_frame(pa.concat_tables(tables).to_pandas())
    with caplog.at_level("WARNING"):
        sweep = lb.build_board(rows, "store").frames["sweep"].iloc[0]
    assert (sweep.trials, sweep.completed) == (3, 3)
    # the space from the run that has it; points from the two configs that parse
    assert (sweep.points, sweep.grid_size, sweep.axis_coverage) == (2, 2, "dropout 2/2")
    assert "sweep smoke has 1 run(s) with an unreadable space_axes (first: '{not json'); coverage from the others" \
        in caplog.text
    assert select.searched_keys(rows) == ["dropout"]

    rows = select.runs_frame(pa.concat_tables(tables[1:2]).to_pandas())  # no run says what the space was
    sweep = lb.build_board(rows, "store").frames["sweep"].iloc[0]
    assert lb.missing(sweep.points) and lb.missing(sweep.axis_coverage) and sweep.trials == 1


def test_nan_metric_values_render_as_empty_cells_never_as_nan(tmp_path):
    nan = float("nan")
    root = tmp_path / "r"
    _record(root, _summary(variant="mentor", test=(nan, nan, nan, nan)))  # a run whose test rows hold NaN
    _record(root, _summary(variant="lightgcn", valid=nan))  # never chosen: no validation value
    _record(root, _summary(variant="mf_bpr", test=(0.01, 0.03, 0.01, 0.01), spe=nan))
    out = tmp_path / "o"
    md = _board(root, out, ("md", "csv", "tex", "html"))
    assert _row(md, "MENTOR") == "| MENTOR | – | – | – | – |"
    assert _row(md, "MF-BPR") == "| MF-BPR | **0.0100** | **0.0300** | **0.0100** | **0.0100** |"
    assert "| LightGCN |" not in md
    for name in ("leaderboard.md", "leaderboard.tex", "leaderboard.html"):
        assert not re.search(r"\bnan\b", (out / name).read_text(), re.I), name


def test_a_missing_value_renders_as_the_dash_whatever_its_type():
    nan = float("nan")
    metric, number, text = board.Column("m", "metric", 4), board.Column("n", "number", 2), board.Column("t")
    for cell in (None, nan, pd.NA, board.Cell(None), board.Cell(nan), board.Cell(nan, nan)):
        for col in (metric, number, text):
            assert render.format_cell(cell, col, "md") == "–" and render.format_cell(cell, col, "tex") == "--"
    assert render.format_cell(float("inf"), number, "md") == "–"
    assert render.format_cell(board.Cell(0.5, nan), metric, "md") == "0.5000"  # one seed: no ±
    assert render.format_cell("", text, "md") == "" and render.format_cell(3, text, "md") == "3"
    assert render.format_cell(2, board.Column("p", "percent", 1), "md") == "2.0%"
    assert board.metric_cell(nan) == board.Cell(None) and board.metric_cell(0.5, nan) == board.Cell(0.5)
    assert lb.marks([nan, 0.2, None, 0.1, 0.2]) == [0, 1, 0, 2, 1]


def test_the_run_count_counts_the_finals_recorded_as_the_ablations_mentor_once():
    """The plan, the progress lines and the leaderboard's header agree: the ablation's MENTOR row is the final
    runs recorded again (same settings, seed and start), not runs of their own."""
    import pandas as pd

    from mentor_ray.report.leaderboard import _intro, recorded_again

    row = {"dataset": "d", "variant": "mentor", "config_hash": "h", "code_version": "0.4.0"}
    runs = pd.DataFrame([{**row, "role": "search", "seed": 0, "started_at": "t0"},
                         {**row, "role": "final", "seed": 0, "started_at": "t1"},
                         {**row, "role": "final", "seed": 1, "started_at": "t2"},
                         {**row, "role": "ablation", "seed": 0, "started_at": "t1"},  # final seed 0 again
                         {**row, "role": "ablation", "seed": 1, "started_at": "t2"},
                         {**row, "role": "ablation", "seed": 0, "started_at": "t9", "variant": "mentor_fg"},
                         {**row, "role": "ablation", "seed": 2, "started_at": "t1"}])  # another seed: its own run
    assert recorded_again(runs).tolist() == [False, False, False, True, True, False, False]
    intro = _intro(runs, "store")[0]
    assert intro.startswith("Results: `store`: 5 runs (2 final, 2 ablation, 1 search; the 2 final runs of MENTOR")
