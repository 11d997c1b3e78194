"""The leaderboard's plots (matplotlib): sensitivity heatmaps (Fig. 7), the λ_align plot (Fig. 5), validation curves,
the alignment variants (Fig. 3), test Recall@20 per user-sparsity group (Fig. 6) and the item embeddings' t-SNE
maps (Fig. 4, :mod:`mentor_ray.report.embedding_plot`).

Every plot is computed as data first (:func:`cell_frame`, :func:`align_frame`, :func:`curve_frame`,
:func:`alignment_frame`, :func:`sparsity_frame`), then drawn; the data functions are the tested part. Fig. 3 and
Fig. 6 show test values of the runs Table 2 uses (as the paper's figures do); every other plot shows validation
values only. The rules that keep a figure honest:

- each figure and caption says what it shows: runs, configurations and seeds, the metric and split, and which
  searched axes a value is the best over (a heatmap cell is the best configuration of the axes not shown);
- seed noise: σ is the standard deviation over seeds of validation Recall@20 of MENTOR's final runs of the
  dataset (:func:`seed_noise`; :data:`DEFAULT_NOISE` with fewer than 2 seeds, and the caption says which). A
  heatmap's colour scale spans at least :data:`SPAN_WIDTHS` σ below the best cell, and the cells within
  :data:`NOISE_WIDTHS` σ of the best are outlined as not distinguishable from it; the λ_align plot shades
  that band and its y axis spans at least :data:`SPAN_WIDTHS` σ;
- a line joins only points that differ in the plotted axis alone (every other setting equal: one line per
  fixed configuration), each point the mean over its runs with a min-max bar where there are several;
- runs stopped early (status ``stopped_early``) are shown as stopped (hatched cell or hollow point: what
  stopped them, the epoch they stopped at and their best value so far), never blank and never mixed with
  completed runs' values; what stopped them is :func:`~mentor_ray.report.select.stopped_by`: ASHA or the
  budget, as the store records it (stores before 0.5.1: ASHA where their search had no budget, else "ASHA or
  budget");
- a sensitivity plot is drawn only from at least 2 completed runs at 2 or more values of each plotted axis
  (:func:`_too_few`); otherwise a note says how many completed runs there are;
- the same store gives the same figures: runs are de-duplicated by run id (the newest, as the store keeps)
  and sorted by run id before any grouping, and PNGs are written without a software or date stamp.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from mentor_ray.common.config import BASELINES, result_settings
from mentor_ray.common.io import write_atomic
from mentor_ray.common.registry import entry_of
from mentor_ray.report import embedding_plot, paired
from mentor_ray.report.board import Plot, missing
from mentor_ray.report.figtext import _titles, caption_text, drawn_text, subtitle_text  # noqa: F401 (re-exported)
from mentor_ray.report.select import (
    ABLATIONS,
    ASHA,
    ASHA_AND_BUDGET,
    ASHA_OR_BUDGET,
    AXIS_LABELS,
    BUDGET,
    SENSITIVITY,
    VALID,
    TrainCounts,
    dataset_labels,
    dataset_order,
    display,
    parse_json,
    searched_keys,
    select_final,
    space_axes,
    stop_reasons,
    stopped_by,
    training_counts,
    undertrained,
    user_values,
    variant_order,
)

COMPLETED = "completed"  # a run trained to its own early stopping or its epoch budget (not stopped by ASHA)
METRIC = "validation Recall@20"  # what the search and curve plots show (the valid split; never test)
DEFAULT_NOISE = 0.005  # σ assumed when fewer than 2 final seeds measure it
NOISE_WIDTHS = 2.0  # a gap to the best within this many σ is not told apart from the best
SPAN_WIDTHS = 6.0  # a colour scale (a y axis) spans at least this many σ
MAX_LINES = 8  # configurations of the λ_align plot with their own colour and legend entry; the rest grey
PNG_METADATA = {"Software": None}  # no matplotlib version in the file: same inputs, same bytes
PLOT_NOTE = (
    "Plots: the sensitivity heatmaps, the lambda_align plot and the validation curves show validation Recall@20 "
    "(the valid split, never test); Fig. 3 (alignment variants) and Fig. 6 (user-sparsity groups) show test values "
    "of the runs Table 2 uses, as the paper's figures do, each caption saying what its bars and whiskers are. "
    "Sensitivity heatmaps (Fig. 7): "
    "MENTOR's search runs; a cell is the best configuration of the searched axes not shown (each configuration "
    "the mean over its completed runs), with its value and run count n; cells whose runs were all stopped early "
    "are hatched with what stopped them (ASHA or the search budget, as recorded; in a store written before 0.5.1, "
    "which does not record it: ASHA where the search had no budget, else ASHA or the budget), the epoch they "
    "stopped at and their best value so far; a plot needs completed "
    "runs at 2 or more values of each of its axes, else a note says how many there are. Colour scales "
    f"span at least {SPAN_WIDTHS:g} sigma below the best cell, and cells within {NOISE_WIDTHS:g} sigma of the best "
    "are outlined (not distinguishable from it); sigma is the std over seeds of MENTOR's final runs of the "
    f"dataset, or {DEFAULT_NOISE:g} when fewer than 2 seeds ran (each caption says which). lambda_align (Fig. 5): "
    "one line per configuration of the other settings, so a line joins only runs that differ in lambda_align; "
    "bars are min-max over runs; hollow points are stopped runs. Validation curves: MENTOR and the best baseline "
    "(by mean validation Recall@20 of the chosen final runs), mean over seeds with a min-max band.")


# --------------------------------------------------------------------------- the runs a plot uses


def once_per_run(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with one row per run id, sorted by run id: what every plot groups, whatever the order its rows
    (or the store's files) came in. The store keeps the newest copy of a run written twice (a trial resumed
    in a second attempt); here too: the latest ``finished_at``, ties broken by the row's content."""
    if runs.empty or "run_id" not in runs:
        return runs.reset_index(drop=True)
    order = [c for c in ("run_id", "finished_at", "status", VALID, "epochs_run", "config_json") if c in runs]
    ranked = runs.sort_values(order, kind="mergesort", na_position="first")
    return ranked.drop_duplicates("run_id", keep="last").reset_index(drop=True)


def search_scores(runs: pd.DataFrame, dataset: str, axes: Sequence[str] = ()) -> pd.DataFrame:
    """The dataset's MENTOR search runs with a validation Recall@20, completed or stopped early (a failed run
    has none), one row per run id in run id order; a baseline's own search (its grid has other axes) is left
    out of MENTOR's plots.

    With ``axes``, only the runs of sweeps that searched every one of them (their space's axes, ``space_axes``;
    for runs stored without it, the settings that differ between the sweep's runs): a later stage that searched
    other settings (e.g. ``mentor_lr_reg`` at a first sweep's best point) would otherwise add its trials, trained
    at other learning rates, to one cell of the plot. A sweep that searched an axis but tried one value of it is
    kept, so that the plot can say so (:func:`_too_few`)."""
    s = once_per_run(runs)
    s = s[(s["dataset"] == dataset) & (s["role"] == "search") & (s["status"] != "failed") & (s["variant"] == "mentor")]
    s = s[s[VALID].notna()]
    if axes and len(s):
        keep = [g for _, g in s.groupby("sweep", dropna=False, sort=True)
                if set(axes) <= set(space_axes(g) or searched_keys(g))]
        s = pd.concat(keep).sort_values("run_id", kind="mergesort") if keep else s.iloc[:0]
    return s.reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class Noise:
    """σ of one run's validation Recall@20: measured over ``seeds`` final runs, or :data:`DEFAULT_NOISE`."""

    std: float
    seeds: int
    measured: bool

    def describe(self) -> str:
        if self.measured:
            return f"sigma = {self.std:.4f}: std over the {self.seeds} seeds of MENTOR's final runs"
        return (f"sigma = {self.std:.4f}: a default, not measured ({self.seeds} final MENTOR seed"
                f"{'' if self.seeds == 1 else 's'}, fewer than 2)")


