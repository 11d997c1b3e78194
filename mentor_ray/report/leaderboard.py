"""Paper-style leaderboard of a results store: Table 2, the ablations, Table 3, sweep summaries, plots.

:func:`write_leaderboard` reads the Parquet results store of a sweep (:mod:`mentor_ray.report.results`),
writes ``leaderboard.md``, ``.tex`` and ``.html``, ``csv/`` and ``plots/`` under a folder and returns the
Markdown; the sweep calls it at its end. :func:`build_board` and the ``*_frame`` functions are the same
tables as data. What each table holds and how runs are chosen: ``docs/architecture.md`` (*Leaderboard*).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import shutil
import warnings
from pathlib import Path
from typing import Sequence

import pandas as pd

from mentor_ray.common.config import BASELINES, read_keys
from mentor_ray.common.errors import MentorRayError, shown
from mentor_ray.common.io import write_atomic
from mentor_ray.common.registry import entry_of
from mentor_ray.common.runtime import kill_point
from mentor_ray.report import paired
from mentor_ray.report.board import (
    DIGITS,
    LOAD_NOTE,
    SECTIONS,
    Board,
    Cell,
    Column,
    Percent,
    Table,
    metric_cell,
    missing,
    real,
)
from mentor_ray.report.plots import (
    SPARSITY_RULE,
    frame_models,
    sparsity_of,
    training_counts_of,
    write_plots,
)
from mentor_ray.report.render import render_board
from mentor_ray.report.results import HPARAMS, ROLES, selection_key
from mentor_ray.report.select import (
    ABLATIONS,
    ALPHA,
    COLUMNS,
    STOPPED_UNKNOWN,
    UNDERTRAINED_MARK,
    VALID,
    dataset_labels,
    dataset_order,
    display,
    load_runs,
    parse_json,
    run_limits,
    searched_keys,
    select_final,
    space_axes,
    stop_reasons,
    stopped_by,
    undertrained,
    user_values,
    variant_order,
)

log = logging.getLogger(__name__)

FORMATS = ("md", "csv", "tex", "html")
MIN_SEEDS = 5  # below this, a note says the ± may understate the spread between training runs


# --------------------------------------------------------------------------- statistics


def metric_frame(chosen: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset x variant present anywhere (``seeds`` 0 where none ran): mean and sample std
    (NaN with one seed) over seeds of the test columns and of validation Recall@20; ``undertrained``: how many
    of its seeds' runs the epoch cap cut off still improving (:func:`~mentor_ray.report.select.is_undertrained`),
    ``max_epochs`` the largest cap among them."""
    rows = [_metric_row(chosen, d, v) for d in dataset_order(chosen) for v in variant_order(chosen["variant"])]
    stats = [f"{key}_{s}" for key in (*COLUMNS, VALID) for s in ("mean", "std")]
    return pd.DataFrame(rows, columns=["dataset", "synthetic", "variant", "model", "config_hash", "seeds",
                                       "undertrained", "max_epochs", *stats])


def _metric_row(chosen: pd.DataFrame, dataset: str, variant: str) -> dict:
    g = chosen[(chosen["dataset"] == dataset) & (chosen["variant"] == variant)]
    row = {"dataset": dataset, "synthetic": bool(chosen.loc[chosen["dataset"] == dataset, "synthetic"].any()),
           "variant": variant, "model": display(variant), "seeds": len(g),
           "config_hash": g["config_hash"].iloc[0] if len(g) else None, "undertrained": int(undertrained(g).sum()),
           "max_epochs": run_limits(g)["max_epochs"].max() if len(g) else math.nan}
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
    """Per dataset having MENTOR and a baseline, per test column: MENTOR against the best baseline, with
    the paired t-test over seeds and, where the runs kept per-user values, the paired tests over users
    (:mod:`mentor_ray.report.paired`)."""
    rows = []
    for dataset in metrics["dataset"].unique():
        m = metrics[(metrics["dataset"] == dataset) & (metrics["seeds"] > 0)]
        base = m[m["variant"].isin(BASELINES)]
        if base.empty or "mentor" not in set(m["variant"]):
            continue
        mentor = m[m["variant"] == "mentor"].iloc[0]
        for key in COLUMNS:
            scored = base[base[f"{key}_mean"].notna()]  # a column no baseline has a value in has no best
            if len(scored):
                rows.append(_compare(chosen, key, mentor, scored.loc[scored[f"{key}_mean"].idxmax()]))
    return pd.DataFrame(rows, columns=["dataset", "column", "label", "best_baseline", "baseline_mean", "mentor_mean",
                                       "improvement_pct", "pairs", "t", "p_value", "users", "user_seeds",
                                       "user_diff", "user_ci_low", "user_ci_high", "wilcoxon_p", "significant"])


