"""Paper-style leaderboard of a results store: Table 2, the ablations, Table 3, sweep summaries, plots.

:func:`write_leaderboard` reads the Parquet results store of a sweep (:mod:`mentor_ray.report.results`),
writes ``leaderboard.md``, ``.tex`` and ``.html``, ``csv/`` and ``plots/`` under a folder and returns the
Markdown; the sweep calls it at its end. :func:`build_board` and the ``*_frame`` functions are the same
tables as data. What each table holds and how runs are chosen: ``docs/architecture.md`` (*Leaderboard*).
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

from mentor_ray.common.config import BASELINES, result_settings
from mentor_ray.common.errors import MentorRayError
from mentor_ray.common.io import write_atomic
from mentor_ray.common.names import KS, METRIC_KINDS, VALID_METRIC
from mentor_ray.report.results import HPARAMS, ROLES, SCHEMA, read_results, selection_key

log = logging.getLogger("mentor_ray.leaderboard")

FORMATS = ("md", "csv", "tex", "html")
DISPLAY = {  # table row order: baselines, then MENTOR's variants, then MENTOR
    "most_pop": "MostPop", "mf_bpr": "MF-BPR", "lightgcn": "LightGCN",
    "mentor_fg": "MENTOR_fg", "mentor_f": "MENTOR_f", "mentor_g": "MENTOR_g",
    "mentor_base": "MENTOR_base", "mentor_l1": "MENTOR_L1", "mentor_l2": "MENTOR_L2", "mentor": "MENTOR",
}
COLUMNS = {"test_recall@10": "R@10", "test_recall@20": "R@20", "test_ndcg@10": "N@10", "test_ndcg@20": "N@20"}
VALID = f"valid_{VALID_METRIC}"
ABLATIONS = {  # csv name: (title, rows); "mentor" is the full model
    "ablation_alignment": ("Multilevel cross-modal alignment (Fig. 3)",
                           ("mentor_base", "mentor_l1", "mentor_l2", "mentor")),
    "ablation_features": ("General feature enhancement (Table 2 variants)",
                          ("mentor_fg", "mentor_f", "mentor_g", "mentor")),
}
SENSITIVITY = (("dropout", "lambda_f"), ("tau", "lambda_g"))  # (x, y) of Fig. 7's heatmaps
AXIS_LABELS = {"dropout": "dropout p", "lambda_f": r"$\lambda_f$", "lambda_g": r"$\lambda_g$", "tau": r"$\tau$",
               "lambda_align": r"$\lambda_{align}$"}
DIGITS = 4
ALPHA = 0.05
DASH = "–"
RUN_COLUMNS = [c for c in SCHEMA.names if c not in ("split", "metric", "k", "value")]
METRIC_COLUMNS = [f"{s}_{m}@{k}" for s in ("valid", "test") for m in METRIC_KINDS for k in KS]
SECTIONS = ("Overall performance (Table 2)", "Ablations", "Efficiency (Table 3)", "Sweeps")


@dataclasses.dataclass(frozen=True)
class Cell:
    """A metric cell: mean (None: no runs), sample std (None: one seed), mark 1 best / 2 second, star."""

    mean: float | None
    std: float | None = None
    mark: int = 0
    star: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    section: str
    key: str  # the CSV's name and the TeX label
    title: str
    header: list[str]
    rows: list[list[str | Cell]]
    groups: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # spans over the last columns


@dataclasses.dataclass(frozen=True)
class Plot:
    path: str  # relative to --out
    title: str


@dataclasses.dataclass
class Board:
    intro: list[str]
    tables: list[Table]
    frames: dict[str, pd.DataFrame]  # csv name -> machine-readable table
    notes: list[str]
    plots: list[Plot] = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------- reading and choosing runs


def load_runs(results_dir: str | Path) -> pd.DataFrame:
    """One row per run of the store: its run columns and one column per ``split_metric@K``."""
    path = Path(results_dir)
    if not path.is_dir():
        raise MentorRayError(f"--results {path}: no such directory; give the --results directory of a sweep")
    table = read_results(path)
    if table.num_rows == 0:
        raise MentorRayError(f"--results {path}: no results in this directory (no *.parquet run files)")
    return runs_frame(table.to_pandas())


def runs_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Long rows (one per run x split x metric x K) to one row per run; NaN where a run has no metric."""
    runs = rows.drop_duplicates("run_id")[RUN_COLUMNS].set_index("run_id")
    runs["status"] = runs["status"].fillna("completed")  # files from before `status`: only finished runs
    scored = rows.dropna(subset=["value"])
    keys = scored["split"] + "_" + scored["metric"] + "@" + scored["k"].astype(int).astype(str)
    wide = scored.assign(key=keys).pivot(index="run_id", columns="key", values="value")
    return runs.join(wide.reindex(columns=METRIC_COLUMNS)).reset_index()


