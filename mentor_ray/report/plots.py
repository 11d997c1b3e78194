"""The leaderboard's plots (matplotlib): sensitivity heatmaps (Fig. 7), the λ_align line (Fig. 5), curves."""

from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from mentor_ray.common.io import write_atomic
from mentor_ray.report.board import Plot, missing
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
    """The dataset's MENTOR search runs that have a validation Recall@20 (completed or stopped by ASHA: the
    plots take the completed ones and mark the cells that only ASHA-stopped ones reach); a baseline's own
    search (its grid has other axes) is left out of MENTOR's sensitivity plots.

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


COMPLETED = "completed"  # a run trained to its own early stopping or its epoch budget (not stopped by ASHA)
HIDDEN = "best validation Recall@20 over the other settings, completed runs only"  # what a cell or point is
PLOT_NOTE = ("Sensitivity heatmaps (Fig. 7) and the lambda_align line (Fig. 5): MENTOR search runs that "
             "completed (trained to their own early stopping or the epoch budget) only, never those ASHA stopped "
             "at an early rung; each cell (point) is the maximum validation Recall@20 over the completed trials "
             "at that value, i.e. the best over the settings not on the axes (the other searched "
             "hyperparameters). A cell (value) whose trials were all stopped by ASHA is left blank and marked "
             "'ASHA'.")


def sensitivity_grid(scored: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Best validation Recall@20 of the completed trials per (y, x) cell (the maximum over the axes not
    shown); rows y, columns x, over every value a scored trial has; NaN where no trial completed (see
    :func:`stopped_only_cells`): a trial ASHA stopped at an early rung never counts."""
    done = scored[scored["status"] == COMPLETED]
    grid = done.pivot_table(index=y, columns=x, values=VALID, aggfunc="max")
    return grid.reindex(index=sorted(scored[y].dropna().unique()), columns=sorted(scored[x].dropna().unique()))


def stopped_only_cells(scored: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """True where a cell of :func:`sensitivity_grid` has trials, all of them stopped early by ASHA."""
    grid = sensitivity_grid(scored, x, y)
    tried = scored.pivot_table(index=y, columns=x, values=VALID, aggfunc="size").reindex_like(grid)
    return tried.notna() & grid.isna()


def align_points(scored: pd.DataFrame) -> tuple[pd.Series, list[float]]:
    """Best validation Recall@20 of the completed trials per lambda_align, and the values whose trials
    were all stopped early by ASHA."""
    done = scored[scored["status"] == COMPLETED]
    series = done.groupby("lambda_align")[VALID].max().sort_index()
    return series, sorted(set(scored["lambda_align"].dropna()) - set(series.index))


def _too_few(scored: pd.DataFrame, axes: Sequence[str]) -> str | None:
    if scored.empty:
        return f"no MENTOR search with a validation Recall@20 varied {' and '.join(axes)}"
    if not (scored["status"] == COMPLETED).any():
        return (f"no completed MENTOR search run varied {' and '.join(axes)} ({len(scored)} stopped early by "
                "ASHA); the plot uses completed runs only")
    for axis in axes:
        n = scored[axis].nunique()
        if n < 2:
            return f"{n} distinct value of {axis} among {len(scored)} scored search run(s); need at least 2"
    return None


def heatmap_figure(grid: pd.DataFrame, x: str, y: str, title: str, stopped: pd.DataFrame | None = None):
    """``grid`` as a heatmap; cells where ``stopped`` is True (only ASHA-stopped trials) are marked 'ASHA'."""
    import numpy as np
    from matplotlib.figure import Figure

    data = grid.to_numpy(float)
    only_stopped = np.zeros(data.shape, bool) if stopped is None else stopped.to_numpy(bool)
    fig = Figure(figsize=(max(4.5, 0.95 * data.shape[1] + 2.2), max(3.2, 0.55 * data.shape[0] + 1.8)))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(data.shape[1]), [f"{v:g}" for v in grid.columns])
    ax.set_yticks(range(data.shape[0]), [f"{v:g}" for v in grid.index])
    for (i, j), v in np.ndenumerate(data):
        if not math.isnan(v):
            ax.text(j, i, f"{v:.4f}", ha="center", va="center", fontsize=8,
                    color="black" if im.norm(v) > 0.6 else "white")
        elif only_stopped[i, j]:
            ax.text(j, i, "ASHA", ha="center", va="center", fontsize=7, color="0.45", style="italic")
    ax.set(xlabel=AXIS_LABELS.get(x, x), ylabel=AXIS_LABELS.get(y, y))
    ax.set_title(f"{title}\n{HIDDEN}", fontsize=9)
    fig.colorbar(im, ax=ax, label="best validation Recall@20 (completed runs)")
    return fig