def seed_noise(runs: pd.DataFrame, dataset: str, variant: str = "mentor") -> Noise:
    """The spread between seeds of validation Recall@20 at one configuration: the sample std over the seeds of
    ``variant``'s final runs on ``dataset`` (the configuration the leaderboard chose, :func:`select_final`);
    :data:`DEFAULT_NOISE` when fewer than 2 seeds ran."""
    chosen = select_final(once_per_run(runs))
    finals = chosen[(chosen["dataset"] == dataset) & (chosen["variant"] == variant) & (chosen["role"] == "final")]
    values = finals.sort_values("seed")[VALID].astype(float).to_numpy()
    if len(values) < 2:
        return Noise(DEFAULT_NOISE, len(values), False)
    return Noise(float(np.std(values, ddof=1)), len(values), True)


def _seeds_text(frame: pd.DataFrame) -> str:
    seeds = sorted(int(s) for s in frame["seed"].dropna().unique())
    if not seeds:
        return "no seed"
    shown = ", ".join(map(str, seeds[:6])) + (", ..." if len(seeds) > 6 else "")
    return f"seed{'s' if len(seeds) > 1 else ''} {shown}"


def _runs_text(scored: pd.DataFrame) -> str:
    done = int((scored["status"] == COMPLETED).sum())
    stopped = len(scored) - done
    configs = scored["config_hash"].nunique()
    cut = int(undertrained(scored).sum())
    capped = f" ({cut} of them under-trained: stopped by the epoch cap while still improving)" if cut else ""
    return (f"{len(scored)} search run{'s' if len(scored) != 1 else ''} ({done} completed{capped}, {stopped} stopped "
            f"early), {configs} configuration{'s' if configs != 1 else ''}, {_seeds_text(scored)}")


def _stopped_label(stopped: pd.DataFrame) -> str:
    """What stopped these runs stopped early (:func:`~mentor_ray.report.select.stopped_by`); "" when none."""
    return stopped_by(stop_reasons(stopped)) if len(stopped) else ""


def _stopped_text(scored: pd.DataFrame) -> str:
    """Who stopped the runs of a plot that stopped early, as a caption's words."""
    label = _stopped_label(scored[scored["status"] != COMPLETED])
    return {ASHA: "stopped early by ASHA", BUDGET: "stopped by the search budget running out",
            ASHA_AND_BUDGET: "stopped early by ASHA or by the search budget (some by each)",
            ASHA_OR_BUDGET: "stopped early by ASHA or by the search budget (a store written before 0.5.1 does "
                            "not record which)"}.get(label, "stopped early")


def _stopped_best(stopped: pd.DataFrame) -> tuple[float, float]:
    """(best validation Recall@20 so far, epoch it stopped at) of the best of ``stopped``; NaN when none."""
    if stopped.empty:
        return math.nan, math.nan
    best = stopped.sort_values([VALID, "run_id"], ascending=[False, True], kind="mergesort").iloc[0]
    epochs = best.get("epochs_run")
    return float(best[VALID]), math.nan if missing(epochs) else float(epochs)


# --------------------------------------------------------------------------- sensitivity heatmaps


def cell_frame(scored: pd.DataFrame, x: str, y: str, noise: Noise | None = None) -> pd.DataFrame:
    """What a sensitivity heatmap draws: one row per (y, x) cell over every value a scored run has, y then x
    ascending. ``value``: the best configuration of the other axes, each configuration the mean of its
    completed runs (NaN where none completed); ``runs`` and ``configs``: the completed runs and configurations
    in the cell; ``stopped``: its runs stopped early, ``stopped_best`` / ``stopped_epoch`` the best of them (its
    best value so far, the epoch it stopped at), ``stopped_by`` what stopped them (:func:`_stopped_label`, "" for
    none); ``gap``: the best cell's value minus this one's;
    ``within_noise``: ``gap`` within :data:`NOISE_WIDTHS` σ (``noise``; default :data:`DEFAULT_NOISE`)."""
    noise = noise or Noise(DEFAULT_NOISE, 0, False)
    scored = scored.sort_values("run_id", kind="mergesort")
    xs, ys = sorted(scored[x].dropna().unique()), sorted(scored[y].dropna().unique())
    rows = []
    for yv in ys:
        for xv in xs:
            cell = scored[(scored[y] == yv) & (scored[x] == xv)]
            done = cell[cell["status"] == COMPLETED]
            means = done.groupby("config_hash", sort=True)[VALID].mean()
            stopped = cell[cell["status"] != COMPLETED]
            best, epoch = _stopped_best(stopped)
            rows.append({y: float(yv), x: float(xv), "value": float(means.max()) if len(means) else math.nan,
                         "runs": len(done), "configs": len(means), "stopped": len(stopped),
                         "stopped_best": best, "stopped_epoch": epoch, "stopped_by": _stopped_label(stopped)})
    frame = pd.DataFrame(rows, columns=[y, x, "value", "runs", "configs", "stopped", "stopped_best", "stopped_epoch",
                                        "stopped_by"])
    top = frame["value"].max()
    frame["gap"] = top - frame["value"]
    frame["within_noise"] = frame["gap"] <= NOISE_WIDTHS * noise.std + 1e-12  # NaN gap: False
    return frame


