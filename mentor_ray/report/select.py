"""Reading the results store and choosing the runs the leaderboard shows (validation only)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from mentor_ray.common.config import result_settings
from mentor_ray.common.errors import MentorRayError, shown
from mentor_ray.common.names import KS, METRIC_KINDS, USER_METRICS, VALID_METRIC
from mentor_ray.common.registry import VARIANT_MODELS, display_name
from mentor_ray.report.board import missing
from mentor_ray.report.results import SCHEMA, STOP_REASONS, read_results

log = logging.getLogger(__name__)

# table row order (the paper's): general baselines, multimodal baselines, MENTOR's variants, MENTOR
DISPLAY = {v: display_name(v) for v in VARIANT_MODELS}
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
ALPHA = 0.05
USER_COLUMNS = {f"test_{m}": f"users:test_{m}" for m in USER_METRICS}  # per-user values, where kept
PER_ROW = ("split", "metric", "k", "value", "user_ids", "user_values", "item_embeddings")  # not on every row of a run
RUN_COLUMNS = [c for c in SCHEMA.names if c not in PER_ROW]
METRIC_COLUMNS = [f"{s}_{m}@{k}" for s in ("valid", "test") for m in METRIC_KINDS for k in KS]


def load_runs(results_dir: str | Path) -> pd.DataFrame:
    """One row per run of the store: its run columns and one column per ``split_metric@K``; runs that lack
    what every table groups by are left out (:func:`identified`)."""
    path = Path(results_dir)
    if not path.is_dir():
        raise MentorRayError(f"--results {path}: no such directory; give the --results directory of a sweep")
    table = read_results(path)
    if table.num_rows == 0:
        raise MentorRayError(f"--results {path}: no results in this directory (no *.parquet run files)")
    runs = identified(runs_frame(table.to_pandas()), path)
    if runs.empty:
        raise MentorRayError(f"--results {path}: no run with a dataset, variant, role, config hash and seed "
                             f"(see the warnings above); {FIX}")
    return runs


IDENTITY = ("dataset", "variant", "role", "config_hash", "seed")  # what every table groups or pairs runs by
FIX = "delete the files of those runs, then re-run the sweep with --resume to redo them"


def identified(runs: pd.DataFrame, source: Path | str) -> pd.DataFrame:
    """``runs`` without those whose identity (:data:`IDENTITY`) is missing, with one warning that counts them.

    The store's reader checks each file's columns and vocabularies, but a hand-edited or foreign run file
    may still leave one of these null; such a run belongs to no table row (a null seed cannot be paired, a
    null dataset has no section), so it is named and left out rather than failing the whole leaderboard."""
    bad = runs[list(IDENTITY)].isna().any(axis=1)
    for column in ("dataset", "variant", "role", "config_hash"):
        bad |= runs[column].map(lambda v: not isinstance(v, str) or not v.strip())
    if bad.any():
        first = runs.loc[bad, "run_id"].iloc[0]
        log.warning("results: %s: %d run(s) without a %s (first: %s) left out of the leaderboard; %s",
                    source, int(bad.sum()), ", ".join(IDENTITY), shown(first, 80), FIX)
    runs = runs[~bad].copy()
    runs["seed"] = runs["seed"].astype("int64")
    return runs.reset_index(drop=True)


def runs_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Long rows (one per run x split x metric x K) to one row per run; NaN where a run has no metric.
    A run's per-user test values of a column ``test_<metric>`` are in ``users:test_<metric>`` as
    ``(user ids, values)`` arrays, None where the run kept none (a search trial, an older store)."""
    runs = rows.drop_duplicates("run_id")[RUN_COLUMNS].set_index("run_id")
    runs["status"] = runs["status"].fillna("completed")  # files from before `status`: only finished runs
    # a measurement is a value at a split, metric and K; a hand-edited file may hold one without them, or
    # the same one twice: the first of each is the run's
    scored = rows.dropna(subset=["value", "split", "metric", "k"])
    keys = scored["split"] + "_" + scored["metric"] + "@" + scored["k"].astype(int).astype(str)
    wide = scored.assign(key=keys).pivot_table(index="run_id", columns="key", values="value", aggfunc="first")
    runs = runs.join(wide.reindex(columns=METRIC_COLUMNS))
    for column in USER_COLUMNS.values():
        runs[column] = None
    if "user_ids" in rows:
        kept = rows[rows["user_ids"].notna() & rows["user_values"].notna()].drop_duplicates(["run_id", "metric", "k"])
        for r in kept.itertuples():
            column = USER_COLUMNS.get(f"test_{r.metric}@{int(r.k)}")
            if column and r.split == "test":
                runs.at[r.run_id, column] = (np.asarray(r.user_ids, dtype=np.int64),
                                             np.asarray(r.user_values, dtype=np.float64))
    runs["item_embeddings"] = None  # Fig. 4's sample (mentor_ray.common.embeddings), on one row of the run
    if "item_embeddings" in rows:
        kept = rows[rows["item_embeddings"].notna()].drop_duplicates("run_id")
        runs.loc[kept["run_id"].to_numpy(), "item_embeddings"] = kept["item_embeddings"].to_numpy()
    return runs.reset_index()