def select_final(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs behind the metric tables (see the module docstring); never looks at test values."""
    ok = runs[runs["role"].isin(["final", "ablation"]) & (runs["status"] != "failed") & runs[VALID].notna()]
    ok = ok.assign(_later=ok["role"] != "final").sort_values(["_later", "run_id"])
    ok = ok.drop_duplicates(["dataset", "variant", "config_hash", "seed"]).drop(columns="_later")
    score = ok.groupby(["dataset", "variant", "config_hash"], as_index=False)[VALID].mean()
    best = score.sort_values([VALID, "config_hash"], ascending=[False, True]).drop_duplicates(["dataset", "variant"])
    return ok.merge(best[["dataset", "variant", "config_hash"]], on=["dataset", "variant", "config_hash"])


def display(variant: str) -> str:
    return DISPLAY.get(variant, variant)


def variant_order(variants: Iterable[str]) -> list[str]:
    present = set(variants)
    return [v for v in DISPLAY if v in present] + sorted(present - set(DISPLAY))


def dataset_order(runs: pd.DataFrame) -> list[str]:
    """Real datasets first, then synthetic ones; by name within each."""
    synthetic = runs.groupby("dataset")["synthetic"].any()
    return sorted(synthetic.index, key=lambda d: (bool(synthetic[d]), d))


def dataset_label(dataset: str, synthetic: bool) -> str:
    return f"{dataset} (synthetic)" if synthetic else dataset


def _labels(runs: pd.DataFrame) -> dict[str, str]:
    synthetic = runs.groupby("dataset")["synthetic"].any()
    return {d: dataset_label(d, bool(s)) for d, s in synthetic.items()}


# --------------------------------------------------------------------------- statistics


def metric_frame(chosen: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x variant present anywhere (``seeds`` 0 where none ran): mean and sample std
    (NaN with one seed) over seeds of the test columns and of validation Recall@20."""
    rows = [_metric_row(chosen, d, v) for d in dataset_order(chosen) for v in variant_order(chosen["variant"])]
    stats = [f"{key}_{s}" for key in (*COLUMNS, VALID) for s in ("mean", "std")]
    return pd.DataFrame(rows, columns=["dataset", "synthetic", "variant", "model", "config_hash", "seeds", *stats])


def _metric_row(chosen: pd.DataFrame, dataset: str, variant: str) -> dict:
    g = chosen[(chosen["dataset"] == dataset) & (chosen["variant"] == variant)]
    row = {"dataset": dataset, "synthetic": bool(chosen.loc[chosen["dataset"] == dataset, "synthetic"].any()),
           "variant": variant, "model": display(variant), "seeds": len(g),
           "config_hash": g["config_hash"].iloc[0] if len(g) else None}
    for key in (*COLUMNS, VALID):
        row[f"{key}_mean"] = float(g[key].mean()) if len(g) else math.nan
        row[f"{key}_std"] = float(g[key].std(ddof=1)) if len(g) > 1 else math.nan
    return row


def seed_values(chosen: pd.DataFrame, dataset: str, variant: str, key: str) -> dict[int, float]:
    g = chosen[(chosen["dataset"] == dataset) & (chosen["variant"] == variant)]
    return dict(zip(g["seed"].astype(int), g[key].astype(float)))


def paired_t(a: dict[int, float], b: dict[int, float]) -> tuple[int, float, float]:
    """(pairs, t, two-sided p) of a paired t-test of a against b over their common seeds; t and p are
    NaN with fewer than 2 pairs, or when every difference is the same."""
    from scipy.stats import ttest_rel

    seeds = sorted(a.keys() & b.keys())
    if len(seeds) < 2:
        return len(seeds), math.nan, math.nan
    with warnings.catch_warnings():  # identical pairs: scipy warns and answers NaN, which is our answer too
        warnings.simplefilter("ignore")
        res = ttest_rel([a[s] for s in seeds], [b[s] for s in seeds])
    return len(seeds), float(res.statistic), float(res.pvalue)


def improvement_frame(chosen: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per dataset having MENTOR and a baseline, per test column: MENTOR against the best baseline."""
    rows = []
    for dataset in metrics["dataset"].unique():
        m = metrics[(metrics["dataset"] == dataset) & (metrics["seeds"] > 0)]
        base = m[m["variant"].isin(BASELINES)]
        if base.empty or "mentor" not in set(m["variant"]):
            continue
        mentor = m[m["variant"] == "mentor"].iloc[0]
        for key in COLUMNS:
            rows.append(_compare(chosen, key, mentor, base.loc[base[f"{key}_mean"].idxmax()]))
    return pd.DataFrame(rows, columns=["dataset", "column", "label", "best_baseline", "baseline_mean", "mentor_mean",
                                       "improvement_pct", "pairs", "t", "p_value", "significant"])


def _compare(chosen: pd.DataFrame, key: str, mentor: pd.Series, best: pd.Series) -> dict:
    b, m = best[f"{key}_mean"], mentor[f"{key}_mean"]
    dataset = mentor["dataset"]
    pairs, t, p = paired_t(seed_values(chosen, dataset, "mentor", key),
                           seed_values(chosen, dataset, best["variant"], key))
    return {"dataset": dataset, "column": key, "label": COLUMNS[key], "best_baseline": best["variant"],
            "baseline_mean": b, "mentor_mean": m, "improvement_pct": (m - b) / b * 100 if b > 0 else math.nan,
            "pairs": pairs, "t": t, "p_value": p, "significant": bool(p < ALPHA and m > b)}


def efficiency_frame(chosen: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and variant: medians over seeds of seconds per epoch, peak memory and epochs run."""
    agg = chosen.groupby(["dataset", "variant"], sort=False).agg(
        runs=("run_id", "size"), seconds_per_epoch_median=("seconds_per_epoch", "median"),
        peak_memory_mb_median=("peak_memory_mb", "median"), epochs_run_median=("epochs_run", "median"),
        device=("device", lambda s: ", ".join(sorted(set(s.dropna().astype(str))))),
        world_size=("world_size", "max")).reset_index()
    rank = {d: i for i, d in enumerate(dataset_order(chosen))}
    vrank = {v: i for i, v in enumerate(variant_order(chosen["variant"]))}
    agg = agg.assign(_d=agg["dataset"].map(rank), _v=agg["variant"].map(vrank)).sort_values(["_d", "_v"])
    return agg.drop(columns=["_d", "_v"]).assign(model=lambda f: f["variant"].map(display)).reset_index(drop=True)


def wall_time(runs: pd.DataFrame) -> tuple[float, str]:
    """Seconds from the first ``started_at`` to the last ``finished_at`` ("span"); the sum of the runs'
    ``wall_seconds`` ("sum") when no run has a ``started_at``; (NaN, "") when neither is known."""
    if runs.empty:
        return math.nan, ""
    started, total = runs["started_at"].dropna(), float(runs["wall_seconds"].fillna(0.0).sum())
    if started.empty:
        return (total, "sum") if total > 0 else (math.nan, "")
    return float((runs["finished_at"].max() - started.min()).total_seconds()), "span"


def sweep_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and sweep (search space): the search's trials by status, its best point on validation
    (the values of the keys the search varied), and wall times."""
    rows = [_sweep_row(group) for d in dataset_order(runs)
            for _, group in runs[runs["dataset"] == d].groupby("sweep", dropna=False, sort=True)]
    best = [f"best_{h}" for h in HPARAMS]
    return pd.DataFrame(rows, columns=["dataset", "synthetic", "space", "model", "trials", "completed",
                                       "stopped_early", "failed", "best_run_id", "best_valid_recall@20",
                                       "best_config", *best, "search_wall_seconds", "search_wall_basis",
                                       "sweep_wall_seconds", "sweep_wall_basis"])


def searched_keys(search: pd.DataFrame) -> list[str]:
    """The settings that differ between a search's runs (the axes it explored), in config order."""
    configs = [json.loads(c) for c in search["config_json"].dropna()]
    if not configs:
        return []
    keys = result_settings(configs[0])
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]


def _search_best(scored: pd.DataFrame):
    """Index of the search's best run by the sweep's own rule (:func:`mentor_ray.report.results.selection_key`)."""
    return max(scored.index, key=lambda i: selection_key(scored.at[i, VALID], scored.at[i, "valid_ndcg@20"],
                                                         scored.at[i, "best_epoch"], scored.at[i, "config_hash"]))


def _sweep_row(sweep_runs: pd.DataFrame) -> dict:
    search = sweep_runs[sweep_runs["role"] == "search"]
    status = search["status"].value_counts()
    scored = search[(search["status"] != "failed") & search[VALID].notna()]
    best = scored.loc[[_search_best(scored)]] if len(scored) else scored
    (s_wall, s_basis), (t_wall, t_basis) = wall_time(search), wall_time(sweep_runs)
    pick = (lambda c: best[c].iloc[0]) if len(best) else (lambda c: None)
    keys = searched_keys(scored) or (list(HPARAMS) if set(scored["variant"]) == {"mentor"} else [])
    config = json.loads(pick("config_json")) if len(best) else {}
    return {"dataset": sweep_runs["dataset"].iloc[0], "synthetic": bool(sweep_runs["synthetic"].any()),
            "space": ", ".join(sorted(set(sweep_runs["sweep"].dropna()))),
            "model": ", ".join(display(v) for v in variant_order(search["variant"].unique())),
            "trials": int(search["run_id"].nunique()), **{s: int(status.get(s, 0)) for s in
                                                           ("completed", "stopped_early", "failed")},
            "best_run_id": pick("run_id"), "best_valid_recall@20": pick(VALID),
            "best_config": ", ".join(f"{k}={_fmt(config[k])}" for k in keys if k in config) or None,
            **{f"best_{h}": pick(h) for h in HPARAMS}, "search_wall_seconds": s_wall, "search_wall_basis": s_basis,
            "sweep_wall_seconds": t_wall, "sweep_wall_basis": t_basis}


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------- tables


def marks(means: Sequence[float | None]) -> list[int]:
    """1 for the best value, 2 for the next distinct one, 0 otherwise; compared at the shown decimals."""
    shown = [None if m is None else round(m, DIGITS) for m in means]
    top = sorted({s for s in shown if s is not None}, reverse=True)[:2]
    return [top.index(s) + 1 if s is not None and s in top else 0 for s in shown]


def _marked(cells: list[Cell]) -> list[Cell]:
    return [dataclasses.replace(c, mark=k) for c, k in zip(cells, marks([c.mean for c in cells]))]


def _stat_cell(row: pd.Series | None, key: str, star: bool = False) -> Cell:
    if row is None or row["seeds"] == 0:
        return Cell(None)
    std = row[f"{key}_std"]
    return Cell(float(row[f"{key}_mean"]), None if math.isnan(std) else float(std), star=star)


def overall_table(metrics: pd.DataFrame, improv: pd.DataFrame, labels: dict[str, str]) -> Table:
    """Table 2: a row per model, test columns per dataset, marks per column, then Improv. if any."""
    datasets = list(dict.fromkeys(metrics["dataset"]))
    variants = variant_order(metrics.loc[metrics["seeds"] > 0, "variant"])
    rows = {(r["dataset"], r["variant"]): r for _, r in metrics.iterrows()}
    stars = {(r.dataset, r.column) for r in improv.itertuples() if r.significant}
    columns = [_marked([_stat_cell(rows.get((d, v)), key, v == "mentor" and (d, key) in stars) for v in variants])
               for d in datasets for key in COLUMNS]
    body: list[list[str | Cell]] = [[display(v), *(c[i] for c in columns)] for i, v in enumerate(variants)]
    if not improv.empty:
        pct = {(r.dataset, r.column): r.improvement_pct for r in improv.itertuples()}
        body.append(["Improv.", *(_pct(pct.get((d, key))) for d in datasets for key in COLUMNS)])
    return Table(SECTIONS[0], "overall", "Overall performance: test Recall (R) and NDCG (N) at K",
                 ["Model", *(COLUMNS[k] for _ in datasets for k in COLUMNS)], body,
                 [(labels[d], len(COLUMNS)) for d in datasets])


def _pct(value: float | None) -> str | Cell:
    return Cell(None) if value is None or math.isnan(value) else f"{value:.2f}%"


def ablation_table(metrics: pd.DataFrame, dataset: str, kind: str, label: str) -> Table | None:
    """One ablation of one dataset (None when only the full model ran)."""
    title, variants = ABLATIONS[kind]
    m = metrics[(metrics["dataset"] == dataset) & (metrics["seeds"] > 0) & metrics["variant"].isin(variants)]
    rows = {r["variant"]: r for _, r in m.iterrows()}
    if not set(rows) - {"mentor"}:
        return None
    columns = [_marked([_stat_cell(rows.get(v), key) for v in variants]) for key in COLUMNS]
    names = [f"{display(v)} (full)" if v == "mentor" else display(v) for v in variants]
    return Table(SECTIONS[1], kind, f"{label}: {title}", ["Model", *COLUMNS.values()],
                 [[n, *(c[i] for c in columns)] for i, n in enumerate(names)])


def efficiency_table(eff: pd.DataFrame, labels: dict[str, str]) -> Table:
    variants = variant_order(eff["variant"])
    body: list[list[str | Cell]] = []
    for dataset in dict.fromkeys(eff["dataset"]):
        rows = {r["variant"]: r for _, r in eff[eff["dataset"] == dataset].iterrows()}
        cells = {v: _efficiency_cells(rows.get(v)) for v in variants}
        for i, metric in enumerate(("Time (s/epoch)", "Memory (MB)", "Device")):
            body.append([labels[dataset] if i == 0 else "", metric, *(cells[v][i] for v in variants)])
    return Table(SECTIONS[2], "efficiency", "Efficiency: median over seeds of seconds per epoch and peak memory",
                 ["Dataset", "Metric", *map(display, variants)], body)


def _efficiency_cells(row: pd.Series | None) -> list[str | Cell]:
    if row is None:
        return [Cell(None)] * 3
    trained = row["epochs_run_median"] > 0  # MostPop trains no epoch: no time per epoch
    mem = row["peak_memory_mb_median"]
    device = row["device"] + (f" ({row['world_size']} workers)" if row["world_size"] > 1 else "")
    return [f"{row['seconds_per_epoch_median']:.2f}" if trained else Cell(None),
            Cell(None) if pd.isna(mem) else f"{mem:.0f}", device or Cell(None)]


def sweep_table(sweeps: pd.DataFrame, labels: dict[str, str]) -> Table:
    body = [[labels[r["dataset"]], r["space"] or Cell(None), r["model"] or Cell(None), str(r["trials"]),
             str(r["completed"]),
             str(r["stopped_early"]), str(r["failed"]), _number(r["best_valid_recall@20"]), _best_config(r),
             _duration(r["search_wall_seconds"], r["search_wall_basis"]),
             _duration(r["sweep_wall_seconds"], r["sweep_wall_basis"])] for _, r in sweeps.iterrows()]
    # A point the searcher proposes twice runs twice but is one run in the store (same config and seed:
    # the same run id, and the same result), so this counts distinct configurations.
    return Table(SECTIONS[3], "sweep", "Search per dataset and space (role search), and wall time of the whole sweep",
                 ["Dataset", "Space", "Model", "Configs", "Completed", "Stopped early (ASHA)", "Failed",
                  "Best valid R@20",
                  "Best config", "Search wall", "Sweep wall"], body)


def _number(value) -> str | Cell:
    return Cell(None) if value is None or pd.isna(value) else f"{value:.{DIGITS}f}"


def _best_config(row: pd.Series) -> str | Cell:
    return Cell(None) if pd.isna(row["best_run_id"]) or not row["best_config"] else row["best_config"]


def _duration(seconds: float, basis: str) -> str | Cell:
    if pd.isna(seconds):
        return Cell(None)
    s = int(round(seconds))
    text = f"{seconds:.1f}s" if seconds < 60 else f"{s // 60}m {s % 60:02d}s" if s < 3600 else \
        f"{s // 3600}h {s % 3600 // 60:02d}m"
    return text + (" (sum of runs)" if basis == "sum" else "")


# --------------------------------------------------------------------------- the board


def build_board(runs: pd.DataFrame, source: str) -> Board:
    """Every table, its CSV frame and the notes, from the runs of one store (no plots)."""
    chosen = select_final(runs)
    labels = _labels(runs)
    metrics = metric_frame(chosen)
    improv = improvement_frame(chosen, metrics)
    eff = efficiency_frame(chosen)
    sweeps = sweep_frame(runs)
    tables = [overall_table(metrics, improv, labels)] if len(chosen) else []
    frames = {"overall": metrics, "improvement": improv}
    for kind in ABLATIONS:
        found = [t for d in dict.fromkeys(metrics["dataset"]) if (t := ablation_table(metrics, d, kind, labels[d]))]
        tables += found
        frames[kind] = metrics[metrics["variant"].isin(ABLATIONS[kind][1])].reset_index(drop=True)
    tables += [efficiency_table(eff, labels)] if len(eff) else []
    tables.append(sweep_table(sweeps, labels))
    frames.update(efficiency=eff, sweep=sweeps)
    return Board(_intro(runs, source), tables, frames, _notes(runs, chosen, metrics, improv, labels))


def _intro(runs: pd.DataFrame, source: str) -> list[str]:
    roles = runs["role"].value_counts()
    versions = sorted(set(runs["code_version"].dropna()))
    return [
        f"Results: `{source}`: {len(runs)} run{'' if len(runs) == 1 else 's'} "
        f"({', '.join(f'{n} {r}' for r, n in roles.items())}); "
        f"code {', '.join(versions[:3])}{' …' if len(versions) > 3 else ''}.",
        "Metric tables: test split at each run's best validation epoch, runs of role final/ablation only, one "
        "config per dataset and model chosen on mean validation Recall@20; mean ± sample std over seeds (one "
        "seed: the mean only). Per column: best **bold**, second <u>underlined</u> (at 4 decimals; ties share "
        "the mark). Improv.: MENTOR against the column's best baseline; * = paired t-test over seeds, two-sided, "
        f"p < {ALPHA}, MENTOR ahead.",
    ]


def _notes(runs: pd.DataFrame, chosen: pd.DataFrame, metrics: pd.DataFrame, improv: pd.DataFrame,
           labels: dict[str, str]) -> list[str]:
    notes = []
    for dataset in dataset_order(runs):
        label, m = labels[dataset], metrics[(metrics["dataset"] == dataset) & (metrics["seeds"] > 0)]
        failed = runs[(runs["dataset"] == dataset) & (runs["status"] == "failed")]
        if len(failed):
            errors, roles = failed["error"].dropna(), failed["role"].value_counts()
            by_role = ", ".join(f"{roles[r]} {r}" for r in ROLES if r in roles)
            notes.append(f"{label}: failed runs ({by_role}) left out of the metric tables (the search's are counted "
                         f"in the sweep summary); first error: {errors.iloc[0] if len(errors) else 'none recorded'}")
        if m.empty:
            notes.append(f"{label}: no final or ablation run that finished; not in the metric tables")
            continue
        has_base, has_mentor = m["variant"].isin(BASELINES).any(), (m["variant"] == "mentor").any()
        if has_base != has_mentor:
            notes.append(f"{label}: no {'MENTOR' if has_base else 'baseline'} runs, so no Improv. for this dataset")
        pairs = improv.loc[improv["dataset"] == dataset, "pairs"]
        if len(pairs) and pairs.min() < 2:
            notes.append(f"{label}: fewer than 2 seeds shared by MENTOR and the best baseline; no t-test, no *")
        for title, variants in ABLATIONS.values():
            if not set(m["variant"]) & (set(variants) - {"mentor"}):
                notes.append(f"{label}: no ablation runs of {', '.join(variants[:-1])}; no '{title}' table")
    return notes


# --------------------------------------------------------------------------- plots


def search_scores(runs: pd.DataFrame, dataset: str, axes: Sequence[str] = ()) -> pd.DataFrame:
    """The dataset's MENTOR search runs that have a validation Recall@20 (completed or stopped by ASHA);
    a baseline's own search (its grid has other axes) is left out of MENTOR's sensitivity plots.

    With ``axes``, only the runs of sweeps that varied every one of them: a later stage that searched
    other settings (e.g. ``mentor_lr_reg`` at a first sweep's best point) would otherwise add its trials,
    trained at other learning rates, to one cell of the plot."""
    s = runs[(runs["dataset"] == dataset) & (runs["role"] == "search") & (runs["status"] != "failed")
             & (runs["variant"] == "mentor")]
    s = s[s[VALID].notna()]
    if axes and len(s):
        keep = [g for _, g in s.groupby("sweep", dropna=False) if set(axes) <= set(searched_keys(g))]
        s = pd.concat(keep) if keep else s.iloc[:0]
    return s


def sensitivity_grid(scored: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Best validation Recall@20 per (y, x) cell over the trials in it; rows y, columns x, NaN if empty."""
    grid = scored.pivot_table(index=y, columns=x, values=VALID, aggfunc="max")
    return grid.sort_index().sort_index(axis=1)


def _too_few(scored: pd.DataFrame, axes: Sequence[str]) -> str | None:
    if scored.empty:
        return f"no MENTOR search with a validation Recall@20 varied {' and '.join(axes)}"
    for axis in axes:
        n = scored[axis].nunique()
        if n < 2:
            return f"{n} distinct value of {axis} among {len(scored)} scored search run(s); need at least 2"
    return None


def heatmap_figure(grid: pd.DataFrame, x: str, y: str, title: str):
    import numpy as np
    from matplotlib.figure import Figure

    data = grid.to_numpy(float)
    fig = Figure(figsize=(max(4.5, 0.95 * data.shape[1] + 2.2), max(3.2, 0.55 * data.shape[0] + 1.6)))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(data.shape[1]), [f"{v:g}" for v in grid.columns])
    ax.set_yticks(range(data.shape[0]), [f"{v:g}" for v in grid.index])
    for (i, j), v in np.ndenumerate(data):
        if not math.isnan(v):
            ax.text(j, i, f"{v:.4f}", ha="center", va="center", fontsize=8,
                    color="black" if im.norm(v) > 0.6 else "white")
    ax.set(xlabel=AXIS_LABELS.get(x, x), ylabel=AXIS_LABELS.get(y, y), title=title)
    fig.colorbar(im, ax=ax, label="best validation Recall@20")
    return fig


def align_figure(series: pd.Series, title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.4))
    ax = fig.subplots()
    ax.plot(series.index, series.values, marker="o")
    for xv, yv in series.items():
        ax.annotate(f"{yv:.4f}", (xv, yv), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xticks(list(series.index), [f"{v:g}" for v in series.index])
    ax.set(xlabel=AXIS_LABELS["lambda_align"], ylabel="best validation Recall@20", title=title)
    ax.margins(y=0.2)
    return fig


def curves_figure(finals: pd.DataFrame, title: str):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.subplots()
    several = finals["variant"].nunique() > 1
    for _, r in finals.sort_values(["variant", "seed"]).iterrows():
        curve = list(r["valid_curve"])
        name = f"{display(r['variant'])} seed {r['seed']}" if several else f"seed {r['seed']}"
        (line,) = ax.plot(range(len(curve)), curve, label=name)  # epochs 0-based, as best_epoch
        best = int(r["best_epoch"])
        if 0 <= best < len(curve):
            ax.plot([best], [curve[best]], "o", color=line.get_color(), markersize=4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch (dot: best_epoch)", ylabel="validation Recall@20", title=title)
    ax.legend(fontsize=8)
    return fig


def plot_jobs(runs: pd.DataFrame, chosen: pd.DataFrame, dataset: str,
              label: str) -> list[tuple[str, str, Callable]]:
    """(file stem, title, builder) per plot of a dataset; a builder returns a Figure or why it cannot."""
    finals = chosen[(chosen["dataset"] == dataset) & (chosen["role"] == "final")]
    finals = finals[finals["valid_curve"].map(lambda c: c is not None and len(c) > 0)]
    jobs = []
    for x, y in SENSITIVITY:
        title = f"{label}: sensitivity to ({x}, {y})"
        scored = search_scores(runs, dataset, (x, y))
        jobs.append((f"sens_{x}_{y}", title, lambda s=scored, x=x, y=y, t=title: _too_few(s, (x, y)) or
                     heatmap_figure(sensitivity_grid(s, x, y), x, y, t)))
    title = f"{label}: effect of lambda_align"
    scored = search_scores(runs, dataset, ("lambda_align",))
    jobs.append(("lambda_align", title, lambda s=scored: _too_few(s, ("lambda_align",)) or
                 align_figure(s.groupby("lambda_align")[VALID].max().sort_index(), title)))
    curves = f"{label}: validation curves of the final runs"
    jobs.append(("valid_curves", curves, lambda: "no final run with a recorded validation curve" if finals.empty
                 else curves_figure(finals, curves)))
    return jobs


def write_plots(runs: pd.DataFrame, out_dir: Path) -> tuple[list[Plot], list[str]]:
    """Every plot as ``out_dir/plots/<dataset>-<plot>.png``; the skipped ones as notes."""
    chosen, labels = select_final(runs), _labels(runs)
    plots, notes = [], []
    for dataset in dataset_order(runs):
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset)
        for stem, title, build in plot_jobs(runs, chosen, dataset, labels[dataset]):
            fig = build()
            if isinstance(fig, str):
                notes.append(f"plot '{title}' skipped: {fig}")
                continue
            rel = f"plots/{slug}-{stem}.png"
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
            write_atomic(out_dir / rel, buf.getvalue())
            plots.append(Plot(rel, title))
    return plots, notes


# --------------------------------------------------------------------------- rendering


@dataclasses.dataclass(frozen=True)
class Style:
    bold: str
    under: str
    star: str
    pm: str
    dash: str
    esc: Callable[[str], str]


def tex_escape(text: str) -> str:
    table = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
             "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--", "±": r"$\pm$"}
    return "".join(table.get(ch, ch) for ch in text)


MD = Style("**{}**", "<u>{}</u>", "\\*", " ± ", DASH, lambda s: s.replace("|", "\\|"))
TEX = Style(r"\textbf{{{}}}", r"\underline{{{}}}", r"$^{*}$", r" $\pm$ ", "--", tex_escape)
HTML = Style("<b>{}</b>", "<u>{}</u>", "<sup>*</sup>", " ± ", DASH, html.escape)


def render_cell(cell: str | Cell, st: Style) -> str:
    if isinstance(cell, str):
        return st.esc(cell)
    if cell.mean is None:
        return st.dash
    text = f"{cell.mean:.{DIGITS}f}"
    text = st.bold.format(text) if cell.mark == 1 else st.under.format(text) if cell.mark == 2 else text
    text += st.star if cell.star else ""
    return text if cell.std is None else f"{text}{st.pm}{cell.std:.{DIGITS}f}"


def _group_labels(t: Table) -> list[str]:
    """The header with each group's name in front (Markdown has one header row)."""
    lead = len(t.header) - sum(n for _, n in t.groups)
    names = [g for g, n in t.groups for _ in range(n)]
    return t.header[:lead] + [f"{g} {h}" for g, h in zip(names, t.header[lead:])]


def table_md(t: Table) -> str:
    header = _group_labels(t) if t.groups else t.header
    lines = [f"### {MD.esc(t.title)}", "", "| " + " | ".join(map(MD.esc, header)) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(render_cell(c, MD) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def table_tex(t: Table) -> str:
    lead = len(t.header) - sum(n for _, n in t.groups)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(t.title)}}}",
             rf"\label{{tab:{t.key}}}", rf"\begin{{tabular}}{{{'l' * lead}{'r' * (len(t.header) - lead)}}}",
             r"\toprule"]
    if t.groups:
        spans = [rf"\multicolumn{{{n}}}{{c}}{{{tex_escape(g)}}}" for g, n in t.groups]
        lines.append(" & " * lead + " & ".join(spans) + r" \\")
        starts = [lead + 1 + sum(n for _, n in t.groups[:i]) for i in range(len(t.groups))]
        lines.append(" ".join(rf"\cmidrule(lr){{{s}-{s + n - 1}}}" for s, (_, n) in zip(starts, t.groups)))
    lines += [" & ".join(map(tex_escape, t.header)) + r" \\", r"\midrule"]
    lines += [" & ".join(render_cell(c, TEX) for c in row) + r" \\" for row in t.rows]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}", r"\end{table}"])


