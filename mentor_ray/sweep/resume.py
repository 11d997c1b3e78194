"""``--resume`` from what mentor_ray writes itself, never from Ray Tune's pickled experiment state.

Ray's ``Tuner.restore`` unpickles ``tuner.pkl``, the searcher state and every trial's state from the
experiment folder, so anyone who can write under ``--storage`` (often a shared bucket or NFS) could run
code in the driver of whoever resumes. A resumed phase therefore starts a *fresh* Tune experiment, an
*attempt*, in a new folder beside the old ones (``<name>``, ``<name>.resume-2``, ...), and rebuilds what
it must know from plain data:

* **the journal** (``<results>/.journal/<experiment>/<key>.json``): one JSON summary per trial that
  ended (completed, stopped early, or failed), written by the results callback as the trial ends. Ended
  trials are not run again; failed ones are (as ``restart_errored`` did).
* **the Optuna study** (an SQL database of plain rows: the searched points and their values): the
  searcher goes on from every point it has seen.
* **the budget ledger** (JSON): trial-epochs spent so far.
* **checkpoints** of the trials that were cut off: their configs are read from Tune's ``params.json``
  (JSON, checked against the config schema) and their newest checkpoint folder is handed to the re-run
  trial, which loads it with ``torch.load(weights_only=True)`` after checking its checksum. Only plain
  folders inside the attempt folders count (symbolic links are not followed).

Nothing in the old attempt folders is unpickled: ``tuner.pkl``, ``searcher-state-*.pkl``,
``params.pkl`` and ``experiment_state-*.json`` (whose trial entries hold pickles) are never read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from mentor_ray.common.io import read_json, write_json_atomic
from mentor_ray.common.names import STATE_FILE, SUMMARY_FILE
from mentor_ray.sweep.trials import summary_key, trial_key, trial_values

log = logging.getLogger(__name__)

ATTEMPT = ".resume-"  # <name>.resume-2, <name>.resume-3, ...: the attempts after the first
JOURNAL = ".journal"  # under the results store; a hidden folder, so Parquet readers skip it
MAX_JSON_BYTES = 4 << 20  # a params.json or summary.json is a few KB (a summary with per-user values, a few MB)


def attempts(storage: str, name: str) -> list[Path]:
    """The folders of the experiment's attempts so far, oldest first (local storage only)."""
    if "://" in storage:
        return []
    root = Path(storage)
    found = []
    if (root / name).is_dir() and not (root / name).is_symlink():
        found.append((1, root / name))
    pattern = re.compile(re.escape(name + ATTEMPT) + r"(\d{1,6})")
    try:
        entries = list(os.scandir(root))
    except OSError:
        entries = []
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m and entry.is_dir(follow_symlinks=False):
            found.append((int(m.group(1)), Path(entry.path)))
    return [p for _, p in sorted(found)]


def attempt_name(storage: str, name: str) -> str:
    """The folder name of the next attempt: ``name`` for the first, ``name.resume-N`` after."""
    done = attempts(storage, name)
    if not done:
        return name
    last = max((int(p.name.rsplit(ATTEMPT, 1)[1]) if ATTEMPT in p.name else 1) for p in done)
    return f"{name}{ATTEMPT}{last + 1}"


class Journal:
    """The ended trials of one experiment (all its attempts): ``<results>/.journal/<experiment>/<key>.json``."""

    def __init__(self, results: str | Path, experiment: str):
        self.folder = Path(results) / JOURNAL / experiment

    def add(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.folder / f"{summary_key(summary)}.json", summary)

    def ended(self) -> dict[str, dict[str, Any]]:
        """Every journalled trial's summary, by :func:`trial_key`; an unreadable entry is left out (its
        trial runs again), with a warning."""
        out: dict[str, dict[str, Any]] = {}
        if not self.folder.is_dir():
            return out
        for path in sorted(self.folder.glob("*.json")):
            summary = _read_small_json(path)
            try:
                key = summary_key(summary)
                assert summary["status"] in ("completed", "stopped_early", "failed")
            except Exception:  # noqa: BLE001 - anything malformed is a missing entry, not a crash
                log.warning("%s: not a trial summary; that trial will run again", path)
                continue
            out[key] = summary
        return out


def _read_small_json(path: Path) -> Any:
    """JSON from a regular file of at most :data:`MAX_JSON_BYTES` (else None): never a FIFO, never a huge read."""
    try:
        st = path.stat()
        if not path.is_file() or path.is_symlink() or st.st_size > MAX_JSON_BYTES:
            return None
    except OSError:
        return None
    return read_json(path)


def _trial_folders(attempt: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(attempt))
    except OSError:
        return
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def _reported_checkpoint(folder: Path) -> Path | None:
    """The Ray Train checkpoint a DDP trial last reported (``checkpoint_path`` in the last line of Tune's
    ``result.json``, JSON lines; read from its end, at most the last MiB)."""
    path = folder / "result.json"
    try:
        if not path.is_file() or path.is_symlink():
            return None
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - (1 << 20)))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            reported = json.loads(line).get("checkpoint_path")
        except (ValueError, AttributeError):
            continue
        if isinstance(reported, str) and reported:
            return Path(reported)
    return None