def select_final(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs behind the metric tables (see the module docstring); never looks at test values."""
    ok = runs[runs["role"].isin(["final", "ablation"]) & (runs["status"] != "failed") & runs[VALID].notna()]
    ok = ok.assign(_later=ok["role"] != "final").sort_values(["_later", "run_id"])
    ok = ok.drop_duplicates(["dataset", "variant", "config_hash", "seed"]).drop(columns="_later")
    score = ok.groupby(["dataset", "variant", "config_hash"], as_index=False)[VALID].mean()
    best = score.sort_values([VALID, "config_hash"], ascending=[False, True]).drop_duplicates(["dataset", "variant"])
    return ok.merge(best[["dataset", "variant", "config_hash"]], on=["dataset", "variant", "config_hash"])


def user_values(chosen: pd.DataFrame, dataset: str, variant: str,
                key: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    """A model's per-user test values of column ``key``, averaged over its seeds that kept them (users
    held by every such seed): (user ids, values, seeds); None when no seed kept any."""
    g = chosen[(chosen["dataset"] == dataset) & (chosen["variant"] == variant)]
    kept = [v for v in g[USER_COLUMNS[key]] if v is not None] if USER_COLUMNS.get(key) in g else []
    if not kept:
        return None
    users = kept[0][0]
    for ids, _ in kept[1:]:
        users = np.intersect1d(users, ids)
    values = np.mean([vals[np.searchsorted(ids, users)] for ids, vals in kept], axis=0)
    return users, values, len(kept)


@dataclasses.dataclass(frozen=True)
class TrainCounts:
    """Each user's number of training interactions (``counts[user id]``) of a dataset as loaded from ``source``."""

    counts: np.ndarray
    source: str


def training_counts(chosen: pd.DataFrame, dataset: str) -> TrainCounts | str:
    """The training interactions per user of ``dataset``, from the dataset itself (the store keeps none):
    loaded as its runs loaded it (:func:`mentor_ray.datasets.dataset.load_dataset` with the ``data_root`` the
    first of its chosen runs recorded, in run id order; none: a synthetic preset). Why not, as one line,
    when it cannot be loaded (moved, another machine, a relative root)."""
    from mentor_ray.datasets.dataset import load_dataset  # torch: only for a store with per-user values

    rows = chosen[chosen["dataset"] == dataset].sort_values("run_id", kind="mergesort")
    roots = [c.get("data_root") for c in (parse_json(t, dict) for t in rows["config_json"]) if c]
    root = next((r for r in roots if isinstance(r, str) and r), None)
    try:
        ds = load_dataset(dataset, root)
    except (MentorRayError, OSError, ValueError) as exc:
        where = f"data_root {root}" if root else "no data_root recorded"
        return f"dataset {shown(dataset, 80)} could not be loaded ({where}): {shown(str(exc), 300, quote=False)}"
    counts = np.bincount(np.asarray(ds.train.users, dtype=np.int64), minlength=ds.n_users)
    return TrainCounts(counts, str(ds.path))


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


def dataset_labels(runs: pd.DataFrame) -> dict[str, str]:
    synthetic = runs.groupby("dataset")["synthetic"].any()
    return {d: dataset_label(d, bool(s)) for d, s in synthetic.items()}

