"""How many trials a search's budget buys, said before Ray starts (``tune --plan``).

A budget in trial-epochs buys few trials when the first ones run long: ASHA cannot stop a trial that leads its
rung, and the first trial at every rung leads it. :func:`trials_for_budget` plays a sequential search (one
trial at a time, as ``--max-concurrent 1``) many times with trials whose quality order is random and the same
at every rung, applying Ray's ASHA rule (continue at a rung when the trial's value is at or above the
(1 - 1/reduction) percentile of the values recorded there, its own included); each trial runs to the cap
unless stopped (early stopping, which would end trials sooner, is not modelled: the counts are for the
worst case of it). It reports the mean number of trials the budget starts, and the guaranteed number (every
trial to the cap: each beats all before it).
"""

from __future__ import annotations

import dataclasses
import math
import random


def rungs(grace_period: int, reduction: int, max_epochs: int) -> list[int]:
    """ASHA's milestones below the cap: grace, grace x reduction, ... (epochs)."""
    out, r = [], max(1, grace_period)
    while r < max_epochs:
        out.append(r)
        r *= reduction
    return out


def _continues(value: float, recorded: list[float], reduction: int) -> bool:
    values = sorted(recorded)
    q = (1 - 1 / reduction) * (len(values) - 1)  # numpy's linear percentile, as Ray's ASHA takes it
    lo = math.floor(q)
    cutoff = values[lo] + (values[min(lo + 1, len(values) - 1)] - values[lo]) * (q - lo)
    return value >= cutoff


def play(budget: int, max_epochs: int, grace_period: int, reduction: int, rng: random.Random,
         limit: int | None = None) -> int:
    """Trials one sequential search starts within ``budget`` trial-epochs (at most ``limit``)."""
    milestones = rungs(grace_period, reduction, max_epochs)
    recorded: dict[int, list[float]] = {m: [] for m in milestones}
    spent = started = 0
    while spent < budget and (limit is None or started < limit):
        started += 1
        value, epochs = rng.random(), max_epochs
        for m in milestones:
            recorded[m].append(value)
            if not _continues(value, recorded[m], reduction):
                epochs = m
                break
        spent += epochs
    return started


@dataclasses.dataclass(frozen=True)
class SearchPlan:
    budget: int
    max_epochs: int
    milestones: list[int]
    guaranteed: int  # trials when every trial runs to the cap
    expected: float  # mean trials over random quality orders
    grid: int
    warm: int  # known points evaluated first
    startup: int  # TPE's random trials before it models anything

    @property
    def informed(self) -> float:
        """Trials TPE proposes from a model of the ones before (expected)."""
        return max(0.0, min(self.expected, self.grid) - max(self.warm, self.startup))


def search_plan(budget: int, max_epochs: int, grace_period: int, reduction: int, grid: int, warm: int,
                startup: int, plays: int = 200, seed: int = 0) -> SearchPlan:
    rng = random.Random(seed)
    counts = [play(budget, max_epochs, grace_period, reduction, rng, limit=grid) for _ in range(plays)]
    return SearchPlan(budget, max_epochs, rungs(grace_period, reduction, max_epochs),
                      min(grid, math.ceil(budget / max_epochs)), sum(counts) / len(counts), grid, warm, startup)


def budget_for(trials: int, max_epochs: int, grace_period: int, reduction: int, grid: int, plays: int = 100) -> int:
    """The smallest budget (a multiple of the grace period) whose expected trial count reaches ``trials``."""
    step, budget = max(1, grace_period), max(1, grace_period)
    target = min(trials, grid)
    while budget < target * max_epochs:
        if search_plan(budget, max_epochs, grace_period, reduction, grid, 0, 0, plays).expected >= target:
            return budget
        budget += step * max(1, budget // (20 * step))  # coarser as it grows: the answer, not its last epoch
    return target * max_epochs


def plan_lines(label: str, p: SearchPlan, sources: list[str], grace_period: int, reduction: int) -> list[str]:
    """The plan of one search as lines, its warning last when it has one."""
    rung = ", ".join(map(str, p.milestones)) or "none (grace period at or above the cap)"
    known = f"{p.warm} known point(s) first ({'; '.join(sources)}), then " if p.warm else ""
    lines = [f"[mentor_ray] {label}: search plan: budget {p.budget:,} trial-epochs, up to {p.max_epochs} epochs "
             f"a trial, ASHA rungs at {rung} (reduction {reduction}): {p.guaranteed} trial(s) for certain (every "
             f"one to the cap), about {p.expected:.1f} expected (of a grid of {p.grid:,}); {known}TPE, random for "
             f"its first {p.startup} trials"]
    need = max(p.warm, p.startup) + 3  # a few trials TPE proposes from a model
    if p.grid > 1 and p.expected < min(need, p.grid):
        budget = budget_for(need, p.max_epochs, grace_period, reduction, p.grid)
        cap = next((e for e in range(p.max_epochs - 1, grace_period - 1, -1)
                    if search_plan(p.budget, e, grace_period, reduction, p.grid, 0, 0, 100).expected >= need), None)
        fixes = [f"--budget {budget:,}"] + ([f"--max-epochs {cap}"] if cap else []) + \
                [f"a smaller space (--space with fewer axes; this one has {p.grid:,} points)"]
        lines.append(f"[mentor_ray] {label}: warning: about {p.expected:.1f} trials fit the budget, fewer than the "
                     f"{need} it takes for {'the known points and ' if p.warm else ''}TPE's {p.startup} random "
                     f"start-up trials to leave TPE any say: the search is mostly "
                     f"{'the known points and ' if p.warm else ''}random draws; for ~{need} trials use "
                     + " or ".join(fixes))
    return lines
