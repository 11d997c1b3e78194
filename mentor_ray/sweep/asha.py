"""ASHA whose state outlives the driver: a resumed search judges its trials as an uninterrupted one would.

Tune's ``ASHAScheduler`` keeps its rungs in the driver's memory, keyed by Tune's trial ids, and counts a trial's
progress in ``training_iteration`` (reports in this attempt). A resumed search is a new Tune experiment: its
rungs start empty, the trials cut off at the interrupt come back under new ids and count their epochs from the
checkpoint they continue, so they are judged late, against nothing, or not at all (a user's quickstart ended
5 completed / 3 stopped after a Ctrl-C and ``--resume`` instead of 3 / 5).

:class:`LedgerASHA` is the same rule (asynchronous successive halving, one bracket, as ``ASHAScheduler`` with
its defaults: Li et al., MLSys 2020) with three changes that make it a function of the sweep's history rather
than of one driver's memory:

* a trial is known by its key (its settings and seed, :func:`mentor_ray.sweep.trials.trial_key`), which
  stays the same across attempts;
* its time is its absolute epoch count (``epoch + 1`` from the trainer, which continues across checkpoints);
* every value recorded at a rung, with the decision taken there, is written to a ledger (JSON, rewritten
  atomically at each record) that the next driver reads back. A trial that comes back is not judged again at a
  rung it passed, and one that was to be stopped there is stopped;
* a trial that comes back with a checkpoint past a rung it was never judged at (its result reached the worker's
  checkpoint but not this scheduler: the driver was interrupted first, or it started while the driver was
  stopping) is judged there before it trains on, on the value it reported at that rung
  (:meth:`LedgerASHA.catch_up`), not on a later one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from mentor_ray.common.io import write_json_atomic


def milestones(grace_period: int, max_t: int, reduction_factor: float) -> list[int]:
    """The rungs, as ``ASHAScheduler`` places them: ``grace_period * rf**k`` for
    ``k < int(log(max_t / grace_period) / log(rf) + 1)``, highest first."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return [int(round(grace_period * reduction_factor**k)) for k in reversed(range(count))]


def read_ledger(path: Path | None) -> dict[str, dict[str, list]]:
    """The rungs a ledger holds: run key -> {milestone (str): [value, stopped there]}; an entry that is not of
    that shape is left out (that run is judged again)."""
    try:
        data = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}
    out: dict[str, dict[str, list]] = {}
    for key, rungs in (data.items() if isinstance(data, dict) else ()):
        if isinstance(rungs, dict):
            out[str(key)] = {str(m): [float(v[0]), bool(v[1])] for m, v in rungs.items()
                             if isinstance(v, list) and len(v) == 2 and isinstance(v[0], (int, float))}
    return out


def reported_values(curve: list[float]) -> list[float]:
    """What a trial reported to Tune after each epoch, from its per-epoch validation ``curve``: the best so far
    (:data:`mentor_ray.common.names.REPORTED_METRIC`), by the trainer's rule (a value replaces the best when it
    is greater, the first one always)."""
    out: list[float] = []
    for value in curve:
        out.append(float(value) if not out or value > out[-1] else out[-1])
    return out


def stopped_at(recorded: dict[str, dict[str, list]], key: str) -> int | None:
    """The rung (epochs) at which ASHA stopped run ``key``, or None."""
    stops = [int(m) for m, (_, stop) in recorded.get(key, {}).items() if stop and m.isdigit()]
    return min(stops) if stops else None


class LedgerASHA(FIFOScheduler):
    """Asynchronous successive halving over absolute epochs, with its rungs kept in ``ledger``.

    Args:
        key_of: a trial's config -> its key (the same for every attempt of the same run).
        grace_period: epochs before the first rung.
        max_t: a trial that reaches this many epochs is stopped (the sweep passes one past its epoch cap, so that
            trials end by themselves).
        reduction_factor: a trial goes on from a rung only when its value is at least the
            ``1 - 1/reduction_factor`` quantile of the values recorded there before it.
        ledger: where the rungs are kept across drivers (None: in memory only, as Tune's own).
    """

    def __init__(self, key_of: Callable[[dict[str, Any]], str], grace_period: int, max_t: int,
                 reduction_factor: float = 3, ledger: Path | None = None):
        super().__init__()
        self.key_of, self.max_t, self.rf, self.ledger = key_of, max_t, reduction_factor, ledger
        self.rungs = milestones(grace_period, max_t, reduction_factor)
        self._metric, self._mode = None, "max"  # TrialScheduler's (its metric and mode properties read these)
        self._keys: dict[str, str] = {}
        self.recorded = read_ledger(ledger)  # run key -> {milestone: [value, stopped there]}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def cutoff(self, milestone: int) -> float | None:
        values = [v for rungs in self.recorded.values() for m, (v, _) in rungs.items() if m == str(milestone)]
        return float(np.nanpercentile(values, (1 - 1 / self.rf) * 100)) if values else None

    def decide(self, key: str, epochs: int, value: float) -> str:
        """The decision for run ``key`` after ``epochs`` epochs with ``value`` (already signed: higher is
        better); records it at the highest rung the run has reached and not yet passed."""
        mine = self.recorded.setdefault(key, {})
        for milestone in self.rungs:  # highest first
            if epochs < milestone:
                continue
            if str(milestone) in mine:  # judged before (in this attempt or an earlier one): that decision stands
                if mine[str(milestone)][1]:
                    return TrialScheduler.STOP
                continue
            cutoff = self.cutoff(milestone)
            stop = cutoff is not None and value < cutoff
            mine[str(milestone)] = [value, stop]
            if self.ledger is not None:
                write_json_atomic(self.ledger, self.recorded)
            return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE
        return TrialScheduler.CONTINUE

    def catch_up(self, key: str, reported: list[float]) -> int | None:
        """Judge run ``key`` at every rung it reached without being judged there, lowest first, as the results
        came: ``reported[e]`` is what it reported after epoch ``e + 1`` (the metric, unsigned), as read from its
        checkpoint. Returns the rung at which it is (or was before) stopped, else None."""
        sign = 1.0 if self._mode == "max" else -1.0
        for milestone in reversed(self.rungs):  # lowest first
            if milestone > len(reported) or milestone >= self.max_t:
                break
            if self.decide(key, milestone, sign * float(reported[milestone - 1])) == TrialScheduler.STOP:
                break
        return stopped_at(self.recorded, key)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._metric is None or self._metric not in result:
            return TrialScheduler.CONTINUE
        key = self._keys.get(trial.trial_id)
        if key is None:
            key = self._keys[trial.trial_id] = self.key_of(trial.config)
        # the trainer's absolute epoch (continues across checkpoints); a trainable without one (the search
        # benchmark's replay) counts its reports
        epochs = int(result["epoch"]) + 1 if "epoch" in result else int(result.get("training_iteration", 0))
        if epochs >= self.max_t:  # as Tune's ASHA: stopped at the cap, nothing recorded
            return TrialScheduler.STOP
        sign = 1.0 if self._mode == "max" else -1.0
        return self.decide(key, epochs, sign * float(result[self._metric]))

    def debug_string(self) -> str:
        rungs = ", ".join(f"{m} epochs: {sum(str(m) in r for r in self.recorded.values())} recorded"
                          for m in self.rungs)
        return f"ASHA with a ledger (rungs at {rungs})"