def sensitivity_grid(scored: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """:func:`cell_frame`'s values as a grid: rows y, columns x; NaN where no run completed."""
    cells = cell_frame(scored, x, y)
    grid = cells.pivot(index=y, columns=x, values="value")
    return grid.reindex(index=sorted(cells[y].unique()), columns=sorted(cells[x].unique()))


def stopped_only_cells(scored: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """True where a cell of :func:`sensitivity_grid` has runs, all of them stopped early."""
    cells = cell_frame(scored, x, y).assign(only=lambda c: (c["runs"] == 0) & (c["stopped"] > 0))
    return cells.pivot(index=y, columns=x, values="only").reindex_like(sensitivity_grid(scored, x, y)).astype(bool)


def colour_range(values: Sequence[float] | np.ndarray, noise: Noise) -> tuple[float, float]:
    """(vmin, vmax) of a heatmap: from the best value down by its range, and by at least :data:`SPAN_WIDTHS` σ,
    so that cells within seed noise of each other never span the colour map."""
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return 0.0, 1.0
    best = float(finite.max())
    span = max(best - float(finite.min()), SPAN_WIDTHS * noise.std)
    return best - (span if span > 0 else 1e-4), best


def _hidden(scored: pd.DataFrame, shown: Sequence[str]) -> list[str]:
    return [k for k in searched_keys(scored) if k not in shown]


def heatmap_caption(scored: pd.DataFrame, x: str, y: str, noise: Noise) -> list[str]:
    """What a sensitivity heatmap shows, as sentences (:func:`caption_text`, :func:`subtitle_text`)."""
    hidden = _hidden(scored, (x, y))
    over = (f"the best over {', '.join(hidden)} (each configuration: the mean of its completed runs)" if hidden
            else "the mean of its completed runs (no other axis was searched)")
    return [f"each cell: {METRIC} (valid split), {over}; n = completed runs in the cell",
            _runs_text(scored),
            f"colours span at least {SPAN_WIDTHS:g} sigma below the best cell; dashed outline: within "
            f"{NOISE_WIDTHS:g} sigma of the best (not distinguishable from it by seed noise)",
            noise.describe(),
            f"hatched: every run of the cell {_stopped_text(scored)}, with the epoch it stopped at and its best "
            "value so far"]


def heatmap_figure(cells: pd.DataFrame, x: str, y: str, title: str, subtitle: str, noise: Noise):
    """:func:`cell_frame` ``cells`` as a heatmap (``title`` and ``subtitle`` drawn as given)."""
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    xs, ys = sorted(cells[x].unique()), sorted(cells[y].unique())
    data = cells.pivot(index=y, columns=x, values="value").reindex(index=ys, columns=xs).to_numpy(float)
    vmin, vmax = colour_range(data.ravel(), noise)
    fig = Figure(figsize=(max(6.2, 1.25 * len(xs) + 2.6), max(4.2, 0.9 * len(ys) + 2.6)))
    ax = fig.subplots()
    norm = Normalize(vmin=vmin, vmax=vmax)
    im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", norm=norm, origin="lower", aspect="auto")
    ax.set_facecolor("white")
    ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylim(-0.5, len(ys) - 0.5)
    top = np.nanmax(data) if np.isfinite(data).any() else math.nan
    for r in cells.itertuples(index=False):
        c = cells.columns.get_loc
        i, j = ys.index(r[c(y)]), xs.index(r[c(x)])
        if not math.isnan(r.value):
            dark = norm(r.value) > 0.6
            extra = f"\n+{r.stopped} stopped" if r.stopped else ""
            ax.text(j, i, f"{r.value:.4f}\nn={r.runs}{extra}", ha="center", va="center", fontsize=8,
                    color="black" if dark else "white", fontweight="bold" if r.value == top else "normal")
            if r.within_noise:
                ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, edgecolor="crimson",
                                       linewidth=2, linestyle="--"))
        elif r.stopped:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.9", edgecolor="0.6", hatch="///",
                                   linewidth=0))
            epoch = "" if math.isnan(r.stopped_epoch) else f"\nat epoch {int(r.stopped_epoch)}"
            who = "" if r.stopped_by in ("", "stopped early") else f" by {r.stopped_by}"
            who = who.replace(" or ", "\nor ").replace(" and ", "\nand ")
            ax.text(j, i, f"stopped{who}{epoch}\nbest so far\n{r.stopped_best:.4f}\n({r.stopped} run"
                    f"{'s' if r.stopped > 1 else ''})", ha="center", va="center", fontsize=7, color="0.15",
                    bbox={"facecolor": "0.9", "edgecolor": "none", "pad": 1.5})
        else:
            ax.text(j, i, "not run", ha="center", va="center", fontsize=7, color="0.45", style="italic")
    ax.set(xlabel=AXIS_LABELS.get(x, x), ylabel=AXIS_LABELS.get(y, y))
    _titles(ax, title, subtitle)
    bar = fig.colorbar(im, ax=ax, label=f"{METRIC} (completed runs)")
    if np.isfinite(top):
        band = NOISE_WIDTHS * noise.std
        bar.ax.axhspan(max(top - band, vmin), top, facecolor="none", edgecolor="crimson", hatch="..", linewidth=1)
        bar.ax.text(1.1, 1.0, f"{NOISE_WIDTHS:g}σ", transform=bar.ax.transAxes, fontsize=7, color="crimson",
                    va="bottom", ha="left")
    return fig


# --------------------------------------------------------------------------- the λ_align plot


def _fixed_key(text: object, config_hash: str, axis: str) -> str:
    """Every result setting of a run but ``axis``, as text: the runs that share it differ in ``axis`` alone.
    A run without a readable config is its own configuration (joined with no other)."""
    config = parse_json(text, dict)
    if config is None:
        return f"config_hash={config_hash}"
    return json.dumps({k: v for k, v in result_settings(config).items() if k != axis}, sort_keys=True, default=str)


def align_frame(scored: pd.DataFrame, axis: str = "lambda_align") -> pd.DataFrame:
    """What the λ_align plot draws: one row per (fixed configuration, ``axis`` value), every setting but ``axis``
    equal within a configuration (``fixed``; ``label`` names it by the other searched axes). ``mean``,
    ``low``, ``high``, ``runs``: over the completed runs of that point (NaN where none); ``stopped``,
    ``stopped_best``, ``stopped_epoch``, ``stopped_by``: its runs stopped early (as in :func:`cell_frame`).
    ``line``: whether the point is on its configuration's line (completed, and the configuration has at least 2
    completed values of ``axis``). Configurations are ordered by their best mean (then label), points by ``axis``."""
    cols = ["fixed", "label", axis, "mean", "low", "high", "runs", "stopped", "stopped_best", "stopped_epoch",
            "stopped_by", "line"]
    scored = scored[scored[axis].notna()].sort_values("run_id", kind="mergesort")
    if scored.empty:
        return pd.DataFrame(columns=cols)
    fixed = [_fixed_key(t, h, axis) for t, h in zip(scored["config_json"], scored["config_hash"])]
    scored = scored.assign(_fixed=fixed)
    others = _hidden(scored, (axis,))
    labels: dict[str, str] = {}
    for key, g in scored.groupby("_fixed", sort=True):
        first = g.iloc[0]
        labels[key] = ", ".join(f"{k}={_number(first.get(k), parse_json(first['config_json'], dict), k)}"
                                for k in others) or "the other settings fixed"
    if len(set(labels.values())) < len(labels):  # two configurations alike on the searched axes: tell them apart
        labels = {k: f"{v} [{g['config_hash'].iloc[0][:6]}]" for (k, g), v in
                  zip(scored.groupby("_fixed", sort=True), labels.values())}
    rows = []
    for (key, value), g in scored.groupby(["_fixed", axis], sort=True):
        done = g[g["status"] == COMPLETED][VALID].astype(float)
        stopped = g[g["status"] != COMPLETED]
        best, epoch = _stopped_best(stopped)
        rows.append({"fixed": key, "label": labels[key], axis: float(value),
                     "mean": float(done.mean()) if len(done) else math.nan,
                     "low": float(done.min()) if len(done) else math.nan,
                     "high": float(done.max()) if len(done) else math.nan, "runs": len(done),
                     "stopped": len(stopped), "stopped_best": best, "stopped_epoch": epoch,
                     "stopped_by": _stopped_label(stopped)})
    frame = pd.DataFrame(rows)
    completed = frame[frame["runs"] > 0].groupby("fixed")[axis].nunique()
    frame["line"] = (frame["runs"] > 0) & frame["fixed"].map(lambda k: completed.get(k, 0) >= 2)
    best = frame.groupby("fixed")["mean"].max().fillna(-math.inf)
    rank = frame.assign(_best=frame["fixed"].map(best)).sort_values(["_best", "label", "fixed", axis],
                                                                     ascending=[False, True, True, True],
                                                                     kind="mergesort")
    return rank[cols].reset_index(drop=True)


