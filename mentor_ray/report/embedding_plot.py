"""Fig. 4: 2-D views of the per-modality item embeddings of MENTOR_base and MENTOR, with the distance between
modalities that the paper quotes beside it (0.44 for MENTOR_base, 0.18 for MENTOR on Baby).

What is drawn: each chosen final/ablation run of MENTOR (full) and MENTOR_base keeps, at its best epoch, the
ID and feature-modality representations the alignment task acts on for one fixed sample of 500 items
(:mod:`mentor_ray.common.embeddings`; the same items for every run of a dataset). Per model, the run of the
lowest seed is mapped: its M + 1 modalities' points are stacked and embedded together by t-SNE (scikit-learn,
the report extra), so that the modalities' relative positions mean something within a panel (not across
panels: each panel is its own t-SNE). t-SNE, not UMAP: it is what the paper used, scikit-learn is a kept,
widely installed library (UMAP would add umap-learn and numba), and at 500 x (M + 1) points its cost (seconds)
does not matter.

The distance, computed in the embeddings' own space (a t-SNE map preserves neighbourhoods, not distances): for
two modalities a and b, the mean over the sampled items of ||a_i/|a_i| - b_i/|b_i|||, the Euclidean distance
between the item's L2-normalised representations (0: same direction, 2: opposite). The paper does not define
its "average distance"; this is the definition used here, given per seed as mean ± std.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from mentor_ray.common import embeddings
from mentor_ray.report.figtext import caption_text, drawn_text, subtitle_text
from mentor_ray.report.select import display

MODELS = ("mentor_base", "mentor")  # the paper's two panels: without and with the alignment task
COLOURS = {"id": "#ff7f0e", "image": "#2ca02c", "text": "#1f77b4"}  # the paper: green visual, blue text, orange ID
OTHER_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#17becf"]  # further modalities (audio, ...)
PERPLEXITY = 30.0  # scikit-learn's default; capped below the point count for tiny samples
TSNE_SEED = 0


def colour_of(name: str, names: list[str]) -> str:
    extra = [n for n in names if n not in COLOURS]
    return COLOURS.get(name) or OTHER_COLOURS[extra.index(name) % len(OTHER_COLOURS)]


def kept_runs(chosen: pd.DataFrame, dataset: str, variant: str) -> pd.DataFrame:
    """The chosen runs (:func:`~mentor_ray.report.select.select_final`) of ``variant`` on ``dataset`` that kept
    embeddings, by seed."""
    d = chosen[(chosen["dataset"] == dataset) & (chosen["variant"] == variant)]
    if "item_embeddings" not in d:
        return d.iloc[:0]
    return d[d["item_embeddings"].notna()].sort_values(["seed", "run_id"], kind="mergesort")


def pair_distances(found: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """Per pair of modalities (each feature modality pair, and each feature modality with ``id``): the mean over
    items of the Euclidean distance between the items' L2-normalised rows."""
    unit = {m: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12) for m, a in found.items()}
    features = [m for m in found if m != "id"]
    pairs = list(itertools.combinations(features, 2)) + ([(m, "id") for m in features] if "id" in found else [])
    return {(a, b): float(np.linalg.norm(unit[a] - unit[b], axis=1).mean()) for a, b in pairs}


def distance_frame(chosen: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """A row per model of :data:`MODELS`, seed and modality pair: ``distance`` (:func:`pair_distances`)."""
    rows = []
    for variant in MODELS:
        for r in kept_runs(chosen, dataset, variant).itertuples():
            _, found = embeddings.decode(r.item_embeddings)
            for (a, b), value in pair_distances(found).items():
                rows.append({"dataset": dataset, "variant": variant, "model": display(variant), "seed": int(r.seed),
                             "run_id": r.run_id, "pair": f"{a}-{b}", "distance": value})
    return pd.DataFrame(rows, columns=["dataset", "variant", "model", "seed", "run_id", "pair", "distance"])


def distance_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model and pair: mean and sample std (NaN with one seed) of the distance over seeds, and the seed count."""
    g = frame.groupby(["variant", "model", "pair"], sort=False)["distance"]
    return g.agg(mean="mean", std=lambda s: s.std(ddof=1) if len(s) > 1 else math.nan, seeds="size").reset_index()


def tsne_points(found: dict[str, np.ndarray], seed: int = TSNE_SEED) -> pd.DataFrame:
    """Every modality's rows of one run stacked and mapped to 2-D by t-SNE: a row per (modality, item index)
    with ``x``, ``y``. Deterministic for a given input (fixed ``random_state``, PCA initialisation)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    names = list(found)
    stacked = np.concatenate([found[m] for m in names]).astype(np.float64)
    n = len(stacked)
    perplexity = min(PERPLEXITY, max(2.0, (n - 1) / 3.0))
    # One thread: the same map whatever the machine's core count (OpenMP's summation order), and on a busy
    # machine faster than oversubscribed threads (1,500 points: ~9 s against ~38 s on 2 loaded cores).
    with threadpool_limits(1):
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                  random_state=seed).fit_transform(stacked)
    size = len(next(iter(found.values())))
    return pd.DataFrame({"modality": np.repeat(names, size), "item": np.tile(np.arange(size), len(names)),
                         "x": xy[:, 0], "y": xy[:, 1]})