def versus_frame(chosen: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """As :func:`improvement_frame`, MENTOR against EVERY baseline (in the table's row order), per dataset and
    test column: the paper's comparison one baseline at a time, each with its tests over users and seeds."""
    rows = []
    for dataset in metrics["dataset"].unique():
        m = metrics[(metrics["dataset"] == dataset) & (metrics["seeds"] > 0)]
        if "mentor" not in set(m["variant"]):
            continue
        mentor = m[m["variant"] == "mentor"].iloc[0]
        for variant in variant_order(m["variant"][m["variant"].isin(BASELINES)]):
            base = m[m["variant"] == variant].iloc[0]
            rows += [_compare(chosen, key, mentor, base) for key in COLUMNS if not missing(base[f"{key}_mean"])]
    return pd.DataFrame(rows, columns=["dataset", "column", "label", "best_baseline", "baseline_mean", "mentor_mean",
                                       "improvement_pct", "pairs", "t", "p_value", "users", "user_seeds",
                                       "user_diff", "user_ci_low", "user_ci_high", "wilcoxon_p", "significant"])


def _compare(chosen: pd.DataFrame, key: str, mentor: pd.Series, best: pd.Series) -> dict:
    b, m = best[f"{key}_mean"], mentor[f"{key}_mean"]
    dataset = mentor["dataset"]
    pairs, t, p = paired_t(seed_values(chosen, dataset, "mentor", key),
                           seed_values(chosen, dataset, best["variant"], key))
    a, z = user_values(chosen, dataset, "mentor", key), user_values(chosen, dataset, best["variant"], key)
    users = {"users": 0, "user_seeds": None, "user_diff": math.nan, "user_ci_low": math.nan,
             "user_ci_high": math.nan, "wilcoxon_p": math.nan}
    if a is not None and z is not None:
        va, vz = paired.align(a[:2], z[:2])
        if va.size:
            r = paired.compare(va, vz)
            users = {"users": r.users, "user_seeds": f"{a[2]}/{z[2]}", "user_diff": r.mean_diff,
                     "user_ci_low": r.ci_low, "user_ci_high": r.ci_high, "wilcoxon_p": r.wilcoxon_p}
    # a star needs every test there is to agree: the t-test over seeds, and the users' interval where kept
    by_users = users["users"] == 0 or users["user_ci_low"] > 0
    return {"dataset": dataset, "column": key, "label": COLUMNS[key], "best_baseline": best["variant"],
            "baseline_mean": b, "mentor_mean": m, "improvement_pct": (m - b) / b * 100 if b > 0 else math.nan,
            "pairs": pairs, "t": t, "p_value": p, **users, "significant": bool(p < ALPHA and m > b and by_users)}


def efficiency_frame(chosen: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and variant: medians over seeds of seconds per epoch, of the run's own memory
    (:func:`run_memory`: peak GPU memory of the runs on CUDA, peak RSS increase of those on CPU) and of
    epochs run; ``gpu_runs`` / ``cpu_runs`` count the runs on each device (a median over none is NaN)."""
    mem = run_memory(chosen)
    agg = chosen.assign(**mem).groupby(["dataset", "variant"], sort=False).agg(
        runs=("run_id", "size"), seconds_per_epoch_median=("seconds_per_epoch", "median"),
        peak_gpu_mb_median=("gpu_mb", "median"), rss_increase_mb_median=("rss_increase_mb", "median"),
        gpu_runs=("on_gpu", "sum"), cpu_runs=("on_gpu", lambda s: int((~s).sum())),
        epochs_run_median=("epochs_run", "median"),
        device=("device", lambda s: ", ".join(sorted(set(s.dropna().astype(str))))),
        world_size=("world_size", "max")).reset_index()
    rank = {d: i for i, d in enumerate(dataset_order(chosen))}
    vrank = {v: i for i, v in enumerate(variant_order(chosen["variant"]))}
    agg = agg.assign(_d=agg["dataset"].map(rank), _v=agg["variant"].map(vrank)).sort_values(["_d", "_v"])
    return agg.drop(columns=["_d", "_v"]).assign(model=lambda f: f["variant"].map(display)).reset_index(drop=True)


def run_memory(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run, the memory that is its own: ``on_gpu`` (device CUDA); ``gpu_mb``, torch's peak GPU memory
    during the run (``peak_gpu_mb``; a run stored before that column has its GPU peak in ``peak_memory_mb``);
    ``rss_increase_mb`` (runs on CPU), the process's peak RSS during the run minus its RSS when the run
    started, data loaded and no model built (``peak_rss_mb - rss_start_mb``): NaN for a run stored without
    ``rss_start_mb``, whose raw RSS (interpreter, libraries and data included) says nothing of the model."""
    on_gpu = runs["device"].fillna("").astype(str).str.startswith("cuda")
    legacy = on_gpu & runs["peak_gpu_mb"].isna() & runs["peak_rss_mb"].isna()  # before the split columns
    gpu = runs["peak_gpu_mb"].where(~legacy, runs["peak_memory_mb"]).where(on_gpu)
    rss = (runs["peak_rss_mb"] - runs["rss_start_mb"]).where(~on_gpu)
    return pd.DataFrame({"on_gpu": on_gpu, "gpu_mb": gpu.astype(float), "rss_increase_mb": rss.astype(float)},
                        index=runs.index)


def wall_time(runs: pd.DataFrame) -> float:
    """Wall-clock seconds from the first run's ``started_at`` to the last run's ``finished_at``; NaN when no
    run has a ``started_at`` (runs stored before that column): never a sum of run times."""
    started = runs["started_at"].dropna()
    if started.empty:
        return math.nan
    return float((runs["finished_at"].max() - started.min()).total_seconds())


def run_time_sum(runs: pd.DataFrame) -> float:
    """The runs' own durations (``wall_seconds``) added up; NaN when none is recorded. Runs in parallel
    make it larger than :func:`wall_time`; time between runs (Ray, Tune) is not in it."""
    walls = runs["wall_seconds"].dropna()
    walls = walls[walls > 0]
    return float(walls.sum()) if len(walls) else math.nan


def sweep_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and sweep (search space): the search's trials by status (``stopped_by``: what stopped those
    stopped early, :func:`~mentor_ray.report.select.stopped_by`; ``undertrained``: completed trials the epoch cap
    cut off still improving), its best point on validation (``best_config``: the value of every axis the search
    searched, ``best_undertrained``: whether that trial was cut off so), and wall times."""
    rows = [_sweep_row(group) for d in dataset_order(runs)
            for _, group in runs[runs["dataset"] == d].groupby("sweep", dropna=False, sort=True)]
    best = [f"best_{h}" for h in HPARAMS]
    return pd.DataFrame(rows, columns=["dataset", "synthetic", "space", "model", "trials", "completed",
                                       "stopped_early", "failed", "undertrained", "stopped_by", "best_run_id",
                                       "best_valid_recall@20", "best_undertrained", "best_config", *best,
                                       "search_epochs", "search_device_seconds", "budget_epochs", "points",
                                       "grid_size", "axis_coverage",
                                       "search_wall_seconds", "search_run_seconds_sum",
                                       "sweep_wall_seconds", "sweep_run_seconds_sum"])




def _search_best(scored: pd.DataFrame):
    """Index of the search's best run by the sweep's own rule (:func:`mentor_ray.report.results.selection_key`)."""
    return max(scored.index, key=lambda i: selection_key(scored.at[i, VALID], scored.at[i, "valid_ndcg@20"],
                                                         scored.at[i, "best_epoch"], scored.at[i, "config_hash"]))


def _sweep_row(sweep_runs: pd.DataFrame) -> dict:
    search = sweep_runs[sweep_runs["role"] == "search"]
    status = search["status"].value_counts()
    scored = search[(search["status"] != "failed") & search[VALID].notna()]
    best = scored.loc[[_search_best(scored)]] if len(scored) else scored
    pick = (lambda c: best[c].iloc[0]) if len(best) else (lambda c: None)
    variants = set(scored["variant"])
    config = (parse_json(pick("config_json"), dict) or {}) if len(best) else {}
    keys = (space_keys(search, config) or searched_keys(scored)
            or (list(entry_of(variants.pop()).hparams) if len(variants) == 1 else []))
    reasons = stop_reasons(search)
    # a run's config holds every model's keys at their defaults: only those its model reads are its values
    reads = set(read_keys(best["variant"].iloc[0])) if len(best) else set()
    return {"dataset": sweep_runs["dataset"].iloc[0], "synthetic": bool(sweep_runs["synthetic"].any()),
            "space": ", ".join(sorted(set(sweep_runs["sweep"].dropna()))),
            "model": ", ".join(display(v) for v in variant_order(search["variant"].unique())),
            "trials": int(search["run_id"].nunique()), **{s: int(status.get(s, 0)) for s in
                                                           ("completed", "stopped_early", "failed")},
            "undertrained": int(undertrained(search[search["status"] == "completed"]).sum()),
            "stopped_by": stopped_by(reasons[search["status"] == "stopped_early"])
            if (search["status"] == "stopped_early").any() else None,
            "best_run_id": pick("run_id"), "best_valid_recall@20": pick(VALID),
            "best_undertrained": bool(undertrained(best).iloc[0]) if len(best) else None,
            "best_config": ", ".join(f"{k}={_fmt(config[k])}" for k in keys if k in config) or None,
            **{f"best_{h}": pick(h) if h in reads else None for h in HPARAMS}, **search_spend(search),
            "search_wall_seconds": wall_time(search),
            "search_run_seconds_sum": run_time_sum(search), "sweep_wall_seconds": wall_time(sweep_runs),
            "sweep_run_seconds_sum": run_time_sum(sweep_runs)}


def space_keys(search: pd.DataFrame, config: dict) -> list[str]:
    """Every axis the search's space searched (its trials' ``space_axes``), also those every trial tried at one
    value, in the order of the best run's settings (``config``, as :func:`~mentor_ray.report.select.searched_keys`
    orders them), so that the best point can be rebuilt from the table; empty for runs stored without their space."""
    axes = space_axes(search)
    if not axes:
        return []
    order = [k for k in read_keys(str(config.get("variant", "mentor"))) if k in axes]
    return order + sorted(k for k in axes if k not in order)


def search_spend(search: pd.DataFrame) -> dict:
    """What a search spent and covered: trial-epochs, device-seconds (run time x workers), its budget, and
    the distinct points tried against the grid, overall and per axis (``dropout 2/7; tau 8/8``)."""
    epochs = int(search["epochs_run"].fillna(0).sum()) if len(search) else 0
    device = float((search["wall_seconds"].fillna(0) * search["world_size"].fillna(1)).sum()) if len(search) else 0.0
    budgets = search["budget_epochs"].dropna() if "budget_epochs" in search else pd.Series(dtype=float)
    out = {"search_epochs": epochs, "search_device_seconds": device,
           "budget_epochs": int(budgets.iloc[0]) if len(budgets) else None,
           "points": None, "grid_size": None, "axis_coverage": None}
    axes_json = search["space_axes"].dropna() if "space_axes" in search else pd.Series(dtype=str)
    if not len(axes_json):
        return out  # runs stored before the space was recorded with them
    parsed = [(text, _axes(text)) for text in axes_json]
    good = [axes for _, axes in parsed if axes]
    bad = [text for text, axes in parsed if not axes]
    if bad:  # a hand-edited or foreign run file: the other runs of the sweep still say what its space was
        log.warning("results: sweep %s has %d run(s) with an unreadable space_axes (first: %s); %s",
                    search["sweep"].iloc[0], len(bad), shown(bad[0], 80),
                    "coverage from the others" if good else "its coverage is left blank")
    if not good:
        return out
    axes = good[0]
    configs = [c for c in (parse_json(t, dict) for t in search["config_json"].dropna()) if c is not None]
    tried = {k: {json.dumps(c.get(k)) for c in configs} for k in axes}
    out["points"] = len({tuple(json.dumps(c.get(k)) for k in axes) for c in configs})
    out["grid_size"] = math.prod(len(v) for v in axes.values())
    out["axis_coverage"] = "; ".join(f"{k} {len(tried[k])}/{len(v)}" for k, v in axes.items())
    return out


def _axes(text: str) -> dict[str, list] | None:
    """A run's ``space_axes``: each searched key and its values (None when it is no such mapping)."""
    axes = parse_json(text, dict)
    return axes if axes and all(isinstance(v, list) and v for v in axes.values()) else None


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