def _number(value: object, config: dict | None, key: str) -> str:
    """A setting's value of a run: its column, else its config."""
    if missing(value) and config is not None:
        value = config.get(key)
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def align_points(scored: pd.DataFrame) -> tuple[pd.Series, list[float]]:
    """The best completed configuration's mean per lambda_align value, and the values only stopped runs
    reached (a summary for tests; the plot draws :func:`align_frame`)."""
    frame = align_frame(scored)
    done = frame[frame["runs"] > 0]
    series = done.groupby("lambda_align")["mean"].max().sort_index()
    return series, sorted(set(frame["lambda_align"]) - set(series.index))


def align_caption(scored: pd.DataFrame, frame: pd.DataFrame, noise: Noise, axis: str = "lambda_align") -> list[str]:
    """What the λ_align plot shows, as sentences (:func:`caption_text`, :func:`subtitle_text`)."""
    others = _hidden(scored, (axis,))
    configs = frame["fixed"].nunique()
    lines = frame.loc[frame["line"], "fixed"].nunique()
    per = (f"one line per configuration of {', '.join(others)}: a line joins runs that differ in {axis} only, "
           "nothing is maximised over" if others else f"the runs differ in {axis} only")
    return [f"{METRIC} (valid split) against {axis}; {per}",
            f"{lines} of {configs} configuration{'s' if configs != 1 else ''} have 2 or more completed values to "
            "join, the others are single points",
            _runs_text(scored),
            f"points: the mean of the completed runs, bars min-max where n > 1; hollow: {_stopped_text(scored)}, "
            "at its best value so far",
            f"shaded: within {NOISE_WIDTHS:g} sigma of the best point; the y axis spans at least {SPAN_WIDTHS:g} "
            f"sigma; {noise.describe()}"]


def align_figure(frame: pd.DataFrame, title: str, subtitle: str, noise: Noise, axis: str = "lambda_align"):
    """:func:`align_frame` ``frame`` as points and lines; every line's ``gid`` is its configuration's key."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = Figure(figsize=(7.4, 4.4))
    ax = fig.subplots()
    keys = list(dict.fromkeys(frame["fixed"]))
    lows, highs, handles = [], [], []
    epochs = set(frame.loc[frame["stopped"] > 0, "stopped_epoch"].dropna().astype(int))
    one_epoch = next(iter(epochs)) if len(epochs) == 1 else None  # then said once, in the legend
    for n, key in enumerate(keys):
        pts = frame[frame["fixed"] == key]
        colour = f"C{n % 10}" if n < MAX_LINES else "0.6"
        done = pts[pts["runs"] > 0]
        on = done[done["line"]]
        if len(on) >= 2:
            ax.plot(on[axis], on["mean"], "-", color=colour, linewidth=1.4, gid=key, zorder=2)
        if n < MAX_LINES or n == MAX_LINES:
            label = (drawn_text(pts["label"].iloc[0]) if n < MAX_LINES else
                     f"{len(keys) - MAX_LINES} other configuration{'s' if len(keys) - MAX_LINES > 1 else ''}")
            handles.append(Line2D([], [], color=colour, marker="o", markersize=5, label=label,
                                  linestyle="-" if len(on) >= 2 or n >= MAX_LINES else "none"))
        ax.plot(done[axis], done["mean"], "o", color=colour, markersize=5, linestyle="none", zorder=3)
        several = done[done["runs"] > 1]
        if len(several):
            err = np.vstack([several["mean"] - several["low"], several["high"] - several["mean"]])
            ax.errorbar(several[axis], several["mean"], yerr=err, fmt="none", ecolor=colour, capsize=3, zorder=3)
            for r in several.itertuples(index=False):
                ax.annotate(f"n={r.runs}", (getattr(r, axis), r.mean), textcoords="offset points", xytext=(5, 4),
                            fontsize=7, color=colour)
        lows += list(done["low"])
        highs += list(done["high"])
        stopped = pts[pts["stopped"] > 0]
        if len(stopped):
            ax.plot(stopped[axis], stopped["stopped_best"], "o", markerfacecolor="white", markeredgecolor=colour,
                    markersize=6, linestyle="none", zorder=3)
            lows += list(stopped["stopped_best"])
            highs += list(stopped["stopped_best"])
            for r in stopped.itertuples(index=False) if one_epoch is None else ():
                epoch = "" if math.isnan(r.stopped_epoch) else f" ep {int(r.stopped_epoch)}"
                ax.annotate(f"stopped{epoch}", (getattr(r, axis), r.stopped_best), textcoords="offset points",
                            xytext=(6, 2), fontsize=7, color="0.35", style="italic")
    if (frame["stopped"] > 0).any():
        when = "" if one_epoch is None else f" at epoch {one_epoch}"
        labels = frame.loc[frame["stopped"] > 0, "stopped_by"] if "stopped_by" in frame else pd.Series(dtype=object)
        who = stopped_by(labels)
        who = "stopped early" if who == "stopped early" else f"stopped by {who}"
        handles.append(Line2D([], [], marker="o", markerfacecolor="white", markeredgecolor="0.3", linestyle="none",
                              markersize=6, label=f"{who}{when}: best so far"))
    done = frame[frame["runs"] > 0]
    if len(done):
        top = float(done["mean"].max())
        ax.axhspan(top - NOISE_WIDTHS * noise.std, top, color="0.5", alpha=0.15, linewidth=0, zorder=1)
        handles.append(Patch(color="0.5", alpha=0.15, label=f"within {NOISE_WIDTHS:g}σ of the best"))
        lows.append(top - NOISE_WIDTHS * noise.std)
    lo, hi = (min(lows), max(highs)) if lows and highs else (0.0, 1.0)
    span = max(hi - lo, SPAN_WIDTHS * noise.std)
    pad = 0.12 * span
    mid = (lo + hi) / 2
    ax.set_ylim(mid - span / 2 - pad, mid + span / 2 + pad)
    ticks = sorted(frame[axis].unique())
    if len(ticks) > 2 and min(ticks) > 0 and max(ticks) / min(ticks) >= 100:
        ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.minorticks_off()
    if len(ticks) > 1 and ax.get_xscale() == "log":
        ratio = (max(ticks) / min(ticks)) ** 0.15
        ax.set_xlim(min(ticks) / ratio, max(ticks) * ratio)
    elif len(ticks) > 1:
        width = max(ticks) - min(ticks)
        ax.set_xlim(min(ticks) - 0.15 * width, max(ticks) + 0.15 * width)
    ax.set(xlabel=AXIS_LABELS.get(axis, axis), ylabel=f"{METRIC}")
    _titles(ax, title, subtitle)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return fig


# --------------------------------------------------------------------------- validation curves


def best_baseline(chosen: pd.DataFrame, dataset: str) -> str | None:
    """The dataset's best baseline as the leaderboard chooses runs (:func:`select_final`): the highest mean
    validation Recall@20 over its chosen runs' seeds (validation only), ties to the table's row order."""
    rows = chosen[(chosen["dataset"] == dataset) & chosen["variant"].isin(BASELINES)]
    if rows.empty:
        return None
    score = rows.groupby("variant")[VALID].mean()
    order = variant_order(score.index)
    return max(order, key=lambda v: (score[v], -order.index(v)))


def curve_runs(chosen: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The chosen final runs the curves plot draws: MENTOR's and the best baseline's, with a validation curve,
    MENTOR first, then by seed."""
    base = best_baseline(chosen, dataset)
    shown = ["mentor"] + ([base] if base else [])
    rows = chosen[(chosen["dataset"] == dataset) & chosen["variant"].isin(shown)]
    rows = rows.loc[rows["valid_curve"].map(_has_curve).astype(bool)]
    rows = rows.assign(_order=rows["variant"].map(shown.index))
    rows = rows.sort_values(["_order", "seed", "run_id"], kind="mergesort")
    return rows.drop(columns="_order").reset_index(drop=True)


