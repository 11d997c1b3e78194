"""What warm starts buy at a small budget: real searches on a real dataset, with and without the known points.

::

    python -m mentor_ray.bench warmstart --dataset tiktok --data-root ../shared/datasets --budget 150 \\
        --max-epochs 100 --spaces lightgcn_grid,mentor_joint --overrides mentor_joint=infonce_scope=batch \\
        --best-known lightgcn_grid=0.1104,mentor_joint=0.1088 --work runs/warm --write docs/benchmarks.md

For each space and searcher seed (``--seeds``, default 0: the sweep's ``--seed``, which seeds TPE's draws and the
trials), two searches of ``--budget`` trial-epochs, one trial at a time (``--max-concurrent 1``, one thread,
``--search-only``): ``warm`` (the sweep's default: the model's published defaults and the
space's ``start_points`` first, then TPE) and ``cold`` (``--no-warm-start``: TPE from its random start-up).
Each runs as ``python -m mentor_ray.tune`` would run it, into ``<work>/<model>-<mode>/`` (seed 0) or
``<work>/<model>-<mode>-seed<N>/``; a search whose store already holds its trials is read, not re-run, so an
interrupted benchmark continues. The table: per space, mode and seed, the trials and trial-epochs spent, the
best validation Recall@20 and its point, and that value as a share of the best known for the model on the
dataset (``--best-known``: found by larger searches; none is used as a start point); with more than one seed,
a second table per space and mode: the mean and lowest share over the seeds and how many reach the target.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mentor_ray.report.board import Column, Table
from mentor_ray.report.render import Block, Bullets

MODES = ("warm", "cold")
TARGET = 0.97  # the target: with warm starts, 97% of the best known


def run_dir(work: Path, model: str, mode: str, seed: int = 0) -> Path:
    return Path(work) / (f"{model}-{mode}" if seed == 0 else f"{model}-{mode}-seed{seed}")


def search_rows(results_dir: Path) -> list[dict[str, Any]]:
    """One dict per search trial of the store: config, status, epochs, best valid R@20 (by run id order)."""
    from mentor_ray.report import results

    if not results_dir.is_dir() or not any(results_dir.glob("*.parquet")):
        return []
    t = results.read_results(results_dir, role="search", split="valid", metric="recall", k=20).to_pandas()
    t = t.drop_duplicates("run_id").sort_values("started_at", kind="mergesort")
    return [{"config": json.loads(r.config_json), "status": r.status, "epochs": int(r.epochs_run),
             "best": float(r.value), "run_id": r.run_id} for r in t.itertuples()]


def run_search(space: str, mode: str, dataset: str, data_root: str | None, budget: int, max_epochs: int,
               overrides: list[str], work: Path, seed: int = 0) -> None:
    from mentor_ray.sweep.spaces import load_space
    from mentor_ray.sweep.tune import SweepOptions, run_sweeps

    model = load_space(space).model
    root = run_dir(work, model, mode, seed)
    run_sweeps(SweepOptions(dataset=dataset, data_root=data_root, space=space, budget=budget, max_epochs=max_epochs,
                            seeds=1, seed=seed, cpus_per_trial=1.0, max_concurrent=1, quiet=True, search_only=True,
                            no_warm_start=mode == "cold", results=str(root / "results"),
                            storage=str((root / "tune").resolve()), leaderboard="none", overrides=overrides))


def bench_warmstart(spaces: list[str], dataset: str, data_root: str | None, budget: int, max_epochs: int,
                    overrides: dict[str, list[str]], best_known: dict[str, float], work: Path,
                    seeds: list[int] | None = None) -> dict[str, Any]:
    from mentor_ray.sweep.spaces import load_space

    rows, seeds = [], list(seeds or [0])
    for space in spaces:
        s = load_space(space)
        axes = list(s.search)
        for seed in seeds:
            for mode in MODES:
                root = run_dir(work, s.model, mode, seed)
                found = search_rows(root / "results")
                if not found:
                    run_search(space, mode, dataset, data_root, budget, max_epochs, overrides.get(space, []), work,
                               seed)
                    found = search_rows(root / "results")
                best = max(found, key=lambda r: r["best"]) if found else None
                known = best_known.get(space)
                rows.append({"space": space, "model": s.model, "mode": mode, "seed": seed, "trials": len(found),
                             "epochs": sum(r["epochs"] for r in found), "best": best["best"] if best else None,
                             "point": {k: best["config"][k] for k in axes} if best else None,
                             "first": {k: found[0]["config"][k] for k in axes} if found else None,
                             "known": known, "share": best["best"] / known if best and known else None})
    return {"dataset": dataset, "budget": budget, "max_epochs": max_epochs, "rows": rows, "work": str(work),
            "overrides": overrides, "seeds": seeds}


def seed_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per space and mode, over its seeds: how many, the mean and lowest share of the best known, and how many
    reach :data:`TARGET` (rows without a share are left out)."""
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        if r["share"] is not None:
            groups.setdefault((r["space"], r["mode"]), []).append(r["share"])
    return [{"space": space, "mode": mode, "seeds": len(v), "mean": sum(v) / len(v), "lowest": min(v),
             "reached": sum(x >= TARGET for x in v)} for (space, mode), v in groups.items()]