# --------------------------------------------------------------------------- tables


def marks(means: Sequence[float | None]) -> list[int]:
    """1 for the best value, 2 for the next distinct one, 0 otherwise; compared at the shown decimals."""
    at = [None if missing(m) else round(float(m), DIGITS) for m in means]  # NaN is no value, never a best
    top = sorted({s for s in at if s is not None}, reverse=True)[:2]
    return [top.index(s) + 1 if s is not None and s in top else 0 for s in at]


def _marked(cells: list[Cell]) -> list[Cell]:
    return [dataclasses.replace(c, mark=k) for c, k in zip(cells, marks([c.mean for c in cells]))]


def _stat_cell(row: pd.Series | None, key: str, star: bool = False) -> Cell:
    if row is None or row["seeds"] == 0:
        return Cell(None)
    return metric_cell(row[f"{key}_mean"], row[f"{key}_std"], star=star)


def _text(value: object) -> str | None:
    """A frame value as a text cell: None (the dash) when missing, empty text included."""
    return None if missing(value) else str(value)


def _metric_columns(group: str = "") -> list[Column]:
    return [Column(label, "metric", DIGITS, group=group) for label in COLUMNS.values()]


def _flagged(cells: list[Cell], rows: Sequence[pd.Series | None]) -> list[Cell]:
    """``cells`` with :data:`~mentor_ray.report.select.UNDERTRAINED_MARK` on those whose row (a
    :func:`metric_frame` row) has under-trained runs."""
    return [dataclasses.replace(c, note=UNDERTRAINED_MARK) if c.mean is not None and r is not None
            and r["undertrained"] > 0 else c for c, r in zip(cells, rows)]