def align_figure(series: pd.Series, stopped: Sequence[float], title: str):
    """The best completed trial per lambda_align; ``stopped`` values (only ASHA-stopped trials) marked 'ASHA'."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.6))
    ax = fig.subplots()
    ax.plot(series.index, series.values, marker="o")
    for xv, yv in series.items():
        ax.annotate(f"{yv:.4f}", (xv, yv), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    for xv in stopped:
        ax.axvline(xv, color="0.7", linestyle=":")
        ax.annotate("ASHA", (xv, 0.02), xycoords=("data", "axes fraction"), ha="center", fontsize=7, color="0.45",
                    style="italic")
    ticks = sorted({*series.index, *stopped})
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.set(xlabel=AXIS_LABELS["lambda_align"], ylabel="best validation Recall@20 (completed runs)")
    ax.set_title(f"{title}\n{HIDDEN}", fontsize=9)
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
        name = f"{drawn_text(display(r['variant']))} seed {r['seed']}" if several else f"seed {r['seed']}"
        (line,) = ax.plot(range(len(curve)), curve, label=name)  # epochs 0-based, as best_epoch
        best = r["best_epoch"]  # null in a hand-edited run file: the curve without its dot
        if not missing(best) and 0 <= best < len(curve):
            best = int(best)
            ax.plot([best], [curve[best]], "o", color=line.get_color(), markersize=4)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch (dot: best_epoch)", ylabel="validation Recall@20", title=title)
    ax.legend(fontsize=8)
    return fig


def drawn_text(text: object, limit: int = 80) -> str:
    """A dataset or model name from the store as matplotlib draws it literally: printable characters only (a
    control character has no glyph), ``$`` escaped (matplotlib parses ``$...$`` as a formula, and a malformed
    one fails the whole figure), cut to ``limit`` characters."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(text)).replace("$", r"\$")
    return text if len(text) <= limit else f"{text[:limit]}…"


def plot_jobs(runs: pd.DataFrame, chosen: pd.DataFrame, dataset: str,
              label: str) -> list[tuple[str, str, str, Callable]]:
    """(file stem, title, caption, builder) per plot of a dataset; a builder returns a Figure or why it cannot.
    A sensitivity plot's caption says what its cells are (:data:`HIDDEN`)."""
    drawn = drawn_text(label)  # on the figure; the captions keep the label, each renderer escapes it
    finals = chosen[(chosen["dataset"] == dataset) & (chosen["role"] == "final")]
    finals = finals[finals["valid_curve"].map(lambda c: c is not None and len(c) > 0)]
    jobs = []
    for x, y in SENSITIVITY:
        title = f"{label}: sensitivity to ({x}, {y})"
        scored = search_scores(runs, dataset, (x, y))
        jobs.append((f"sens_{x}_{y}", title, f"{title}: {HIDDEN}",
                     lambda s=scored, x=x, y=y, t=f"{drawn}: sensitivity to ({x}, {y})": _too_few(s, (x, y)) or
                     heatmap_figure(sensitivity_grid(s, x, y), x, y, t, stopped_only_cells(s, x, y))))
    title = f"{label}: effect of lambda_align"
    scored = search_scores(runs, dataset, ("lambda_align",))
    jobs.append(("lambda_align", title, f"{title}: {HIDDEN}", lambda s=scored: _too_few(s, ("lambda_align",)) or
                 align_figure(*align_points(s), f"{drawn}: effect of lambda_align")))
    curves = f"{label}: validation curves of the final runs"
    jobs.append(("valid_curves", curves, curves, lambda: "no final run with a recorded validation curve"
                 if finals.empty else curves_figure(finals, f"{drawn}: validation curves of the final runs")))
    return jobs


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


def write_plots(runs: pd.DataFrame, out_dir: Path) -> tuple[list[Plot], list[str]]:
    """Every plot as ``out_dir/plots/<dataset>-<plot>.png``; the skipped ones as notes, and what the
    sensitivity plots show (:data:`PLOT_NOTE`) when there is one."""
    chosen, labels = select_final(runs), dataset_labels(runs)
    plots, notes = [], []
    for dataset in dataset_order(runs):
        slug = file_stem(dataset)
        for stem, title, caption, build in plot_jobs(runs, chosen, dataset, labels[dataset]):
            with warnings.catch_warnings():  # a name in a script the font lacks is drawn as boxes, not warned about
                warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
                fig = build()
                if isinstance(fig, str):
                    notes.append(f"plot '{title}' skipped: {fig}")
                    continue
                rel = f"plots/{slug}-{stem}.png"
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
            write_atomic(out_dir / rel, buf.getvalue())
            plots.append(Plot(rel, caption))
    if any(not p.path.endswith("-valid_curves.png") for p in plots):
        notes.insert(0, PLOT_NOTE)
    return plots, notes
