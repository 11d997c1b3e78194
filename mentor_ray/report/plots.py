"""The leaderboard's plots (matplotlib): sensitivity heatmaps (Fig. 7), the λ_align line (Fig. 5), curves."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from mentor_ray.common.io import write_atomic
from mentor_ray.report.board import Plot
from mentor_ray.report.select import (
    AXIS_LABELS,
    SENSITIVITY,
    VALID,
    dataset_labels,
    dataset_order,
    display,
    searched_keys,
    select_final,
)


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
    chosen, labels = select_final(runs), dataset_labels(runs)
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