def _higher_cap(caps: Sequence[float], flag: str = "--max-epochs") -> str:
    """The suggestion of a higher cap (``flag``) for runs cut off at ``caps``: twice the largest."""
    known = [int(c) for c in caps if real(c) is not None]
    return f"{flag} {2 * max(known)}" if known else f"a higher {flag}"


def _caps(caps: Sequence[float]) -> str:
    known = sorted({int(c) for c in caps if real(c) is not None})
    return f"max_epochs {', '.join(map(str, known))}" if known else "max_epochs"


def undertrained_note(metrics: pd.DataFrame, labels: dict[str, str], by_dataset: bool) -> str:
    """The legend of :data:`~mentor_ray.report.select.UNDERTRAINED_MARK` under a metric table whose rows are
    ``metrics`` (:func:`metric_frame` rows with runs): which models' runs the epoch cap cut off still improving,
    how many of the table's runs, and a higher cap to re-run with; "" when none was."""
    cut = metrics[metrics["undertrained"] > 0]
    if cut.empty:
        return ""
    which = "; ".join(f"{r.model}{f' on {labels.get(r.dataset, r.dataset)}' if by_dataset else ''} "
                      f"{int(r.undertrained)} of {int(r.seeds)}" for r in cut.itertuples())
    n, total = int(metrics["undertrained"].sum()), int(metrics["seeds"].sum())
    return (f"{UNDERTRAINED_MARK} under-trained: {n} of the {total} runs behind this table ({which}) had their best "
            f"validation epoch within `patience` epochs of the epoch cap ({_caps(cut['max_epochs'])}): the cap "
            "stopped them while they were still improving, so their values understate the model. Re-run with "
            f"`{_higher_cap(cut['max_epochs'])}` or more.")


def undertrained_warning(runs: pd.DataFrame) -> str | None:
    """What a sweep prints at its end (and the leaderboard notes) when the epoch cap cut runs off still improving
    (:func:`~mentor_ray.report.select.is_undertrained`): how many of the runs that did not fail, per role (and per
    dataset when there are several), the caps, and a higher ``--max-epochs`` to re-run with; None when none was.
    ``runs``: a runs frame (:func:`~mentor_ray.report.select.load_runs`), one row per run; a final run the sweep
    recorded again as the ablation's MENTOR row counts once (as a final), as the metric tables count it."""
    if runs.empty:
        return None
    ran = runs[runs["status"] != "failed"]
    ran = ran.assign(_later=ran["role"] == "ablation").sort_values(["_later", "run_id"], kind="mergesort")
    trained = ran[ran["role"] != "search"].drop_duplicates(["dataset", "variant", "config_hash", "seed"])
    ran = pd.concat([ran[ran["role"] == "search"], trained]).drop(columns="_later")
    cut = undertrained(ran)
    if not cut.any():
        return None
    roles = ", ".join(f"{r} {int(cut[ran['role'] == r].sum())} of {int((ran['role'] == r).sum())}"
                      for r in ROLES if (ran["role"] == r).any())
    datasets = list(dict.fromkeys(ran.loc[cut, "dataset"]))
    where = ""
    if ran["dataset"].nunique() > 1:
        where = "; " + ", ".join(f"{d} {int(cut[ran['dataset'] == d].sum())} of {int((ran['dataset'] == d).sum())}"
                                 for d in sorted(datasets))
    caps = run_limits(ran[cut])["max_epochs"]
    search = ran[ran["role"] == "search"]
    # a search of one configuration (a model's published point) chose nothing: its trial's cap cannot have
    # picked a wrong point, so only a search that chose among points and was cut off needs a higher --max-epochs
    chose = search.assign(sweep=search["sweep"].fillna("")).groupby(["dataset", "sweep"])["config_hash"] \
        .transform("nunique") > 1
    if len(search) and not (cut[search.index] & chose).any():
        again = (f"re-run the same command with --resume {_higher_cap(caps, '--final-max-epochs')} or more (no "
                 f"search that chose among points was cut off: the points stand, and the final and ablation runs "
                 f"are re-run at the higher cap)")
    else:
        again = f"re-run with {_higher_cap(caps)} or more"
    return (f"{int(cut.sum())} of {len(ran)} runs were cut off under-trained ({roles}{where}): their best "
            f"validation epoch was within patience epochs of the epoch cap ({_caps(caps)}), so the cap stopped them "
            f"while they were still improving and their numbers understate the models; {again}")