def _has_curve(curve: object) -> bool:
    """Whether a ``valid_curve`` value holds a value (None, NaN or an empty list: not)."""
    try:
        return curve is not None and len(curve) > 0
    except TypeError:  # NaN, where a frame holds no list
        return False


def curve_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per variant of ``runs`` (:func:`curve_runs`) and epoch (from 1): the mean, min and max of the validation
    curve over the seeds that trained that epoch (``seeds``) and ``all_seeds``, the variant's seed count."""
    rows = []
    for variant in dict.fromkeys(runs["variant"]):
        curves = [np.asarray(c, float) for c in runs.loc[runs["variant"] == variant, "valid_curve"]]
        for epoch in range(max(len(c) for c in curves)):
            vals = np.array([c[epoch] for c in curves if len(c) > epoch])
            rows.append({"variant": variant, "epoch": epoch + 1, "mean": float(vals.mean()), "low": float(vals.min()),
                         "high": float(vals.max()), "seeds": len(vals), "all_seeds": len(curves)})
    return pd.DataFrame(rows, columns=["variant", "epoch", "mean", "low", "high", "seeds", "all_seeds"])


def best_points(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's best epoch (from 1) and value on its curve; runs without a usable ``best_epoch`` left out."""
    rows = []
    for r in runs.itertuples(index=False):
        curve, best = list(r.valid_curve), r.best_epoch
        if not missing(best) and 0 <= int(best) < len(curve):
            rows.append({"variant": r.variant, "seed": int(r.seed), "epoch": int(best) + 1, "value": curve[int(best)]})
    return pd.DataFrame(rows, columns=["variant", "seed", "epoch", "value"])


def curves_caption(runs: pd.DataFrame, base: str | None) -> list[str]:
    """What the curves plot shows, as sentences (:func:`caption_text`, :func:`subtitle_text`)."""
    counts = runs.groupby("variant", sort=False)["seed"].nunique()
    parts = [f"{display(v)}{' (best baseline by mean validation Recall@20)' if v == base else ''}: "
             f"{counts[v]} seed{'s' if counts[v] != 1 else ''}" for v in counts.index]
    missing_ = [] if "mentor" in counts else ["MENTOR: no final run with a curve"]
    if base is None:
        missing_.append("no baseline run on this dataset")
    elif base not in counts:
        missing_.append(f"best baseline {display(base)}: no recorded curve")
    return [f"{METRIC} (valid split) after each epoch (from 1) of the chosen final runs",
            "; ".join(parts + missing_),
            "line: the mean over the seeds still training at that epoch (dotted once some have stopped); band: "
            "min-max over them; dots: each seed's best epoch"]


def curves_figure(runs: pd.DataFrame, title: str, subtitle: str):
    """:func:`curve_frame` of ``runs`` as mean lines with min-max bands and each seed's best epoch."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    frame, best = curve_frame(runs), best_points(runs)
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.subplots()
    for n, variant in enumerate(dict.fromkeys(frame["variant"])):
        f = frame[frame["variant"] == variant]
        colour = f"C{n}"
        name = drawn_text(display(variant)) + ("" if variant == "mentor" else " (best baseline)")
        seeds = int(f["all_seeds"].iloc[0])
        full = f[f["seeds"] == seeds]
        ax.plot(full["epoch"], full["mean"], "-", color=colour, linewidth=1.6,
                label=f"{name}: mean of {seeds} seed{'s' if seeds != 1 else ''}")
        rest = f[f["epoch"] >= (full["epoch"].max() if len(full) else 0)]
        if len(rest) > 1:
            ax.plot(rest["epoch"], rest["mean"], ":", color=colour, linewidth=1.4)
        if seeds > 1:
            ax.fill_between(f["epoch"], f["low"], f["high"], color=colour, alpha=0.18, linewidth=0,
                            label=f"{name}: min-max over seeds")
        b = best[best["variant"] == variant]
        ax.plot(b["epoch"], b["value"], "o", color=colour, markersize=4, linestyle="none")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=METRIC)
    _titles(ax, title, subtitle)
    ax.legend(fontsize=7, loc="lower right")
    return fig


# --------------------------------------------------------------------------- Fig. 3: multilevel cross-modal alignment

ALIGNMENT = ABLATIONS["ablation_alignment"][1]  # MENTOR_base, MENTOR_L1, MENTOR_L2, MENTOR (the paper's order)
FIGURE_KEYS = {"test_recall@20": "Recall@20", "test_ndcg@20": "NDCG@20"}  # Fig. 3's metrics (test split)
TEST = "test split, at each run's best validation epoch"


def alignment_frame(chosen: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """What Fig. 3 draws: a row per metric of :data:`FIGURE_KEYS` and variant of :data:`ALIGNMENT` (every one,
    ``seeds`` 0 where it has no run), over the runs Table 2 and the ablation table use (``chosen``:
    :func:`select_final`, one configuration per variant chosen on validation): ``mean`` and ``std``, the sample
    std over seeds (NaN with fewer than 2), and the ``seed_list`` and their ``values``, in seed order."""
    d = chosen[chosen["dataset"] == dataset].sort_values(["seed", "run_id"], kind="mergesort")
    rows = []
    for key, label in FIGURE_KEYS.items():
        for variant in ALIGNMENT:
            g = d[(d["variant"] == variant) & d[key].notna()]
            values = g[key].astype(float).to_numpy()
            rows.append({"dataset": dataset, "metric": key, "label": label, "variant": variant,
                         "model": display(variant), "seeds": len(values),
                         "mean": float(values.mean()) if len(values) else math.nan,
                         "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                         "seed_list": tuple(int(s) for s in g["seed"]), "values": tuple(float(v) for v in values)})
    return pd.DataFrame(rows, columns=["dataset", "metric", "label", "variant", "model", "seeds", "mean", "std",
                                       "seed_list", "values"])


def alignment_missing(frame: pd.DataFrame) -> list[str]:
    """The variants of :data:`ALIGNMENT` without a run in ``frame`` (:func:`alignment_frame`)."""
    ran = set(frame.loc[frame["seeds"] > 0, "variant"])
    return [v for v in ALIGNMENT if v not in ran]


def alignment_reason(frame: pd.DataFrame) -> str | None:
    """Why Fig. 3 is not drawn (fewer than 2 of the 4 variants ran), or None."""
    gone = alignment_missing(frame)
    if len(ALIGNMENT) - len(gone) >= 2:
        return None
    ran = len(ALIGNMENT) - len(gone)
    return (f"{ran} of the {len(ALIGNMENT)} alignment variants {'has' if ran == 1 else 'have'} a final or ablation "
            f"run (missing: {', '.join(display(v) for v in gone)}); need at least 2")


def alignment_caption(frame: pd.DataFrame) -> list[str]:
    """What Fig. 3 shows, as sentences (:func:`caption_text`, :func:`subtitle_text`)."""
    ran = frame[(frame["metric"] == next(iter(FIGURE_KEYS))) & (frame["seeds"] > 0)]
    seeds = "; ".join(f"{r.model}: {r.seeds} seed{'s' if r.seeds != 1 else ''} "
                      f"({', '.join(map(str, r.seed_list[:6]))}{', ...' if r.seeds > 6 else ''})"
                      for r in ran.itertuples())
    gone = alignment_missing(frame)
    return [f"test {' and '.join(FIGURE_KEYS.values())} ({TEST}) of MENTOR without the alignment task (base), with "
            "level 1 (L1), levels 1-2 (L2) and all three levels (full MENTOR): the runs Table 2 and the ablation "
            "table use (final/ablation runs, one configuration per model chosen on mean validation Recall@20)",
            seeds + (f"; not run: {', '.join(display(v) for v in gone)}" if gone else ""),
            "bar: mean over seeds; whisker: ± sample std over seeds (none with one seed); dots: the seeds; each "
            "panel's y axis is cut to the values' range (it does not start at 0)"]


def alignment_figure(frame: pd.DataFrame, title: str, subtitle: str):
    """:func:`alignment_frame` as one panel per metric: a bar per variant that ran (mean), ± std whiskers and
    the seeds as dots."""
    from matplotlib.figure import Figure

    ran = [v for v in ALIGNMENT if v not in alignment_missing(frame)]
    fig = Figure(figsize=(max(7.6, 2.0 * len(ran) + 2.0), 4.2))
    axes = fig.subplots(1, len(FIGURE_KEYS))
    for ax, (key, label) in zip(axes, FIGURE_KEYS.items()):
        rows = frame[frame["metric"] == key].set_index("variant")
        lows, highs = [], []
        for i, variant in enumerate(ran):
            r = rows.loc[variant]
            colour = f"C{ALIGNMENT.index(variant)}"  # a variant keeps its colour whichever others ran
            ax.bar(i, r["mean"], width=0.62, color=colour, alpha=0.55, edgecolor=colour, zorder=2)
            spread = 0.0 if missing(r["std"]) else float(r["std"])
            if spread:
                ax.errorbar(i, r["mean"], yerr=spread, fmt="none", ecolor="0.15", capsize=4, linewidth=1.2, zorder=3)
            values = np.asarray(r["values"], float)
            offsets = np.linspace(-0.16, 0.16, len(values)) if len(values) > 1 else np.zeros(1)
            ax.plot(i + offsets, values, "o", color="0.1", markersize=3.5, linestyle="none", zorder=4)
            lows += [r["mean"] - spread, *values]
            highs += [r["mean"] + spread, *values]
        lo, hi = min(lows), max(highs)
        span = max(hi - lo, 1e-3 * max(abs(hi), 1e-6), 1e-6)
        ax.set_ylim(max(0.0, lo - 0.35 * span), hi + 0.2 * span)
        ticks = []
        for v in ran:
            r = rows.loc[v]
            spread = "" if missing(r["std"]) else f"\n± {r['std']:.4f}"
            ticks.append(f"{drawn_text(display(v))}{' (full)' if v == 'mentor' else ''}\n{r['mean']:.4f}{spread}")
        ax.set_xticks(range(len(ran)), ticks, fontsize=7.5)
        ax.set_xlim(-0.6, len(ran) - 0.4)
        ax.set_ylabel(f"test {label}")
        ax.grid(axis="y", color="0.9", zorder=0)
    _titles(axes[0], title, subtitle)
    fig.subplots_adjust(wspace=0.3)
    return fig


# --------------------------------------------------------------------------- Fig. 6: performance per sparsity group

SPARSITY_KEY = "test_recall@20"  # Fig. 6's metric
GROUPS = 3  # the paper: "three sub-datasets based on users' interacted item numbers in the training set"
SPARSITY_RULE = (
    "users split by their number of training interactions into three groups (the paper's Fig. 6 splits into three "
    "by users' training interactions and gives no thresholds), cut between distinct counts so that users with the "
    "same count share a group and the groups are as close to equal size (tertiles) as the ties allow (least "
    "squared deviation from a third of the users)")


def sparsity_groups(counts: np.ndarray | Sequence[int], groups: int = GROUPS) -> list[tuple[int, int]]:
    """(fewest, most) training interactions of each group of users, sparsest first (:data:`SPARSITY_RULE`):
    ``counts`` holds one count per user; the groups are cut between distinct counts (a count is never split
    between two groups), choosing the cuts that make the group sizes closest to equal (least sum of squared
    deviations from ``len(counts) / groups``; ties to the lower cuts). Fewer groups when fewer distinct counts;
    ``groups`` is 1, 2 or 3."""
    if not 1 <= groups <= 3:
        raise ValueError(f"groups must be 1, 2 or 3; got {groups}")
    values, sizes = np.unique(np.asarray(counts, dtype=np.int64), return_counts=True)
    if not len(values):
        return []
    k = min(groups, len(values))
    below = np.cumsum(sizes)[:-1].astype(float)  # users with a count <= values[i]: a cut after values[i]
    n = float(sizes.sum())
    target = n / k
    if k == 1:
        cuts: list[int] = []
    elif k == 2:
        cuts = [int(np.argmin((below - target) ** 2 + (n - below - target) ** 2))]
    else:
        best, cuts = math.inf, []
        for i in range(len(below) - 1):
            rest = below[i + 1:]
            cost = (below[i] - target) ** 2 + (rest - below[i] - target) ** 2 + (n - rest - target) ** 2
            j = int(np.argmin(cost))
            if cost[j] < best:
                best, cuts = float(cost[j]), [i, i + 1 + j]
    edges = [-1, *cuts, len(values) - 1]
    return [(int(values[a + 1]), int(values[b])) for a, b in zip(edges[:-1], edges[1:])]


def group_label(low: int, high: int) -> str:
    """A group's training interactions as text: ``3–4``, or ``5`` when one count."""
    return str(low) if low == high else f"{low}–{high}"


@dataclasses.dataclass(frozen=True)
class SparsityModels:
    """The models of Fig. 6 on a dataset: MENTOR's and every baseline's per-user values (:func:`user_values`:
    user ids, values averaged over seeds, seeds), the baselines shown (the multimodal ones and the best), and
    the best baseline (highest mean test Recall@20 over its seeds, as Table 2's Improv.)."""

    mentor: tuple[np.ndarray, np.ndarray, int]
    baselines: dict[str, tuple[np.ndarray, np.ndarray, int]]  # every baseline that kept per-user values, row order
    shown: list[str]
    best: str


def sparsity_models(chosen: pd.DataFrame, dataset: str) -> SparsityModels | str:
    """:class:`SparsityModels` of ``dataset``'s chosen runs, or why Fig. 6 cannot be drawn."""
    mentor = user_values(chosen, dataset, "mentor", SPARSITY_KEY)
    if mentor is None:
        return "MENTOR's chosen runs kept no per-user test values (stored before mentor_ray 0.3, or none ran)"
    d = chosen[chosen["dataset"] == dataset]
    present = variant_order(d.loc[d["variant"].isin(BASELINES), "variant"].unique())
    kept = {v: uv for v in present if (uv := user_values(chosen, dataset, v, SPARSITY_KEY)) is not None}
    if not kept:
        return "no baseline's chosen runs kept per-user test values"
    score = d[d["variant"].isin(list(kept))].groupby("variant")[SPARSITY_KEY].mean()
    order = list(kept)
    best = max(order, key=lambda v: (-math.inf if missing(score.get(v)) else score[v], -order.index(v)))
    shown = [v for v in order if v == best or entry_of(v).group == "multimodal"]
    return SparsityModels(mentor, kept, shown, best)


def sparsity_frame(models: SparsityModels, dataset: str, counts: TrainCounts) -> pd.DataFrame | str:
    """What Fig. 6 and its table show: a row per group of :func:`sparsity_groups` over the test users every
    model of ``models`` kept (``users`` in the group, its fewest and most training interactions), with
    ``mean_<variant>``, the mean over the group's users of each shown model's per-user test Recall@20 (MENTOR
    last), and MENTOR against the group's best baseline (the highest group mean of every baseline that kept
    per-user values): ``diff`` and its paired bootstrap interval over the group's users (:mod:`paired`).
    Why not, as one line, when the users do not fit the dataset or all have one count."""
    series = {**models.baselines, "mentor": models.mentor}
    users = models.mentor[0]
    for ids, _, _ in series.values():
        users = np.intersect1d(users, ids)
    if not users.size:
        return "MENTOR and the baselines share no test user with per-user values"
    if users.min() < 0 or users.max() >= len(counts.counts):
        return (f"the runs' test users go up to id {int(users.max())} but the dataset loaded from {counts.source} has "
                f"{len(counts.counts):,} users: not the dataset the runs used")
    values = {v: vals[np.searchsorted(ids, users)] for v, (ids, vals, _) in series.items()}
    per_user = counts.counts[users]
    groups = sparsity_groups(per_user)
    if len(groups) < 2:
        return f"every test user has the same number of training interactions ({int(per_user[0])}): no groups"
    rows = []
    for g, (low, high) in enumerate(groups, start=1):
        mask = (per_user >= low) & (per_user <= high)
        means = {v: float(vals[mask].mean()) for v, vals in values.items()}
        best = max(models.baselines, key=lambda v: (means[v], -list(models.baselines).index(v)))
        diff, ci_low, ci_high = paired.paired_bootstrap(values["mentor"][mask], values[best][mask])
        rows.append({"dataset": dataset, "group": g, "label": group_label(low, high), "min_train": low,
                     "max_train": high, "users": int(mask.sum()),
                     **{f"mean_{v}": means[v] for v in [*models.shown, "mentor"]},
                     **{f"seeds_{v}": series[v][2] for v in [*models.shown, "mentor"]},
                     "best_baseline": best, "best_baseline_mean": means[best], "diff": diff, "ci_low": ci_low,
                     "ci_high": ci_high, "counts_from": counts.source})
    return pd.DataFrame(rows)


def frame_models(frame: pd.DataFrame) -> list[str]:
    """The models a :func:`sparsity_frame` (or several datasets' frames, concatenated) has a mean of, in column
    order (MENTOR last among a dataset's)."""
    found = [c[len("mean_"):] for c in frame.columns if c.startswith("mean_") and frame[c].notna().any()]
    return variant_order(found)


def training_counts_of(chosen: pd.DataFrame) -> dict[str, TrainCounts | str]:
    """:func:`training_counts` of every dataset whose MENTOR runs kept per-user test values (the only ones Fig. 6
    needs), each loaded once: the leaderboard's table and figure share them."""
    return {d: training_counts(chosen, d) for d in dataset_order(chosen)
            if user_values(chosen, d, "mentor", SPARSITY_KEY) is not None}


def sparsity_of(chosen: pd.DataFrame, dataset: str,
                counts: dict[str, TrainCounts | str] | None = None) -> tuple[SparsityModels | None, pd.DataFrame | str]:
    """(models, :func:`sparsity_frame`) of ``dataset``, or (models or None, why not); ``counts``: what
    :func:`training_counts_of` gave (None: loaded here)."""
    models = sparsity_models(chosen, dataset)
    if isinstance(models, str):
        return None, models
    found = counts.get(dataset) if counts is not None else None
    found = found if found is not None else training_counts(chosen, dataset)
    if isinstance(found, str):
        return models, found
    return models, sparsity_frame(models, dataset, found)


def sparsity_caption(models: SparsityModels, frame: pd.DataFrame) -> list[str]:
    """What Fig. 6 shows, as sentences (:func:`caption_text`, :func:`subtitle_text`)."""
    names = []
    for v in [*models.shown, "mentor"]:
        seeds = models.mentor[2] if v == "mentor" else models.baselines[v][2]
        why = (" (best baseline by mean test Recall@20)" if v == models.best
               else " (multimodal)" if v != "mentor" else "")
        names.append(f"{display(v)}{why}: {seeds} seed{'s' if seeds != 1 else ''}")
    return [f"test Recall@20 ({TEST}) per group of test users: each user's value averaged over a model's seeds, "
            f"a bar the mean over the group's users; {int(frame['users'].sum()):,} test users that MENTOR and every "
            "baseline kept",
            SPARSITY_RULE + f"; counts from the dataset at {frame['counts_from'].iloc[0]}",
            "; ".join(names),
            f"above each group: MENTOR minus the group's best baseline, with its {paired.CONFIDENCE:.0%} paired "
            f"bootstrap interval over the group's users ({paired.BOOTSTRAP_SAMPLES:,} resamples)"]


def baseline_colours():
    """Colours for the baselines of a bar chart, none of them MENTOR's red (``C3``): tab10's nine others, then
    tab20's lighter shades, then again from the start (the paper has 13 baselines)."""
    import itertools

    from matplotlib import colormaps

    light = [colormaps["tab20"](i) for i in range(1, 20, 2) if i != 7]  # tab20's odd entries: lighter tab10
    return itertools.cycle([f"C{i}" for i in range(10) if i != 3] + light)


def sparsity_figure(frame: pd.DataFrame, title: str, subtitle: str):
    """:func:`sparsity_frame` as grouped bars: a group of bars per sparsity group, a bar per model."""
    from matplotlib.figure import Figure

    shown = frame_models(frame)
    fig = Figure(figsize=(min(12.0, max(7.2, 0.5 * len(frame) * (len(shown) + 1) + 3.0)), 4.6))
    ax = fig.subplots()
    width = 0.8 / len(shown)
    colours = baseline_colours()
    for j, variant in enumerate(shown):
        colour = "C3" if variant == "mentor" else next(colours)
        x = np.arange(len(frame)) + (j - (len(shown) - 1) / 2) * width
        ax.bar(x, frame[f"mean_{variant}"], width=width * 0.92, color=colour, alpha=0.8 if variant == "mentor" else 0.6,
               label=drawn_text(display(variant)), zorder=2)
    top = float(np.nanmax(frame[[f"mean_{v}" for v in shown]].to_numpy(float)))
    for i, r in enumerate(frame.itertuples(index=False)):
        text = f"MENTOR − {drawn_text(display(r.best_baseline))}:\n{r.diff:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}]"
        ax.annotate(text, (i, top), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7, color="0.2")
    ax.set_ylim(0, top * 1.28 if top > 0 else 1.0)
    ax.set_xticks(range(len(frame)), [f"{r.label} training interactions\n{r.users:,} users"
                                      for r in frame.itertuples(index=False)], fontsize=8)
    ax.set_ylabel("test Recall@20 (mean over users)")
    ax.grid(axis="y", color="0.9", zorder=0)
    _titles(ax, title, subtitle)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


# --------------------------------------------------------------------------- writing


def plot_jobs(runs: pd.DataFrame, chosen: pd.DataFrame, dataset: str, label: str,
              counts: dict[str, TrainCounts | str] | None = None) -> list[tuple[str, str, str, Callable]]:
    """(file stem, title, caption, builder) per plot of a dataset; a builder returns a Figure or why it cannot.
    The caption starts with the title and says what the plot shows (runs, seeds, what is maximised over).
    ``counts``: the training interactions per user of :func:`training_counts_of` (None: loaded here, if needed)."""
    drawn = drawn_text(label)  # on the figure; the captions keep the label, each renderer escapes it
    noise = seed_noise(runs, dataset)
    jobs = []
    for x, y in SENSITIVITY:
        title = f"{label}: sensitivity to ({x}, {y})"
        scored = search_scores(runs, dataset, (x, y))
        reason = _too_few(scored, (x, y))
        said = heatmap_caption(scored, x, y, noise) if reason is None else []
        jobs.append((f"sens_{x}_{y}", title, caption_text(title, said),
                     lambda s=scored, x=x, y=y, r=reason, c=said, t=f"{drawn}: sensitivity to ({x}, {y})": r or
                     heatmap_figure(cell_frame(s, x, y, noise), x, y, t, subtitle_text(c, 95), noise)))
    title = f"{label}: effect of lambda_align"
    scored = search_scores(runs, dataset, ("lambda_align",))
    reason = _too_few(scored, ("lambda_align",))
    frame = align_frame(scored) if reason is None else None
    said = align_caption(scored, frame, noise) if frame is not None else []
    jobs.append(("lambda_align", title, caption_text(title, said), lambda r=reason, f=frame, c=said: r or
                 align_figure(f, f"{drawn}: effect of lambda_align", subtitle_text(c), noise)))
    curves = f"{label}: validation curves of the final runs"
    drawn_runs = curve_runs(chosen, dataset)
    said = curves_caption(drawn_runs, best_baseline(chosen, dataset)) if len(drawn_runs) else []
    jobs.append(("valid_curves", curves, caption_text(curves, said),
                 lambda: "no final run with a recorded validation curve" if drawn_runs.empty else
                 curves_figure(drawn_runs, f"{drawn}: validation curves of the final runs", subtitle_text(said))))
    title = f"{label}: multilevel cross-modal alignment (Fig. 3)"
    frame = alignment_frame(chosen, dataset)
    reason = alignment_reason(frame)
    said = alignment_caption(frame) if reason is None else []
    jobs.append(("alignment", title, caption_text(title, said), lambda r=reason, f=frame, c=said: r or
                 alignment_figure(f, f"{drawn}: multilevel cross-modal alignment (Fig. 3)", subtitle_text(c))))
    title = f"{label}: test Recall@20 per user-sparsity group (Fig. 6)"
    models, frame = sparsity_of(chosen, dataset, counts)
    said = [] if isinstance(frame, str) else sparsity_caption(models, frame)
    jobs.append(("sparsity", title, caption_text(title, said), lambda f=frame, c=said: f if isinstance(f, str) else
                 sparsity_figure(f, f"{drawn}: test Recall@20 per user-sparsity group (Fig. 6)", subtitle_text(c))))
    jobs.append(embedding_plot.job(chosen, dataset, label, drawn))
    return jobs


def _too_few(scored: pd.DataFrame, axes: Sequence[str]) -> str | None:
    """Why a sensitivity plot over ``axes`` is not drawn from ``scored`` (:func:`search_scores`), or None: it needs
    at least 2 completed runs, at 2 or more values of each axis (runs stopped early are shown beside completed
    ones, never in their place, so they do not count)."""
    if scored.empty:
        return f"no MENTOR search with a validation Recall@20 varied {' and '.join(axes)}"
    done = scored[scored["status"] == COMPLETED]
    stopped = len(scored) - len(done)
    besides = f" ({stopped} stopped early)" if stopped else ""
    if len(done) < 2:
        what = "a heatmap" if len(axes) > 1 else "a line"
        return (f"{len(done) or 'no'} completed run{'' if len(done) == 1 else 's'}{besides}: too few to draw "
                f"{what}; need completed runs at 2 or more values of {' and '.join(axes)}")
    for axis in axes:
        values = done[axis].dropna().unique()
        if len(values) < 2:
            one = f" ({_number(values[0], None, axis)})" if len(values) else ""
            return (f"{len(done)} completed runs{besides}, {'one distinct value' if len(values) else 'no value'} of "
                    f"{axis}{one}; need completed runs at 2 or more values of it")
    return None


def file_stem(dataset: str) -> str:
    """``dataset`` as the start of a file name under ``plots/``. A store's dataset names passed
    :func:`~mentor_ray.common.names.check_name` when recorded, but a copied-in run file may hold anything:
    such a name is made safe (no separator, no leading dot, short enough for a file name) and told apart
    from others by a hash of it."""
    import hashlib

    from mentor_ray.common.errors import ConfigError
    from mentor_ray.common.names import check_name

    try:
        return check_name(dataset, "dataset")
    except ConfigError:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(dataset))[:64].lstrip(".") or "dataset"
        return f"{safe}-{hashlib.sha256(str(dataset).encode()).hexdigest()[:8]}"