def parse_json(text: object, kind: type) -> object | None:
    """The JSON value of a store's text column (``config_json``, ``space_axes``) if it is a ``kind``; None when
    it is missing, unreadable or of another kind (a hand-edited or foreign run file), so that one bad cell
    blanks what depends on it instead of stopping the whole leaderboard."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, kind) else None


# --------------------------------------------------------------------------- how each run ended

UNDERTRAINED_MARK = "†"  # beside a cell (or a count) whose runs the epoch cap cut off still improving
# a run's stop reason as the leaderboard and plots name it (:func:`stop_reasons`)
EARLY_STOPPING, MAX_EPOCHS, ASHA, BUDGET, FAILED = "early stopping", "max epochs", "ASHA", "budget", "failed"
EVALUATED, COMPLETED_UNKNOWN, STOPPED_UNKNOWN = "evaluated only", "completed", "stopped early"
# a group of search trials stopped early by ASHA and by the budget; and a trial of a store before 0.5.1, which did
# not record which of the two stopped it
ASHA_AND_BUDGET, ASHA_OR_BUDGET = "ASHA and budget", "ASHA or budget"
# the recorded stop_reason column (mentor_ray.report.results.STOP_REASONS) as the leaderboard names it
RECORDED_REASONS = {"early_stopping": EARLY_STOPPING, "max_epochs": MAX_EPOCHS, "evaluation_only": EVALUATED,
                    "asha": ASHA, "budget": BUDGET, "failed": FAILED}


def is_undertrained(best_epoch: object, epochs_run: object, max_epochs: object, patience: object,
                    status: object = "completed") -> bool:
    """Whether one run was cut off under-trained: the epoch cap stopped it while it was still improving.

    Epochs count as the trainer counts them (:meth:`mentor_ray.training.trainer.Trainer.end_epoch`):
    ``best_epoch`` is 0-based (the first trained epoch is epoch 0; shown from 1 it is ``best_epoch + 1``),
    ``epochs_run`` is the number of epochs trained, ``max_epochs`` the cap and ``patience`` the epochs without a
    better validation Recall@20 after which early stopping ends a run. The rule: the run did not fail, trained
    at least one epoch and up to its cap (``epochs_run >= max_epochs >= 1``), and its best epoch is within
    ``patience`` epochs of the cap::

        best_epoch >= max_epochs - patience        (1-based: best_epoch + 1 > max_epochs - patience)

    that is, fewer than ``patience`` epochs without improvement followed its best epoch, so early stopping had
    not fired when the cap ended the run. For a completed run this is exactly the trainer's stop reason
    ``max_epochs`` (a run whose early stopping fires at the cap itself, ``best_epoch == max_epochs - 1 -
    patience``, stopped early by its own rule and is not flagged). A run that trained no epoch (MostPop,
    ``max_epochs=0``) was evaluated, not cut off; a run missing any of the values (an older or hand-edited
    file) is not flagged."""
    if status == "failed":
        return False
    values = []
    for v in (best_epoch, epochs_run, max_epochs, patience):
        if missing(v) or isinstance(v, bool):
            return False
        try:
            values.append(int(v))
        except (TypeError, ValueError, OverflowError):
            return False
    best, run, cap, wait = values
    return run >= cap >= 1 and best >= cap - wait


def run_limits(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's ``max_epochs`` and ``patience`` as its ``config_json`` records them (NaN where it does not)."""
    configs = [parse_json(t, dict) or {} for t in runs["config_json"]] if "config_json" in runs else [{}] * len(runs)

    def whole(value: object) -> float:  # a hand-edited file may hold anything: a number or NaN
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return math.nan
        try:
            value = float(value)
        except OverflowError:
            return math.nan
        return value if math.isfinite(value) else math.nan

    return pd.DataFrame({"max_epochs": [whole(c.get("max_epochs")) for c in configs],
                         "patience": [whole(c.get("patience")) for c in configs]}, index=runs.index)


def undertrained(runs: pd.DataFrame) -> pd.Series:
    """:func:`is_undertrained` of every run of a runs frame (:func:`runs_frame`), from what the store keeps:
    ``best_epoch``, ``epochs_run``, ``status`` and the ``max_epochs`` and ``patience`` of ``config_json``."""
    if runs.empty:
        return pd.Series(False, index=runs.index, dtype=bool)
    limits = run_limits(runs)
    flags = [is_undertrained(b, e, m, p, s) for b, e, m, p, s in
             zip(runs["best_epoch"], runs["epochs_run"], limits["max_epochs"], limits["patience"], runs["status"])]
    return pd.Series(flags, index=runs.index, dtype=bool)


