"""Search efficiency: grid, random, TPE and TPE + ASHA against the compute they spend.

::

    python -m mentor_ray.bench search --write docs/benchmarks.md          # about 30 minutes on 2 CPU cores
    python -m mentor_ray.bench search --searchers tpe+asha,tpe+asha:grace=3 --seeds 0,1,2,3,4

Two steps, on a space small enough to train whole (``tune_spaces/search_bench.yaml``: 81 points of
MENTOR on synth-small):

1. **The table.** Every point of the space is trained as a sweep's search trial trains it (in-process,
   one thread, seed 0, to its own early stop), recording after each epoch what a trial reports to Tune
   (the best validation Recall@20 so far) and the epoch's seconds (training and evaluation). The table is
   kept in ``<work>/table.json`` and an interrupted run continues it. Its best point is the grid's best;
   its epochs and seconds in all are the grid's compute.
2. **The replays.** Each searcher runs through Ray Tune, built as the sweep builds it
   (:func:`mentor_ray.sweep.tune.search_algorithms`: the same Optuna sampler and distinct-point searcher,
   the same ASHA, the same epoch-budget stopper), once per searcher seed, with a trainable that replays a
   point's recorded epochs instead of training: the same reports in the same order, each after a sleep of
   its recorded seconds times ``time_scale``, so that trials interleave as they would. Training is
   deterministic for a fixed thread count, so a replayed trial reports what a re-run would; every searcher
   and seed costs one grid of training instead of one each.

A replay ends when its searcher has spent ``max_fraction`` of the grid's epochs (the sweep's ``--budget``),
or its trials run out. Reported per searcher, over seeds (mean ± std): the best validation Recall@20
found once 5, 10, 25 and 50% of the grid's epochs are spent, the seconds those epochs took, and how
many seeds came within ``TARGET_GAP`` of the grid's best at ``TARGET_FRACTION`` of its compute.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mentor_ray.common.errors import ConfigError
from mentor_ray.common.io import write_json_atomic
from mentor_ray.common.names import REPORTED_METRIC
from mentor_ray.report.board import LOAD_NOTE, Cell, Column, Table
from mentor_ray.report.render import Block, Bullets, block_md

SPACE = "search_bench"
FRACTIONS = (0.05, 0.10, 0.25, 0.50)  # of the grid's epochs: where each searcher's best so far is read
TARGET_FRACTION, TARGET_GAP = 0.10, 0.01  # the target: within 1% of the grid's best at 10% of its compute
DEFAULT_SEARCHERS = "grid,random,tpe,tpe+asha,tpe+asha:grace=3,tpe+asha:grace=3:startup=5"
KINDS = ("grid", "random", "tpe")


@dataclasses.dataclass(frozen=True)
class Searcher:
    """One searcher: an Optuna sampler, with ASHA or not, and its settings."""

    kind: str  # grid | random | tpe
    asha: bool = False
    grace: int | None = None  # ASHA's grace period (None: the sweep's default)
    reduction: int | None = None  # ASHA's reduction factor (None: the sweep's)
    startup: int | None = None  # TPE's random start-up trials (None: the sweep's)

    @property
    def label(self) -> str:
        extra = [f"{k}={v}" for k, v in (("grace", self.grace), ("reduction", self.reduction),
                                         ("startup", self.startup)) if v is not None]
        return self.kind + ("+asha" if self.asha else "") + "".join(f":{e}" for e in extra)


def parse_searchers(text: str) -> list[Searcher]:
    """``grid,random,tpe,tpe+asha:grace=3:startup=5`` to searchers; a bad entry is a one-line error."""
    out = []
    for item in (w.strip() for w in text.split(",")):
        if not item:
            continue
        head, *opts = item.split(":")
        kind, _, asha = head.partition("+")
        if kind not in KINDS or asha not in ("", "asha"):
            raise ConfigError(f"--searchers {item!r}: expected grid, random or tpe, optionally +asha "
                              "(e.g. tpe+asha:grace=3:startup=5)")
        values: dict[str, int] = {}
        for opt in opts:
            key, _, value = opt.partition("=")
            allowed = ("grace", "reduction") + (("startup",) if kind == "tpe" else ())
            if key not in allowed or (key in ("grace", "reduction") and not asha) or not value.isdigit() \
                    or int(value) < (2 if key == "reduction" else 1):
                raise ConfigError(f"--searchers {item!r}: option {opt!r}; allowed: "
                                  f"{', '.join(a + '=N' for a in allowed)} (grace and reduction with +asha; "
                                  "N >= 1, reduction >= 2)")
            values[key] = int(value)
        out.append(Searcher(kind, bool(asha), **values))
    if not out:
        raise ConfigError(f"--searchers {text!r}: no searcher given; e.g. {DEFAULT_SEARCHERS}")
    return out


def point_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


# --------------------------------------------------------------------------- step 1: the table


def base_settings(space, dataset: str, data_root: str | None) -> dict[str, Any]:
    return {"dataset": dataset, "data_root": data_root, **space.settings_for(dataset)}


_WORKER: dict[str, Any] = {}


def _init_worker(dataset: str, data_root: str | None) -> None:
    import torch

    from mentor_ray.common.runtime import worker_logging
    from mentor_ray.datasets.dataset import load_dataset

    worker_logging()
    torch.set_num_threads(1)  # as a sweep trial (--cpus-per-trial 1): the table is what trials would report
    _WORKER["ds"] = load_dataset(dataset, data_root)


def _train_point(args: tuple[dict[str, Any], dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    from mentor_ray.sweep.trials import trial_config
    from mentor_ray.training.ray_train import epoch_metrics
    from mentor_ray.training.trainer import Trainer

    base, point = args
    cfg = trial_config(base, "mentor", 0, point)
    trainer = Trainer(cfg, ds=_WORKER["ds"])
    metric, seconds = [], []

    def on_epoch(record: dict[str, Any]) -> None:
        metric.append(epoch_metrics(trainer)[REPORTED_METRIC])
        seconds.append(record["train"].get("seconds", 0.0) + record["eval_seconds"])

    trainer.fit(on_epoch=on_epoch)
    return point_key(point), {"point": point, "metric": metric, "seconds": seconds,
                              "stop_reason": trainer.stop_reason()}


def build_table(space, dataset: str, data_root: str | None, work: Path, processes: int) -> dict[str, Any]:
    """Train every point (or the ones ``<work>/table.json`` lacks); the table, saved after each point."""
    import multiprocessing as mp

    import torch

    base = base_settings(space, dataset, data_root)
    path = work / "table.json"
    settings = {"space": space.model_dump(exclude={"path"}), "base": base, "torch": torch.__version__, "threads": 1}
    table = {"settings": settings, "points": {}}
    if path.exists():
        try:
            held = json.loads(path.read_text())
        except ValueError:
            held = {}
        if held.get("settings") == settings:
            table = held
        else:
            print(f"[bench] {path}: made with other settings; training the table again", flush=True)
    todo = [p for p in space.points() if point_key(p) not in table["points"]]
    total = space.grid_size
    if todo:
        print(f"[bench] table: training {len(todo)} of {total} points of {space.name} on {dataset} "
              f"({processes} processes, 1 thread each)", flush=True)
    started = time.monotonic()
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes, initializer=_init_worker, initargs=(dataset, data_root)) as pool:
        for i, (key, entry) in enumerate(pool.imap_unordered(_train_point, [(base, p) for p in todo]), 1):
            table["points"][key] = entry
            write_json_atomic(path, table)
            done = total - len(todo) + i
            rate = (time.monotonic() - started) / i
            print(f"[bench] table: {done}/{total} points; {len(entry['metric'])} epochs, best valid R@20 "
                  f"{entry['metric'][-1]:.4f}; about {rate * (len(todo) - i) / 60:.0f} min left", flush=True)
    return table


def grid_totals(table: dict[str, Any]) -> dict[str, Any]:
    entries = list(table["points"].values())
    best = max(entries, key=lambda e: e["metric"][-1])
    return {"points": len(entries), "epochs": sum(len(e["metric"]) for e in entries),
            "seconds": sum(sum(e["seconds"]) for e in entries), "best": best["metric"][-1], "best_point": best["point"],
            "epochs_per_point": statistics.median(len(e["metric"]) for e in entries)}


# --------------------------------------------------------------------------- step 2: the replays


def replay_trial(config: dict[str, Any], table: dict[str, Any], time_scale: float) -> None:
    """A Tune trainable that reports a point's recorded epochs (what training it would report)."""
    import ray.tune

    entry = table[point_key(config)]  # the config is the searched point; point_key sorts its keys
    for metric, seconds in zip(entry["metric"], entry["seconds"]):
        time.sleep(seconds * time_scale)
        ray.tune.report({REPORTED_METRIC: metric, "epoch_seconds": seconds})