def png_bytes(fig) -> bytes:
    """``fig`` as PNG bytes without a software stamp: the same figure, the same bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata=PNG_METADATA)
    return buf.getvalue()


def write_plots(runs: pd.DataFrame, out_dir: Path,
                counts: dict[str, TrainCounts | str] | None = None) -> tuple[list[Plot], list[str]]:
    """Every plot as ``out_dir/plots/<dataset>-<plot>.png``; the skipped ones as notes, and what the plots
    show (:data:`PLOT_NOTE`) when there is one beside the curves. ``counts``: :func:`training_counts_of` of the
    store's chosen runs, when the caller has them (None: each dataset Fig. 6 needs is loaded here)."""
    runs = once_per_run(runs)
    chosen, labels = select_final(runs), dataset_labels(runs)
    counts = training_counts_of(chosen) if counts is None else counts
    plots, notes = [], []
    for dataset in dataset_order(runs):
        slug = file_stem(dataset)
        for stem, title, caption, build in plot_jobs(runs, chosen, dataset, labels[dataset], counts):
            with warnings.catch_warnings():  # a name in a script the font lacks is drawn as boxes, not warned about
                warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
                fig = build()
                if isinstance(fig, str):
                    notes.append(f"plot '{title}' skipped: {fig}")
                    continue
                rel = f"plots/{slug}-{stem}.png"
                data = png_bytes(fig)
            write_atomic(out_dir / rel, data)
            plots.append(Plot(rel, title, caption))
    if any(not p.path.endswith("-valid_curves.png") for p in plots):
        notes.insert(0, PLOT_NOTE)
    return plots, notes