def table_html(t: Table) -> str:
    head = ""
    if t.groups:
        lead = len(t.header) - sum(n for _, n in t.groups)
        head = "<tr>" + "<th></th>" * lead + "".join(f'<th colspan="{n}">{html.escape(g)}</th>' for g, n in t.groups)
        head += "</tr>\n"
    head += "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in t.header) + "</tr>"
    body = "\n".join("<tr>" + "".join(f"<td>{render_cell(c, HTML)}</td>" for c in row) + "</tr>" for row in t.rows)
    return (f'<h3>{html.escape(t.title)}</h3>\n<table id="{t.key}">\n<thead>\n{head}\n</thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>")


def _sections(board: Board) -> list[tuple[str, list[Table]]]:
    return [(s, [t for t in board.tables if t.section == s]) for s in SECTIONS
            if any(t.section == s for t in board.tables)]


def render_markdown(board: Board) -> str:
    parts = ["# MENTOR leaderboard", "", *board.intro]
    for section, tables in _sections(board):
        parts += ["", f"## {section}", *("\n" + table_md(t) for t in tables)]
    if board.plots:
        parts += ["", "## Plots", ""] + [f"![{p.title}]({p.path})" for p in board.plots]
    if board.notes:
        parts += ["", "## Notes", ""] + [f"- {MD.esc(n)}" for n in board.notes]
    return "\n".join(parts) + "\n"


def render_tex(board: Board) -> str:
    head = ["% MENTOR leaderboard (python -m mentor_ray.leaderboard); needs \\usepackage{booktabs}\n"
            + "\n".join(f"% {line}" for line in board.intro)]
    notes = [f"% note: {n}" for n in board.notes]
    return "\n\n".join(head + [table_tex(t) for t in board.tables]) + "\n" + "\n".join(notes) + "\n"


def render_html(board: Board) -> str:
    css = ("body{font-family:sans-serif;margin:2em;max-width:90em}table{border-collapse:collapse;margin:1em 0}"
           "th,td{border-bottom:1px solid #ccc;padding:.25em .6em;text-align:right}"
           "th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:1em}")
    intro = "".join(f"<p>{_md_inline(p)}</p>\n" for p in board.intro)
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>MENTOR leaderboard</title>"
             f"<style>{css}</style></head>\n<body>\n<h1>MENTOR leaderboard</h1>\n{intro}"]
    for section, tables in _sections(board):
        parts.append(f"<h2>{html.escape(section)}</h2>\n" + "\n".join(table_html(t) for t in tables))
    if board.plots:
        figs = (f'<figure><img src="{html.escape(p.path)}" alt="{html.escape(p.title)}">'
                f"<figcaption>{html.escape(p.title)}</figcaption></figure>" for p in board.plots)
        parts.append("<h2>Plots</h2>\n" + "\n".join(figs))
    if board.notes:
        items = "\n".join(f"<li>{html.escape(n)}</li>" for n in board.notes)
        parts.append(f"<h2>Notes</h2>\n<ul>\n{items}\n</ul>")
    return "\n".join(parts) + "\n</body></html>\n"