def _point(p: dict[str, Any] | None) -> str | None:
    if not p:
        return None
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def warmstart_block(res: dict[str, Any], command: str) -> Block:
    import datetime as dt

    from mentor_ray.benchmarks.bench import machine

    seeds = res.get("seeds", [0])
    many = len(seeds) > 1
    table = Table.of("warmstart", f"Warm starts at {res['budget']} trial-epochs on {res['dataset']}",
                     [Column("Space"), Column("Start"), *([Column("Seed", "number", 0)] if many else []),
                      Column("Trials", "number", 0),
                      Column("Trial-epochs", "number", 0), Column("Best valid R@20", "number", 4),
                      Column("Best known", "number", 4), Column("Share of best known", "percent", 1),
                      Column(f"≥ {TARGET:.0%}"), Column("Best point", wrap=True), Column("First trial", wrap=True)],
                     [[r["space"], r["mode"], *([r.get("seed", 0)] if many else []), r["trials"], r["epochs"],
                       r["best"], r["known"], None if r["share"] is None else 100 * r["share"],
                       None if r["share"] is None else ("yes" if r["share"] >= TARGET else "no"),
                       _point(r["point"]), _point(r["first"])] for r in res["rows"]],
                     note="No times here: the budget is in trial-epochs, so the table holds whatever the load.")
    parts = [table]
    if many:
        parts.append(Table.of("warmstart_seeds", f"Over {len(seeds)} searcher seeds",
                              [Column("Space"), Column("Start"), Column("Seeds", "number", 0),
                               Column("Mean share", "percent", 1), Column("Lowest share", "percent", 1),
                               Column(f"Seeds ≥ {TARGET:.0%}", "number", 0)],
                              [[g["space"], g["mode"], g["seeds"], 100 * g["mean"], 100 * g["lowest"], g["reached"]]
                               for g in seed_summary(res["rows"])]))
    spaces = ", ".join(dict.fromkeys(r["space"] for r in res["rows"]))
    seed_list = ",".join(map(str, seeds))
    return Block(f"Warm starts: {res['dataset']}, --budget {res['budget']}, {spaces}", [
        Bullets((f"Command: `{command}`", f"Machine: {machine()}", f"Date: {dt.date.today().isoformat()}",
                 f"Each search: `python -m mentor_ray.tune --search-only --max-concurrent 1 --cpus-per-trial 1 "
                 f"--seed {{{seed_list}}} --budget {res['budget']} --max-epochs {res['max_epochs']}` (warm: the "
                 "default; cold: `--no-warm-start`); settings " + (", ".join(f"{k}: {' '.join(v)}" for k, v in
                                                                  res["overrides"].items()) or "none"))),
        *parts])