def overall_table(metrics: pd.DataFrame, improv: pd.DataFrame, labels: dict[str, str]) -> Table:
    """Table 2: a row per model, test columns per dataset, marks per column, then Improv. if any."""
    datasets = list(dict.fromkeys(metrics["dataset"]))
    variants = variant_order(metrics.loc[metrics["seeds"] > 0, "variant"])
    rows = {(r["dataset"], r["variant"]): r for _, r in metrics.iterrows()}
    stars = {(r.dataset, r.column) for r in improv.itertuples() if r.significant}
    columns = [_flagged(_marked([_stat_cell(rows.get((d, v)), key, v == "mentor" and (d, key) in stars)
                                 for v in variants]), [rows.get((d, v)) for v in variants])
               for d in datasets for key in COLUMNS]
    body: list[list[object]] = [[display(v), *(c[i] for c in columns)] for i, v in enumerate(variants)]
    if not improv.empty:
        pct = {(r.dataset, r.column): r.improvement_pct for r in improv.itertuples()}
        body.append(["Improv.", *(Percent(pct.get((d, key))) for d in datasets for key in COLUMNS)])
    shown = metrics[metrics["seeds"] > 0]
    return Table.of("overall", "Overall performance: test Recall (R) and NDCG (N) at K",
                    [Column("Model"), *(c for d in datasets for c in _metric_columns(labels[d]))], body,
                    section=SECTIONS[0], note=undertrained_note(shown, labels, len(datasets) > 1))


SIGNIFICANCE_NOTE = (
    "MENTOR minus the column's best baseline. Over users: each test user's value, averaged over a model's "
    "seeds (seeds: MENTOR's / the baseline's that kept per-user values), paired by user; the interval is the "
    f"{paired.CONFIDENCE:.0%} percentile interval of the mean difference over {paired.BOOTSTRAP_SAMPLES:,} "
    "bootstrap resamples of the users (seed 0); Wilcoxon: the two-sided signed-rank test of the per-user "
    "differences (zero differences dropped). Over seeds: the paired t-test over the seeds both models ran, "
    f"two-sided. `*` (here and in Table 2): MENTOR ahead with the t-test's p < {ALPHA} and, where the runs "
    "kept per-user values, the interval over users above 0. The interval over users measures how sure the "
    "difference is for this test set; the t-test, how sure it is over training runs.")


def significance_table(improv: pd.DataFrame, labels: dict[str, str], every: bool = False) -> Table | None:
    """MENTOR against the best baseline per dataset and column (``every``: against each baseline, the frame of
    :func:`versus_frame`): the difference, the paired tests over users and the t-test over seeds (None when no
    dataset has both)."""
    if improv.empty or (every and improv["best_baseline"].nunique() < 2):
        return None

    rows = []
    for r in improv.itertuples():
        kept = r.users > 0
        rows.append([labels.get(r.dataset, r.dataset), r.label, display(r.best_baseline),
                     metric_cell(r.mentor_mean - r.baseline_mean, star=bool(r.significant)),
                     (r.user_ci_low, r.user_ci_high) if kept else None, r.wilcoxon_p if kept else None,
                     f"{r.users:,} ({r.user_seeds})" if kept else None, r.p_value, r.pairs])
    columns = [Column("Dataset"), Column("Metric"), Column("Baseline" if every else "Best baseline"),
               Column("MENTOR − baseline", "metric", DIGITS),
               Column(f"{paired.CONFIDENCE:.0%} CI over users (bootstrap)", "interval", DIGITS),
               Column("Wilcoxon p (users)", "pvalue", 3), Column("Users (seeds)", "number"),
               Column("t-test p (seeds)", "pvalue", 3), Column("Seeds", "number")]
    if every:
        return Table.of("versus", "MENTOR against each baseline: paired tests over users and seeds", columns, rows,
                        section=SECTIONS[0], keys=3,
                        note=SIGNIFICANCE_NOTE.replace("the column's best baseline", "the row's baseline"))
    return Table.of("significance", "MENTOR against the best baseline: paired tests over users and seeds", columns,
                    rows, section=SECTIONS[0], keys=3, note=SIGNIFICANCE_NOTE)


def ablation_table(metrics: pd.DataFrame, dataset: str, kind: str, label: str) -> Table | None:
    """One ablation of one dataset (None when only the full model ran)."""
    title, variants = ABLATIONS[kind]
    m = metrics[(metrics["dataset"] == dataset) & (metrics["seeds"] > 0) & metrics["variant"].isin(variants)]
    rows = {r["variant"]: r for _, r in m.iterrows()}
    if not set(rows) - {"mentor"}:
        return None
    columns = [_flagged(_marked([_stat_cell(rows.get(v), key) for v in variants]), [rows.get(v) for v in variants])
               for key in COLUMNS]
    names = [f"{display(v)} (full)" if v == "mentor" else display(v) for v in variants]
    return Table.of(kind, f"{label}: {title}", [Column("Model"), *_metric_columns()],
                    [[n, *(c[i] for c in columns)] for i, n in enumerate(names)], section=SECTIONS[1],
                    note=undertrained_note(m, {dataset: label}, False))


GPU_MEMORY, CPU_MEMORY, NA = "Peak GPU memory (MB)", "Peak RSS increase (MB, CPU)", "n/a"
EFFICIENCY_NOTE = (
    "medians over the seeds of the chosen runs. Time (s/epoch): each run's median epoch time, its first epoch "
    "left out (MostPop trains no epoch). Peak GPU memory (MB): runs on CUDA, the most memory torch held "
    "allocated on the GPU during the run (`torch.cuda.max_memory_allocated`: model, graphs and features moved "
    "there, activations). Peak RSS increase (MB, CPU): runs on CPU, the process's peak resident memory during "
    "the run minus its resident memory when the run started, with the data loaded and before the model was "
    "built (`peak_rss_mb - rss_start_mb`): the model's and training's own memory, without the interpreter, "
    "libraries and data that every model shares. n/a: runs stored without `rss_start_mb` (older stores), "
    "whose raw process RSS is not shown. A dash (–): no run of that model on that device. " + LOAD_NOTE)