def _newest_checkpoint(folder: Path) -> tuple[Path, int, dict[str, Any]] | None:
    """The newest checkpoint of a trial holding a state file and a readable summary, with the epochs its
    summary counts and the summary: one of its Tune checkpoint folders (``checkpoint_<n>``), or for a DDP
    trial the Ray Train checkpoint it last reported."""
    best = None
    candidates = [Path(e.path) for e in os.scandir(folder)
                  if re.fullmatch(r"checkpoint_(\d{1,9})", e.name) and e.is_dir(follow_symlinks=False)]
    reported = _reported_checkpoint(folder)
    if reported is not None and reported.is_dir() and not reported.is_symlink():
        candidates.append(reported)
    for path in candidates:
        state = path / STATE_FILE
        summary = _read_small_json(path / SUMMARY_FILE)
        if not state.is_file() or state.is_symlink() or not isinstance(summary, dict):
            continue
        epochs = summary.get("epochs_run")
        if not isinstance(epochs, int) or isinstance(epochs, bool):
            continue
        if best is None or epochs > best[1]:
            best = (path, epochs, summary)
    return best


def _keyed_trials(storage: str, name: str) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """Every trial folder of the experiment's attempts with its key and settings, read from Tune's
    ``params.json`` (JSON, checked against the config schema); a folder that is not a trial of ours, or a
    damaged one, is left out (its trial runs again from the start)."""
    from pydantic import ValidationError

    from mentor_ray.common.config import TrainConfig

    for attempt in attempts(storage, name):
        for folder in _trial_folders(attempt):
            try:
                cfg = TrainConfig.model_validate(trial_values(_read_small_json(folder / "params.json")))
            except (ValidationError, KeyError, TypeError, ValueError):
                continue
            config = cfg.model_dump()
            yield folder, trial_key(cfg.variant, config, cfg.seed), config


def cut_off_trials(storage: str, name: str, ended: set[str]) -> dict[str, dict[str, Any]]:
    """The trials of the experiment's earlier attempts that neither ended nor are journalled, by key:
    ``{"config": settings, "checkpoint": newest checkpoint folder or None, "epochs": its epochs, "summary":
    the run summary saved with it}``; the newest checkpoint over all attempts wins (a trial may have been cut
    off more than once)."""
    root = Path(storage).resolve() if "://" not in storage else None
    out: dict[str, dict[str, Any]] = {}
    for folder, key, config in _keyed_trials(storage, name):
        if key in ended:
            continue
        found = _newest_checkpoint(folder)
        if found and root is not None and not found[0].resolve().is_relative_to(root):
            found = None  # only checkpoints inside --storage
        entry = out.setdefault(key, {"config": config, "checkpoint": None, "epochs": 0, "summary": None})
        if found and found[1] > entry["epochs"]:
            entry["checkpoint"], entry["epochs"], entry["summary"] = str(found[0]), found[1], found[2]
    return out


def prune_ended(storage: str, name: str, ended: set[str]) -> int:
    """Free the checkpoints of the experiment's trials that ended (completed or stopped, by key; failed ones
    run again on ``--resume``, from their checkpoints, and keep them): their older checkpoint folders go and
    the newest keeps only its run summary (what the trial reported; the results store already holds its
    rows). Nothing else reads them: ``--resume`` takes an ended trial from the journal and the leaderboard
    reads the store. A DDP trial's Ray Train checkpoints (under ``--storage``) are pruned the same way. Only
    a local ``--storage``; returns the bytes freed."""
    if "://" in storage or not ended:
        return 0
    root = Path(storage).resolve()
    freed = 0
    for folder, key, _ in _keyed_trials(storage, name):
        if key not in ended:
            continue
        holders = [folder]
        reported = _reported_checkpoint(folder)
        if reported is not None and not reported.is_symlink() and reported.resolve().is_relative_to(root):
            holders.append(reported.parent)
        for holder in holders:
            freed += _keep_summary_only(holder)
    return freed


def _keep_summary_only(holder: Path) -> int:
    """In ``holder``'s ``checkpoint_<n>`` folders: all but the newest removed, the newest cut to its summary."""
    try:
        found = sorted((int(m.group(1)), Path(e.path)) for e in os.scandir(holder)
                       if (m := re.fullmatch(r"checkpoint_(\d{1,9})", e.name)) and e.is_dir(follow_symlinks=False))
    except OSError:
        return 0
    freed = 0
    for i, (_, path) in enumerate(found):
        newest = i == len(found) - 1
        for entry in list(os.scandir(path)):
            if not (newest and entry.name == SUMMARY_FILE):
                freed += _remove(Path(entry.path))
        if not newest:
            with contextlib.suppress(OSError):
                path.rmdir()
    return freed


def _remove(path: Path) -> int:
    """Remove a file or a folder (never following a link); the bytes it held, 0 where it could not go."""
    try:
        if path.is_dir() and not path.is_symlink():
            size = sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
            shutil.rmtree(path)
            return size
        size = path.lstat().st_size
        path.unlink()
        return size
    except OSError:
        return 0


def describe(done: int, retry: int, cut_off: dict[str, dict[str, Any]]) -> str:
    """One line on what a resumed phase takes over."""
    warm = sum(1 for c in cut_off.values() if c["checkpoint"])
    parts = [f"{done} trial(s) ended before"]
    if retry:
        parts.append(f"{retry} failed one(s) to run again")
    if cut_off:
        parts.append(f"{len(cut_off)} cut off ({warm} continue from their checkpoints)")
    return ", ".join(parts)


def study_points(study_name: str, storage) -> tuple[list[dict[str, Any]], int]:
    """The points an Optuna study has finished, after marking the trials an earlier driver left running as
    failed (their trials run again, enqueued by the caller); and how many it marked."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return [], 0
    marked = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        marked += 1
    done = [dict(t.params) for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    return done, marked


def enqueue(study_name: str, storage, points: list[dict[str, Any]]) -> None:
    import optuna

    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True, direction="maximize")
    for point in points:
        study.enqueue_trial(point, skip_if_exists=False)