def unmappable(found: dict[str, np.ndarray]) -> str | None:
    """Why t-SNE cannot map one run's points (:func:`tsne_points`), or None. It needs more points than its
    perplexity (3 or more), and points that are not all one: its PCA start divides by their spread, and
    scikit-learn's Barnes-Hut tree then crashes the process on NaN (a segmentation fault, not an exception)."""
    stacked = np.concatenate(list(found.values()))
    if len(stacked) < 3:
        return f"are {len(stacked)} point(s) (items x modalities); t-SNE maps 3 or more"
    if not np.ptp(stacked, axis=0).any():
        return "are all the same point; t-SNE has nothing to map"
    return None


def reason(chosen: pd.DataFrame, dataset: str) -> str | None:
    """Why Fig. 4 cannot be drawn for ``dataset``, or None."""
    gone = [display(v) for v in MODELS if kept_runs(chosen, dataset, v).empty]
    if len(gone) == len(MODELS):
        return (f"no final or ablation run of {' or '.join(display(v) for v in MODELS)} kept item embeddings "
                "(runs recorded by mentor_ray 0.5 or later keep them; run with --ablation or --paper)")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return "t-SNE needs scikit-learn: pip install 'mentor_ray[report]'"
    for variant in MODELS:  # the run each panel maps (figure)
        runs = kept_runs(chosen, dataset, variant)
        why = unmappable(embeddings.decode(runs["item_embeddings"].iloc[0])[1]) if len(runs) else None
        if why:
            return f"the item embeddings {display(variant)} kept (seed {int(runs['seed'].iloc[0])}) {why}"
    return None


def caption(chosen: pd.DataFrame, dataset: str, summary: pd.DataFrame) -> list[str]:
    """What Fig. 4 shows, as sentences."""
    mapped = []
    for variant in MODELS:
        runs = kept_runs(chosen, dataset, variant)
        if len(runs):
            mapped.append(f"{display(variant)}: its seed-{int(runs['seed'].iloc[0])} run")
    items = len(embeddings.decode(next(r for v in MODELS for r in kept_runs(chosen, dataset, v)["item_embeddings"]))[0])
    dist = "; ".join(f"{r.model} {r.pair}: {r.mean:.3f}" + ("" if math.isnan(r.std) else f" ± {r.std:.3f}")
                     + f" (n={r.seeds})" for r in summary.itertuples())
    return [f"t-SNE maps of {items} sampled items' ID and feature-modality representations (the ones the alignment "
            f"task acts on) at the best validation epoch of the chosen final/ablation runs ({'; '.join(mapped)}); "
            "each panel is one t-SNE of all its modalities' points together (perplexity "
            f"{PERPLEXITY:g}, PCA initialisation), so distances compare within a panel, not across panels",
            "mean distance between an item's L2-normalised representations of two modalities, in the original "
            f"space, mean ± std over seeds: {dist}"]


def figure(chosen: pd.DataFrame, dataset: str, summary: pd.DataFrame, title: str, subtitle: str):
    """One panel per model of :data:`MODELS` that kept embeddings: its lowest seed's t-SNE map."""
    from matplotlib.figure import Figure

    shown = [v for v in MODELS if not kept_runs(chosen, dataset, v).empty]
    # the title and the caption above both panels, in a band of their own (sized to the caption's lines)
    lines = subtitle.count("\n") + 1 if subtitle else 0
    head = 0.45 + 0.14 * lines  # inches
    height = 5.0 + head
    fig = Figure(figsize=(5.2 * len(shown) + 0.6, height))
    axes = np.atleast_1d(fig.subplots(1, len(shown)))
    fig.subplots_adjust(top=1 - (head + 0.45) / height, bottom=0.03, left=0.03, right=0.98, wspace=0.08)
    fig.text(0.01, 1 - 0.12 / height, drawn_text(title, 200), fontsize=10, va="top", ha="left")
    if subtitle:
        fig.text(0.01, 1 - 0.42 / height, subtitle, fontsize=7.5, va="top", ha="left", color="0.2", gid="subtitle",
                 linespacing=1.3)
    for ax, variant in zip(axes, shown):
        run = kept_runs(chosen, dataset, variant).iloc[0]
        _, found = embeddings.decode(run["item_embeddings"])
        pts = tsne_points(found)
        names = list(found)
        for m in names:
            p = pts[pts["modality"] == m]
            ax.scatter(p["x"], p["y"], s=5, alpha=0.6, color=colour_of(m, names), label=drawn_text(m, 20),
                       linewidths=0)
        rows = summary[summary["variant"] == variant]
        feature = rows[~rows["pair"].str.endswith("-id")]
        quoted = feature if len(feature) else rows
        # a modality's name comes from the store: drawn literally, as every name is
        said = "; ".join(f"{drawn_text(r.pair, 40)} {r.mean:.3f}" for r in quoted.itertuples())
        ax.set_title(f"{drawn_text(display(variant))} (seed {int(run['seed'])})\nmean distance {said}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc="best", fontsize=7.5, markerscale=2.5, frameon=False)
    return fig


def job(chosen: pd.DataFrame, dataset: str, label: str, drawn: str):
    """(stem, title, caption, builder) of Fig. 4, as :func:`mentor_ray.report.plots.plot_jobs` lists them."""
    title = f"{label}: item embeddings of MENTOR_base and MENTOR (Fig. 4)"
    why = reason(chosen, dataset)
    said: list[str] = []
    summary = None
    if why is None:
        summary = distance_summary(distance_frame(chosen, dataset))
        said = caption(chosen, dataset, summary)
    return ("embeddings", title, caption_text(title, said), lambda: why or figure(
        chosen, dataset, summary, f"{drawn}: item embeddings of MENTOR_base and MENTOR (Fig. 4)", subtitle_text(said)))