SWEEP_NOTE = (
    "Configs: distinct configurations the search ran (role search). Completed: ended by their own rule, early "
    f"stopping or the epoch cap (`max_epochs`); (n {UNDERTRAINED_MARK}): n of them under-trained, stopped by the cap "
    "while still improving (best validation epoch within `patience` epochs of `max_epochs`), which a higher "
    "`--max-epochs` would have trained on. Stopped early: by ASHA, or by the `--budget` running out, as the store "
    "records it (stores written before 0.5.1 do not: there, by ASHA where the search had no budget, else \"ASHA or "
    "budget\"). Best valid R@20, Best config: "
    "the search's best run by the sweep's own rule (trials stopped early counted by their best epoch so far; "
    f"{UNDERTRAINED_MARK}: that trial was under-trained), and its value of every axis the search searched.")
SPEND_NOTE = (
    "Search epochs: epochs its trials trained, as their checkpoints hold them (Tune keeps "
    "none of an epoch it stops a trial after). Search device time: the trials' run time times their workers. "
    "Budget: `--budget`, in trial-epochs, when the search had one. Coverage: distinct points of the space "
    "tried, against its grid size (Points tried); Values tried per axis: for each searched key, the values tried "
    "against those the space offers.")
TIME_NOTE = (
    "Search wall: wall-clock time of the "
    "search, from its first trial's start (`started_at`) to its last trial's end (`finished_at`). Search run "
    "time (sum): the trials' own durations (`wall_seconds`) added up, larger than the wall when trials ran in "
    "parallel, and without the time Ray and Tune spend between trials. Sweep wall and Sweep run time (sum): "
    "the same over every run of the sweep on that dataset (search, final and ablation runs). A run that "
    "failed before training has no duration and adds nothing to a sum. A dash (–): not recorded (runs stored "
    "before `started_at`, or without `wall_seconds`).")


def efficiency_table(eff: pd.DataFrame, labels: dict[str, str]) -> Table:
    """Table 3: a row per dataset and model; a memory column per device some run used."""
    gpu, cpu = bool(eff["gpu_runs"].sum()), bool(eff["cpu_runs"].sum())
    columns = [Column("Dataset"), Column("Model"), Column("Time (s/epoch)", "number", 2),
               *([Column(GPU_MEMORY, "number", 0, thousands=True)] if gpu else []),
               *([Column(CPU_MEMORY, "number", 0, thousands=True)] if cpu else []), Column("Device")]
    body: list[list[object]] = []
    for dataset in dict.fromkeys(eff["dataset"]):
        rows = {r["variant"]: r for _, r in eff[eff["dataset"] == dataset].iterrows()}
        for i, variant in enumerate(variant_order(pd.Series(list(rows)))):
            r = rows[variant]
            workers = r["world_size"]
            several = not missing(workers) and workers > 1
            device = None if missing(r["device"]) else f"{r['device']}{f' ({workers} workers)' if several else ''}"
            body.append([labels[dataset] if i == 0 else "", display(variant),
                         r["seconds_per_epoch_median"] if r["epochs_run_median"] > 0 else None,  # MostPop: no epoch
                         *([_memory(r["gpu_runs"], r["peak_gpu_mb_median"])] if gpu else []),
                         *([_memory(r["cpu_runs"], r["rss_increase_mb_median"])] if cpu else []), device])
    return Table.of("efficiency", "Efficiency: median over seeds of seconds per epoch and of the run's own peak "
                    "memory", columns, body, section=SECTIONS[2], note=EFFICIENCY_NOTE, keys=2)


def _memory(runs: int, mb: float) -> object:
    if not runs:
        return None  # no run of this model on this device
    return NA if missing(mb) else mb


def sweep_tables(sweeps: pd.DataFrame, labels: dict[str, str]) -> list[Table]:
    """The sweep summary as three tables of one row per dataset and space (18 columns fit no page): the search's
    trials and best point, what it spent and covered, and the wall and run times of the search and the sweep."""
    keys = [Column("Dataset"), Column("Space")]
    outcome, spend, times = [], [], []
    for _, r in sweeps.iterrows():
        key = [labels[r["dataset"]], _text(r["space"])]
        best = None if missing(r["best_run_id"]) else _text(r["best_config"])
        # A point the searcher proposes twice runs twice but is one run in the store (same config and seed:
        # the same run id, and the same result), so Configs counts distinct configurations.
        stopped = r["stopped_early"]
        stopped = f"{stopped:,} ({_text(r['stopped_by']) or STOPPED_UNKNOWN})" if stopped else stopped
        score = metric_cell(r["best_valid_recall@20"])
        if not missing(r["best_undertrained"]) and bool(r["best_undertrained"]):
            score = dataclasses.replace(score, note=UNDERTRAINED_MARK)
        done, cut = r["completed"], r["undertrained"]
        done = f"{done:,} ({cut:,} {UNDERTRAINED_MARK})" if not missing(cut) and cut else done
        outcome.append([*key, _text(r["model"]), r["trials"], done, stopped, r["failed"], score, best])
        grid, points = r["grid_size"], r["points"]
        known = not (missing(grid) or missing(points)) and grid
        spend.append([*key, r["search_epochs"], r["search_device_seconds"], r["budget_epochs"],
                      (points, grid) if known else None, 100 * points / grid if known else None,
                      _text(r["axis_coverage"])])
        times.append([*key, *(r[c] for c in ("search_wall_seconds", "search_run_seconds_sum", "sweep_wall_seconds",
                                             "sweep_run_seconds_sum"))])
    count = lambda header: Column(header, "number", thousands=True)  # noqa: E731
    duration = lambda header: Column(header, "duration")  # noqa: E731
    return [
        Table.of("sweep", "Search per dataset and space (role search): trials and the best point on validation",
                 [*keys, Column("Model"), count("Configs"), count("Completed"), count("Stopped early"),
                  count("Failed"), Column("Best valid R@20", "number", DIGITS), Column("Best config", wrap=True)],
                 outcome, section=SECTIONS[3], note=SWEEP_NOTE, keys=2),
        Table.of("sweep_spend", "What each search spent and how much of its space it tried",
                 [*keys, count("Search epochs"), duration("Search device time"),
                  Column("Budget", "number", thousands=True, suffix=" epochs"), Column("Points tried", "fraction"),
                  Column("Coverage", "percent", 1), Column("Values tried per axis", wrap=True)],
                 spend, section=SECTIONS[3], note=SPEND_NOTE, keys=2),
        Table.of("sweep_time", "Wall-clock and run time of each search and of the whole sweep",
                 [*keys, duration("Search wall"), duration("Search run time (sum)"), duration("Sweep wall"),
                  duration("Sweep run time (sum)")], times, section=SECTIONS[3], note=TIME_NOTE, keys=2),
    ]