def _md_inline(text: str) -> str:
    """The intro's Markdown (`code`, **bold**, <u>underline</u>) as HTML."""
    out = html.escape(text).replace("&lt;u&gt;", "<u>").replace("&lt;/u&gt;", "</u>")
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


# --------------------------------------------------------------------------- files


def parse_formats(value: str | Sequence[str]) -> tuple[str, ...]:
    """``md,csv`` (or a sequence) to a tuple of known formats; anything else is a one-line error."""
    items = [i.strip().lower() for i in (value.split(",") if isinstance(value, str) else value) if i.strip()]
    bad = [i for i in items if i not in FORMATS]
    if bad or not items:
        found = f"unknown format {', '.join(map(repr, bad))}" if bad else "no format given"
        raise MentorRayError(f"--format {value if isinstance(value, str) else ','.join(value)!s}: {found}; "
                             f"allowed: {', '.join(FORMATS)} (comma-separated)")
    return tuple(dict.fromkeys(items))


def write_leaderboard(results_dir: str | Path, out_dir: str | Path,
                      formats: str | Sequence[str] = FORMATS) -> str:
    """Read the store under ``results_dir``, write the leaderboard under ``out_dir``; its Markdown."""
    chosen_formats = parse_formats(formats)
    runs = load_runs(results_dir)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise MentorRayError(f"--out {out}: cannot create the output directory ({exc.strerror})") from exc
    board = build_board(runs, str(results_dir))
    board.plots, plot_notes = write_plots(runs, out)
    board.notes += plot_notes
    markdown = render_markdown(board)
    renderers = {"md": lambda: markdown, "tex": lambda: render_tex(board), "html": lambda: render_html(board)}
    for fmt in chosen_formats:
        if fmt == "csv":
            for name, frame in board.frames.items():
                write_atomic(out / "csv" / f"{name}.csv", frame.to_csv(index=False))
        else:
            write_atomic(out / f"leaderboard.{fmt}", renderers[fmt]())
    log.info("leaderboard (%s) and %d plot(s) written under %s", ", ".join(chosen_formats), len(board.plots), out)
    return markdown