def stop_reasons(runs: pd.DataFrame) -> pd.Series:
    """Why each run ended: its recorded ``stop_reason`` (:data:`RECORDED_REASONS`: the trainer's rule for a
    completed run, ASHA or the budget for a search trial stopped early, as the sweep recorded it) where it is
    one its status allows; otherwise (stores before 0.5.1) as far as the store can tell: ``failed``; a completed
    run's ``early stopping`` (at least ``patience`` epochs without improvement after its best), ``max epochs``
    (:func:`is_undertrained`) or ``evaluated only`` (no epoch trained); a search trial stopped early (status
    ``stopped_early``) by ``ASHA`` when its search had no budget (``budget_epochs`` null: nothing else stops a
    recorded trial early, and interrupted trials are not recorded), else ``ASHA or budget``. ``completed`` /
    ``stopped early`` where a run's record lacks what would tell."""
    if runs.empty:
        return pd.Series(dtype=object, index=runs.index)
    limits, cut = run_limits(runs), undertrained(runs)
    budgets = runs["budget_epochs"] if "budget_epochs" in runs else pd.Series(math.nan, index=runs.index)
    recorded = runs["stop_reason"] if "stop_reason" in runs else pd.Series(None, index=runs.index, dtype=object)
    out = []
    for status, role, best, epochs, wait, budget, capped, known in zip(
            runs["status"], runs["role"], runs["best_epoch"], runs["epochs_run"], limits["patience"], budgets, cut,
            recorded):
        if isinstance(known, str) and known in STOP_REASONS.get(status, ()):
            out.append(RECORDED_REASONS[known])
        elif status == "failed":
            out.append(FAILED)
        elif status == "stopped_early":
            out.append(STOPPED_UNKNOWN if role != "search" else ASHA if missing(budget) else ASHA_OR_BUDGET)
        elif capped:
            out.append(MAX_EPOCHS)
        elif not missing(epochs) and int(epochs) == 0:
            out.append(EVALUATED)
        elif not (missing(best) or missing(epochs) or missing(wait)) and int(epochs) - 1 - int(best) >= int(wait):
            out.append(EARLY_STOPPING)
        else:
            out.append(COMPLETED_UNKNOWN)
    return pd.Series(out, index=runs.index, dtype=object)


def stopped_by(reasons: Iterable[str]) -> str:
    """One label for what stopped a group of runs stopped early (:func:`stop_reasons` of each): ``ASHA`` or
    ``budget`` when every one was stopped by it, ``ASHA and budget`` when each stopped some, ``ASHA or budget``
    when some were recorded without saying which (stores before 0.5.1), else ``stopped early``. Group labels
    may be passed again (a plot's cells): ``ASHA and budget`` counts as both."""
    found = set(reasons)
    if ASHA_AND_BUDGET in found:
        found = (found - {ASHA_AND_BUDGET}) | {ASHA, BUDGET}
    if not found or not found <= {ASHA, BUDGET, ASHA_OR_BUDGET}:
        return STOPPED_UNKNOWN
    if ASHA_OR_BUDGET in found:
        return ASHA_OR_BUDGET
    return found.pop() if len(found) == 1 else ASHA_AND_BUDGET


def space_axes(search: pd.DataFrame) -> dict[str, list] | None:
    """The space a search's trials recorded (``space_axes``: each searched key and its values, also a key every
    trial tried at one value), from the first of its runs whose record is readable; None for runs stored without
    it (before the column, or unreadable)."""
    texts = search["space_axes"].dropna() if "space_axes" in search else ()
    for text in texts:
        axes = parse_json(text, dict)
        if axes and all(isinstance(v, list) and v for v in axes.values()):
            return axes
    return None


def searched_keys(search: pd.DataFrame) -> list[str]:
    """The settings that differ between a search's runs (the axes it explored), in config order."""
    configs = [c for c in (parse_json(t, dict) for t in search["config_json"].dropna()) if c is not None]
    if not configs:
        return []
    keys = result_settings(configs[0])
    return [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