SPARSITY_NOTE = (
    "Test Recall@20 (test split at each run's best validation epoch, the chosen runs of Table 2) per group of test "
    "users: each user's value averaged over a model's seeds, a cell the mean over the group's users (the test users "
    "MENTOR and every baseline kept). Groups: " + SPARSITY_RULE + "; each user's training interactions counted in the "
    "dataset the runs recorded (loaded again: the store keeps no count). Models: the multimodal baselines present "
    "(the paper's Fig. 6 uses MMSSL, FREEDOM, LGMRec and DiffMM) and the best baseline by mean test Recall@20. "
    "MENTOR − best: MENTOR minus the group's best baseline (of every baseline that kept per-user values), paired by "
    f"user, with the {paired.CONFIDENCE:.0%} percentile interval of the mean difference over "
    f"{paired.BOOTSTRAP_SAMPLES:,} bootstrap resamples of the group's users (seed 0).")


def sparsity_table(frame: pd.DataFrame, labels: dict[str, str]) -> Table | None:
    """Fig. 6 as a table: a row per dataset and user-sparsity group (:func:`~mentor_ray.report.plots.sparsity_frame`,
    several datasets concatenated): users, each model's mean, and MENTOR against the group's best baseline with its
    bootstrap interval over the group's users (None when no dataset has one)."""
    if frame.empty:
        return None
    shown = frame_models(frame)
    rows = []
    for r in frame.to_dict("records"):
        cells = [metric_cell(r.get(f"mean_{v}")) for v in shown]  # no marks: the renderers' legend is per column
        rows.append([labels.get(r["dataset"], r["dataset"]), r["label"], r["users"], *cells,
                     display(r["best_baseline"]), metric_cell(r["diff"]), (r["ci_low"], r["ci_high"])])
    columns = [Column("Dataset"), Column("Training interactions"), Column("Users", "number", thousands=True),
               *(Column(display(v), "metric", DIGITS) for v in shown), Column("Best baseline (group)"),
               Column("MENTOR − best", "metric", DIGITS),
               Column(f"{paired.CONFIDENCE:.0%} CI over users (bootstrap)", "interval", DIGITS)]
    return Table.of("sparsity", "Test Recall@20 per user-sparsity group (Fig. 6): MENTOR against the baselines",
                    columns, rows, section=SECTIONS[0], note=SPARSITY_NOTE, keys=2)