def replay(searcher: Searcher, seed: int, space, table: dict[str, Any], budget: int, concurrency: int,
           time_scale: float, storage: Path) -> list[tuple[int, float, float]]:
    """One search; per result in arrival order (epochs spent, seconds spent, best so far)."""
    from ray import tune
    from ray.tune import Callback

    from mentor_ray.sweep.trials import epoch_budget
    from mentor_ray.sweep.tune import search_algorithms

    events: list[tuple[int, float, float]] = []

    class Record(Callback):
        def __init__(self):
            self.epochs, self.seconds, self.best, self.iters = 0, 0.0, -math.inf, {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            it = int(result.get("training_iteration", 0))
            if it <= self.iters.get(trial.trial_id, 0) or self.epochs >= budget:
                return  # past the budget: the stopper ends the search, Tune keeps nothing of it
            self.iters[trial.trial_id] = it
            self.epochs += 1
            self.seconds += float(result["epoch_seconds"])
            self.best = max(self.best, float(result[REPORTED_METRIC]))
            events.append((self.epochs, self.seconds, self.best))

    points = table["points"]  # keyed by point_key already
    max_epochs = max(len(e["metric"]) for e in points.values())
    name = f"{searcher.label.replace(':', '_').replace('=', '')}-s{seed}"
    search_alg, scheduler = search_algorithms(
        space.search, seed=seed, sampler=searcher.kind, asha=searcher.asha, max_epochs=max_epochs,
        grace_period=searcher.grace, reduction=searcher.reduction, startup=searcher.startup, study_name=name)
    # one logical CPU per trial on a Ray of `concurrency` CPUs: no more trial actors than trials at once
    trainable = tune.with_resources(tune.with_parameters(replay_trial, table=points, time_scale=time_scale),
                                    {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(metric=REPORTED_METRIC, mode="max", search_alg=search_alg, scheduler=scheduler,
                                    num_samples=space.grid_size, max_concurrent_trials=concurrency,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=name, storage_path=str(storage), stop=epoch_budget(budget, None),
                                  callbacks=[Record()], verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    tuner.fit()
    return events


def at_fraction(events: list[tuple[int, float, float]], epochs: float) -> tuple[float, float]:
    """(best so far, seconds spent) once ``epochs`` epochs are spent (NaN before the first result)."""
    seen = [e for e in events if e[0] <= epochs]
    return (seen[-1][2], seen[-1][1]) if seen else (math.nan, 0.0)


def search_space(name: str):
    """The space ``--space name`` (a name in ``tune_spaces/`` or a file), refused in one line unless it is a MENTOR
    space that searches something: the benchmark trains its grid whole and replays MENTOR's searchers on it."""
    from mentor_ray.sweep.spaces import load_space

    space = load_space(name)
    if not space.search or space.model != "mentor":
        raise ConfigError(f"--space {name}: the search benchmark needs a MENTOR space that searches something")
    return space


def bench_search(space_name: str, dataset: str, data_root: str | None, searchers: list[Searcher], seeds: list[int],
                 work: Path, processes: int, concurrency: int, max_fraction: float,
                 time_scale: float) -> dict[str, Any]:
    import ray

    space = search_space(space_name)
    work = work.expanduser().resolve()  # Tune's storage path must be absolute
    work.mkdir(parents=True, exist_ok=True)
    table = build_table(space, dataset, data_root, work, processes)
    grid = grid_totals(table)
    budget = max(1, int(math.ceil(max_fraction * grid["epochs"])))
    rows = []
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # a replay's results need no CSV or TensorBoard
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=concurrency, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    try:
        for searcher in searchers:
            per_seed = []
            for seed in seeds:
                t = time.monotonic()
                events = replay(searcher, seed, space, table, budget, concurrency, time_scale, work / "tune")
                per_seed.append(events)
                reached = [e for e in events if e[2] >= (1 - TARGET_GAP) * grid["best"]]
                print(f"[bench] {searcher.label} seed {seed}: best valid R@20 {events[-1][2]:.4f} after "
                      f"{events[-1][0]:,} epochs; within {TARGET_GAP:.0%} of the grid's best after "
                      f"{f'{reached[0][0]:,} epochs' if reached else 'never'} ({time.monotonic() - t:.0f} s)",
                      flush=True)
            rows.append(_row(searcher, per_seed, grid))
    finally:
        if started_ray:
            ray.shutdown()
    res = {"dataset": dataset, "space": space.name, "grid": grid, "rows": rows, "seeds": seeds,
            "concurrency": concurrency, "time_scale": time_scale, "max_fraction": max_fraction,
            "processes": processes,
            "machine": f"{platform.node()} ({os.cpu_count()} CPUs), Python {sys.version.split()[0]}",
            "date": time.strftime("%Y-%m-%d")}
    write_json_atomic(work / "replays.json", res)  # the figures behind the table, to render or compare again
    return res


def _row(searcher: Searcher, per_seed: list[list[tuple[int, float, float]]], grid: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"searcher": searcher.label}
    for f in FRACTIONS:
        found = [at_fraction(events, f * grid["epochs"]) for events in per_seed]
        row[f"best@{f:g}"] = [b for b, _ in found]
        row[f"seconds@{f:g}"] = [s for _, s in found]
    target = row[f"best@{TARGET_FRACTION:g}"]
    row["target_met"] = sum(b >= (1 - TARGET_GAP) * grid["best"] for b in target if not math.isnan(b))
    reach = []
    for events in per_seed:
        hit = [e[0] for e in events if e[2] >= (1 - TARGET_GAP) * grid["best"]]
        reach.append(hit[0] / grid["epochs"] if hit else math.nan)
    row["reach_fraction"] = reach
    return row


def _mean_std(values: list[float]) -> Cell:
    """Mean ± std over seeds (the seeds without a value left out, and counted in the cell's note)."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return Cell(None)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    none = len(values) - len(vals)
    return Cell(statistics.fmean(vals), std, note=f"({none} none)" if none else "")


def search_block(res: dict[str, Any], command: str) -> Block:
    g = res["grid"]
    n = len(res["seeds"])
    columns = [Column("Searcher"), *(Column(f"Best valid R@20 at {f:.0%}", "metric", 4) for f in FRACTIONS),
               Column(f"Seconds at {TARGET_FRACTION:.0%}", "metric", 0),
               Column(f"Seeds within {TARGET_GAP:.0%} at {TARGET_FRACTION:.0%}", "fraction"),
               Column(f"Compute to within {TARGET_GAP:.0%} (median)", "percent", 0)]
    rows = []
    for r in res["rows"]:
        # a seed that never came within the gap counts as beyond the replay's budget
        middle = statistics.median([math.inf if math.isnan(v) else v for v in r["reach_fraction"]])
        median = f"> {res['max_fraction']:.0%}" if math.isinf(middle) else 100 * middle
        rows.append([r["searcher"], *(_mean_std(r[f"best@{f:g}"]) for f in FRACTIONS),
                     _mean_std(r[f"seconds@{TARGET_FRACTION:g}"]), (r["target_met"], n), median])
    best_point = ", ".join(f"{k}={v}" for k, v in g["best_point"].items())
    table = Table.of("bench-search", f"Search efficiency: {res['space']} on {res['dataset']}", columns, rows,
                     note=LOAD_NOTE.replace("(one model after another", "(one searcher after another").replace(
                         ", as `mentor-ray bench models` does", ""))
    return Block(f"Search efficiency: {res['space']} on {res['dataset']} ({g['points']} points)", [
        Bullets((
            f"Command: `{command}`",
            f"Machine: {res['machine']}; date {res['date']}",
            f"The grid: {g['points']} points trained to their own early stop (1 thread each, {res['processes']} at "
            f"once): {g['epochs']:,} epochs, {g['seconds']:,.0f} s of training and "
            f"evaluation (median {g['epochs_per_point']:g} epochs per point); best valid R@20 **{g['best']:.4f}** "
            f"at {best_point}.",
            f"Each searcher replayed through Ray Tune as the sweep builds it, over searcher seeds "
            f"{', '.join(map(str, res['seeds']))}; at most {res['max_fraction']:.0%} of the grid's epochs each "
            f"(the epoch-budget stopper), {res['concurrency']} trials at once. Columns: the best validation "
            f"Recall@20 found once that share of the grid's epochs is spent (mean ± std over seeds); the seconds "
            f"those epochs took; seeds within {TARGET_GAP:.0%} of the grid's best at {TARGET_FRACTION:.0%} of its "
            "epochs (the target); the share of the grid's epochs spent when a seed first came within "
            f"{TARGET_GAP:.0%} (median over seeds).")),
        table])


def search_markdown(res: dict[str, Any], command: str) -> str:
    return block_md(search_block(res, command))
