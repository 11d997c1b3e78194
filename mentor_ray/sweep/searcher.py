"""Optuna search over a finite grid that never proposes the same point twice.

TPE samples a grid of categorical axes with replacement (its random start too), so on a small grid a
sweep spends trials on points it has already run (``docs/results.md``, *Findings behind defaults*). A
run is deterministic for its configuration and seed, so a repeat is a whole trial for a result already
known.

:class:`DistinctOptunaSearch` keeps Optuna's proposals (TPE, or the grid sampler) and refuses a repeat:
the repeated ask is told to Optuna as failed (TPE ignores failed trials) and Optuna is asked again;
after ``tries`` repeats in a row it enqueues an unseen point of the grid, drawn with a seeded RNG, so
every trial is a new point until the grid is exhausted; then it tells Tune the search is finished.

With ``ordered`` (a grid search) it proposes the grid in one fixed order, a seeded shuffle of the whole grid:
each proposal is the first point of that order not proposed yet (points already waiting in the study, such as a
resumed search's cut-off trials, go first). Optuna's grid sampler gives trial *number* n the n-th point of its
shuffle, so a resumed study, whose numbers the first driver's unfinished and re-enqueued trials have used up,
ran the rest of the grid in another order than an uninterrupted search; ASHA judges each trial against those
before it, so the order is part of the result.

:class:`TuneGridSampler` is Optuna's grid sampler without its ``Study.stop`` once the grid is exhausted:
that call only works inside ``Study.optimize``, which Tune's ask-and-tell never runs, so it raised (and
Ray logged a warning) after the last grid point.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any, Sequence

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from mentor_ray.training.ray_compat import optuna_live_trials, optuna_study


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


class TuneGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, driven by Tune: the search ends when :class:`DistinctOptunaSearch` has
    proposed every point (or at Tune's trial count), not by ``Study.stop``."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


class DistinctOptunaSearch(OptunaSearch):
    def __init__(self, grid: dict[str, list], *, seed: int = 0, tries: int = 20,
                 seen: Sequence[dict[str, Any]] = (), ordered: bool = False, **kwargs: Any):
        space = {k: optuna.distributions.CategoricalDistribution(v) for k, v in grid.items()}
        super().__init__(space, **kwargs)
        self._grid, self._tries, self._rng = grid, tries, random.Random(seed)
        self._size = math.prod(len(v) for v in grid.values())  # the grid's points
        self._seen: set[tuple] = {_key(p) for p in seen}  # a resumed search's finished points
        self._order: list[dict[str, Any]] | None = None
        if ordered:  # the whole grid in one seeded order (its own RNG: the repeat fallback's draws are unchanged)
            self._order = [dict(zip(grid, v)) for v in itertools.product(*grid.values())]
            random.Random(seed).shuffle(self._order)

    def suggest(self, trial_id: str) -> dict | str | None:
        if len(self._seen) >= self._size:  # every point proposed: nothing new to run
            return Searcher.FINISHED
        for _ in range(self._tries):
            if self._order is not None and not self._waiting():
                optuna_study(self).enqueue_trial(next(p for p in self._order if _key(p) not in self._seen))
            params = super().suggest(trial_id)
            if params is None or _key(params) not in self._seen:
                return self._remember(params)
            optuna_study(self).tell(optuna_live_trials(self).pop(trial_id), state=optuna.trial.TrialState.FAIL)
        keys = list(self._grid)
        unseen = [p for p in (dict(zip(keys, v)) for v in itertools.product(*self._grid.values()))
                  if _key(p) not in self._seen]
        optuna_study(self).enqueue_trial(self._rng.choice(unseen))  # the grid is not exhausted (checked above)
        return self._remember(super().suggest(trial_id))

    def _waiting(self) -> bool:
        """Whether the study holds enqueued points not yet proposed (warm starts, a resume's cut-off trials)."""
        return bool(optuna_study(self).get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))

    def _remember(self, params: dict | None) -> dict | None:
        if params is not None:
            self._seen.add(_key(params))
        return params