def sparsity_frames(chosen: pd.DataFrame, counts: dict) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every dataset's :func:`~mentor_ray.report.plots.sparsity_frame`, concatenated, and why each dataset whose
    MENTOR runs kept per-user values has none."""
    frames, why = [], {}
    for dataset in dataset_order(chosen):
        models, frame = sparsity_of(chosen, dataset, counts)
        if isinstance(frame, pd.DataFrame):
            frames.append(frame)
        elif models is not None:
            why[dataset] = frame
    if not frames:
        return pd.DataFrame(columns=["dataset", "group", "label", "min_train", "max_train", "users"]), why
    frame = pd.concat(frames, ignore_index=True)
    models = frame_models(frame)
    fixed = ["dataset", "group", "label", "min_train", "max_train", "users"]
    tail = ["best_baseline", "best_baseline_mean", "diff", "ci_low", "ci_high", "counts_from"]
    return frame[[*fixed, *(f"mean_{v}" for v in models), *(f"seeds_{v}" for v in models), *tail]], why


# --------------------------------------------------------------------------- the board


def build_board(runs: pd.DataFrame, source: str, counts: dict | None = None) -> Board:
    """Every table, its CSV frame and the notes, from the runs of one store (no plots). ``counts``: the training
    interactions per user of :func:`~mentor_ray.report.plots.training_counts_of` (None: loaded here)."""
    chosen = select_final(runs)
    labels = dataset_labels(runs)
    metrics = metric_frame(chosen)
    improv = improvement_frame(chosen, metrics)
    eff = efficiency_frame(chosen)
    sweeps = sweep_frame(runs)
    tables = [overall_table(metrics, improv, labels)] if len(chosen) else []
    versus = versus_frame(chosen, metrics)
    sparsity, no_sparsity = sparsity_frames(chosen, training_counts_of(chosen) if counts is None else counts)
    tables += [t for t in [significance_table(improv, labels), significance_table(versus, labels, every=True),
                           sparsity_table(sparsity, labels)] if t is not None]
    frames = {"overall": metrics, "improvement": improv, "versus": versus, "sparsity": sparsity}
    for kind in ABLATIONS:
        found = [t for d in dict.fromkeys(metrics["dataset"]) if (t := ablation_table(metrics, d, kind, labels[d]))]
        tables += [dataclasses.replace(t, key=f"{t.key}-{i + 1}") if i else t for i, t in enumerate(found)]
        frames[kind] = metrics[metrics["variant"].isin(ABLATIONS[kind][1])].reset_index(drop=True)
    tables += [efficiency_table(eff, labels)] if len(eff) else []
    tables += sweep_tables(sweeps, labels)
    frames.update(efficiency=eff, sweep=sweeps)
    notes = _notes(runs, chosen, metrics, improv, labels)
    warning = undertrained_warning(runs)
    notes += [f"under-trained runs: {warning}"] if warning else []
    notes += [f"{labels[d]}: no user-sparsity table (Fig. 6): {why}" for d, why in no_sparsity.items()]
    return Board(_intro(runs, source), tables, frames, notes)


def recorded_again(runs: pd.DataFrame) -> pd.Series:
    """Which runs are another role's run recorded again rather than trained: the ablation's MENTOR row is the
    final runs at the chosen point (the sweep records them under both roles). Such a row has a final run's
    dataset, variant, settings, seed and start time."""
    if not len(runs) or "started_at" not in runs:
        return pd.Series(False, index=runs.index)
    key = ["dataset", "variant", "config_hash", "seed", "started_at"]
    finals = runs[runs["role"] == "final"][key].dropna().drop_duplicates()
    marked = runs[key].merge(finals.assign(_final=True), on=key, how="left")["_final"].fillna(False).to_numpy()
    return pd.Series(marked.astype(bool), index=runs.index) & (runs["role"] != "final")


def _intro(runs: pd.DataFrame, source: str) -> list[str]:
    again = recorded_again(runs)
    trained = runs[~again]
    roles = trained["role"].value_counts()
    # the intro is Markdown as written (each renderer escapes it its own way but Markdown's): the store's text in
    # it keeps a version's characters only, and the path no backtick that would end its code span
    versions = sorted({re.sub(r"[^\w.+-]", "?", str(v))[:60] for v in runs["code_version"].dropna()})
    source = source.replace("`", "'")
    also = (f"; the {int(again.sum())} final run{'' if again.sum() == 1 else 's'} of MENTOR at the chosen point "
            f"also stand{'s' if again.sum() == 1 else ''} as the ablation's MENTOR row" if again.any() else "")
    return [
        f"Results: `{source}`: {len(trained)} run{'' if len(trained) == 1 else 's'} "
        f"({', '.join(f'{n} {r}' for r, n in roles.items())}{also}); "
        f"code {', '.join(versions[:3])}{' …' if len(versions) > 3 else ''}.",
        "Metric tables: test split at each run's best validation epoch, runs of role final/ablation only, one "
        "config per dataset and model chosen on mean validation Recall@20; mean ± sample std over seeds (one "
        "seed: the mean only). Improv.: MENTOR against the column's best baseline; * = MENTOR ahead with a paired "
        f"t-test over seeds (two-sided, p < {ALPHA}) and, where the runs kept per-user values, a "
        f"{paired.CONFIDENCE:.0%} paired bootstrap interval over test users above 0 (the table after Table 2 gives "
        "both tests).",
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
        few = m[(m["seeds"] < MIN_SEEDS) & m["variant"].isin([*BASELINES, "mentor"])]
        if len(few):
            shown = ", ".join(f"{r.model} {r.seeds}" for r in few.itertuples())
            notes.append(f"{label}: fewer than {MIN_SEEDS} seeds ({shown}): the ± may understate the spread between "
                         f"training runs (docs/results.md, 'Spread over seeds and thread counts'); re-run the finals "
                         f"with --seeds {MIN_SEEDS} or more before deciding")
        pairs = improv.loc[improv["dataset"] == dataset, "pairs"]
        if len(pairs) and pairs.min() < 2:
            notes.append(f"{label}: fewer than 2 seeds shared by MENTOR and the best baseline; no t-test, no *")
        users = improv.loc[improv["dataset"] == dataset, "users"]
        if len(users) and users.min() == 0:
            notes.append(f"{label}: MENTOR's or the best baseline's runs kept no per-user test values (stored by "
                         "mentor_ray before 0.3, or search trials only); no test over users, * from the t-test alone")
        for title, variants in ABLATIONS.values():
            if not set(m["variant"]) & (set(variants) - {"mentor"}):
                notes.append(f"{label}: no ablation runs of {', '.join(variants[:-1])}; no '{title}' table")
    return notes


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
                      formats: str | Sequence[str] = FORMATS, *, returns: str = "md") -> str:
    """Read the store under ``results_dir``, write the leaderboard under ``out_dir``; its Markdown (``returns``
    ``"text"``: as plain text, for a terminal)."""
    chosen_formats = parse_formats(formats)
    runs = load_runs(results_dir)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise MentorRayError(f"--out {out}: is a file, not a directory; give a directory (or a new path)")
    counts = training_counts_of(select_final(runs))  # each dataset Fig. 6 needs, loaded once for table and plot
    board = build_board(runs, str(results_dir), counts)  # what depends on the store's content, before any write
    created = [p for p in (out, *out.parents) if not p.exists()]  # the folders this call makes, outermost last
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise MentorRayError(f"--out {out}: cannot create the output directory ({exc.strerror})") from exc
    try:
        board.plots, plot_notes = write_plots(runs, out, counts)
        board.notes += plot_notes
        rendered = {fmt: render_board(board, fmt) for fmt in {*chosen_formats, "md", returns} - {"csv"}}
        for fmt in chosen_formats:
            if fmt == "csv":
                for name, frame in board.frames.items():
                    write_atomic(out / "csv" / f"{name}.csv", frame.to_csv(index=False))
                kill_point("driver-leaderboard")  # fault campaign: the driver killed with the leaderboard half written
            else:
                write_atomic(out / f"leaderboard.{fmt}", rendered[fmt])
    except BaseException:
        if created:  # a leaderboard that failed half-way leaves no folder of its own behind (one it was given stays)
            shutil.rmtree(created[-1], ignore_errors=True)
        raise
    log.info("leaderboard (%s) and %d plot(s) written under %s", ", ".join(chosen_formats), len(board.plots), out)
    return rendered[returns]
