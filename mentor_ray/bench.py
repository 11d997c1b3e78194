"""Benchmarks written to ``docs/benchmarks.md``, and the GPU check (:mod:`mentor_ray.benchmarks`).

::

    mentor-ray bench graphs --dataset synth-clothing --write docs/benchmarks.md
    mentor-ray bench graphs --dataset tiktok --data-root ../shared/datasets
    mentor-ray bench train --dataset tiktok --data-root ../shared/datasets --variant mentor \\
        --epochs 3 --write docs/benchmarks.md infonce_scope=batch
    mentor-ray bench ray --dataset tiktok --data-root ../shared/datasets --workers 1,2 \\
        --cpus 2 --epochs 3 --write docs/benchmarks.md infonce_scope=batch
    mentor-ray bench tune --dataset synth-small --trials 6 --workers-per-trial 1,2 \\
        --write docs/benchmarks.md
    mentor-ray bench models --dataset synth-baby --epochs 3 --threads 1 --write docs/benchmarks.md   # Table 3
    mentor-ray bench faults --write docs/benchmarks.md      # the fault campaign (about 15 minutes)
    mentor-ray bench search --write docs/benchmarks.md      # grid, random, TPE, TPE + ASHA (about 40 minutes)
    mentor-ray bench warmstart --dataset tiktok --data-root ../shared/datasets --budget 150 \\
        --overrides mentor_joint=infonce_scope=batch --best-known lightgcn_grid=0.1104,mentor_joint=0.1088 \\
        --seeds 0,1,2                                     # a search per searcher seed (~5 min LightGCN, ~25 MENTOR)

The GPU check (:mod:`mentor_ray.benchmarks.gpucheck`; TikTok optional: a data root holding ``tiktok/``)::

    python -m mentor_ray.bench gpu --out gpu-check/ [--tiktok /path/to/datasets]            # on the GPU node
    python -m mentor_ray.bench gpu --out DIR --device cpu --datasets synth-tiny --epochs 1  # CPU against CPU

``python -m mentor_ray.bench ...`` is the same command as ``mentor-ray bench ...``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Sequence

from mentor_ray.benchmarks.bench import (
    bench_graphs,
    bench_models,
    bench_ray,
    bench_train,
    bench_tune,
    graphs_block,
    models_block,
    ray_block,
    train_block,
    tune_block,
    upsert_block,
)
from mentor_ray.benchmarks.search import SPACE as SEARCH_SPACE
from mentor_ray.cli import ArgumentParser, run, setup_logging
from mentor_ray.common.errors import MentorRayError
from mentor_ray.report.render import block_md, block_text

_DESCRIPTION = "Benchmarks, written to ``docs/benchmarks.md`` with the command, the machine and the date."


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(w) for w in text.split(",")]
    except ValueError:
        raise MentorRayError(f"{flag} {text!r}: expected comma-separated integers, e.g. 1,2") from None


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m mentor_ray.bench", description=_DESCRIPTION)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("graphs", help="graph build time and peak RSS, then the cache-hit time of a second call")
    g.add_argument("--dataset", required=True)
    g.add_argument("--data-root", type=Path, default=None)
    g.add_argument("--k", type=int, default=40)
    g.add_argument("--knn-norm", default="row")
    g.add_argument("--builder", choices=["auto", "dgl", "torch"], default="auto", help="graph builder (default auto)")
    g.add_argument("--write", type=Path, default=None, metavar="MD",
                   help="update this Markdown file (e.g. docs/benchmarks.md)")
    t = sub.add_parser("train", help="graph build, seconds per epoch, evaluation seconds and peak memory")
    t.add_argument("--dataset", required=True)
    t.add_argument("--data-root", type=Path, default=None)
    t.add_argument("--variant", default="mentor")
    t.add_argument("--epochs", type=int, default=3, help="epochs to time (the first is excluded from the median)")
    t.add_argument("--write", type=Path, default=None, metavar="MD")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="training settings")
    mo = sub.add_parser("models", help="Table 3: seconds per epoch and peak memory of every model, as ratios to "
                        "MENTOR measured in the same run")
    mo.add_argument("--dataset", required=True)
    mo.add_argument("--data-root", type=Path, default=None)
    mo.add_argument("--variants", default="all", help="comma-separated variants, or all (default): every model of "
                    "the registry and MENTOR_fg")
    mo.add_argument("--epochs", type=int, default=3, help="epochs per model (the first is excluded from the median)")
    mo.add_argument("--threads", type=int, default=1, help="torch threads per model (default 1)")
    mo.add_argument("--write", type=Path, default=None, metavar="MD")
    mo.add_argument("overrides", nargs="*", metavar="key=value", help="settings for every model")
    r = sub.add_parser("ray", help="Ray Train seconds per epoch for several worker counts, and DDP traffic per step")
    r.add_argument("--dataset", required=True)
    r.add_argument("--data-root", type=Path, default=None)
    r.add_argument("--variant", default="mentor")
    r.add_argument("--epochs", type=int, default=3)
    r.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    r.add_argument("--cpus", type=int, default=2, help="CPUs shared by the workers of a run (default 2)")
    r.add_argument("--cpus-per-worker", type=float, default=None,
                   help="CPUs of each worker instead (one worker with one thread stands for one device)")
    r.add_argument("--workers-first", action="store_true",
                   help="run the worker actors at nice 0 (Ray starts them at 15, below its own processes) and, once "
                   "they are up, the rest of the run (driver, raylet, GCS, dashboard, Train's controller) at nice "
                   "19: with one worker per core standing for one device, Ray's processes then stand for the host "
                   "cores a GPU node leaves them instead of preempting a worker")
    r.add_argument("--repeats", type=int, default=1, help="run the worker counts this many times, interleaved "
                   "(1, 2, 1, 2, ...): medians, and each repeat's speed-up (default 1)")
    r.add_argument("--write", type=Path, default=None, metavar="MD")
    r.add_argument("overrides", nargs="*", metavar="key=value", help="training settings")
    tu = sub.add_parser("tune", help="per-trial start-up cost of a sweep, in-process and DDP trials")
    tu.add_argument("--dataset", required=True)
    tu.add_argument("--data-root", type=Path, default=None)
    tu.add_argument("--trials", type=int, default=6)
    tu.add_argument("--epochs", type=int, default=1)
    tu.add_argument("--workers-per-trial", default="1,2", help="comma-separated (default 1,2)")
    tu.add_argument("--write", type=Path, default=None, metavar="MD")
    tu.add_argument("overrides", nargs="*", metavar="key=value", help="training settings")
    gp = sub.add_parser("gpu", help="one-call GPU check: CUDA against CPU, s/epoch and peak memory, a DDP step "
                        "(no Ray, no DGL; see mentor_ray/benchmarks/gpucheck.py)")
    gp.add_argument("--out", type=Path, required=True, help="folder for gpu_check.md and gpu_check.json")
    gp.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="device checked against the CPU")
    gp.add_argument("--datasets", default="synth-baby,synth-sports,synth-clothing",
                    help="comma-separated presets to time (default: the paper's three Amazon shapes)")
    gp.add_argument("--tiktok", type=Path, default=None, metavar="DATA_ROOT",
                    help="also time TikTok from DATA_ROOT/tiktok")
    gp.add_argument("--variants", default="table3", help="models part (b) times: comma-separated variants "
                    "(mentor:batch for MENTOR's batch scope), table3 for Table 3's (default), e.g. table3,mmssl,diffmm")
    gp.add_argument("--epochs", type=int, default=3, help="timed epochs per model (default 3)")
    gp.add_argument("--warmup", type=int, default=1, help="untimed epochs first (default 1)")
    gp.add_argument("--write", type=Path, default=None, metavar="MD", help="also update this Markdown file")
    fa = sub.add_parser("faults", help="the fault campaign: SIGKILL workers and drivers at chosen moments, resume, "
                        "compare with uninterrupted runs (mentor_ray/benchmarks/faults.py)")
    fa.add_argument("--cases", default="all", help="comma-separated cases, or all (default): "
                    "worker, train-driver, sweep-search, sweep-final, sweep-ablation, sweep-leaderboard, two-drivers")
    fa.add_argument("--write", type=Path, default=None, metavar="MD")
    se = sub.add_parser("search", help="search efficiency: grid, random, TPE and TPE + ASHA against the compute "
                        "they spend, on a space trained whole (mentor_ray/benchmarks/search.py)")
    se.add_argument("--dataset", default="synth-small")
    se.add_argument("--space", default=SEARCH_SPACE, help=f"a space trained whole (default {SEARCH_SPACE}: 81 points)")
    se.add_argument("--data-root", default=None)
    se.add_argument("--searchers", default=None, help="comma-separated: grid, random or tpe, optionally +asha, "
                    "with :grace=N, :reduction=N, :startup=N (default: grid,random,tpe,tpe+asha and two variants)")
    se.add_argument("--seeds", default="0,1,2", help="searcher seeds (default 0,1,2)")
    se.add_argument("--work", type=Path, default=Path(".bench-search"),
                    help="the trained table (table.json, reused) and Tune's files (default .bench-search/)")
    se.add_argument("--processes", type=int, default=2, help="points trained at once for the table (default 2)")
    se.add_argument("--concurrency", type=int, default=4, help="trials at once in a replay (default 4)")
    se.add_argument("--max-fraction", type=float, default=0.5,
                    help="each replay's budget, as a share of the grid's epochs (default 0.5)")
    se.add_argument("--time-scale", type=float, default=0.02,
                    help="a replayed epoch sleeps its recorded seconds times this (default 0.02)")
    se.add_argument("--write", type=Path, default=None, metavar="MD")
    ws = sub.add_parser("warmstart", help="what warm starts buy at a small budget: real searches with and without "
                        "the known points (mentor_ray/benchmarks/warmstart.py)")
    ws.add_argument("--dataset", default="tiktok")
    ws.add_argument("--data-root", default=None)
    ws.add_argument("--spaces", default="lightgcn_grid,mentor_joint", help="comma-separated search spaces")
    ws.add_argument("--budget", type=int, default=150, help="trial-epochs per search (default 150)")
    ws.add_argument("--max-epochs", type=int, default=100, help="epoch cap per trial (default 100)")
    ws.add_argument("--overrides", default="", metavar="SPACE=key=value[;...]",
                    help="settings for one space's trials, e.g. mentor_joint=infonce_scope=batch")
    ws.add_argument("--best-known", default="", metavar="SPACE=R20[,...]",
                    help="the best validation Recall@20 known for each space's model on the dataset")
    ws.add_argument("--seeds", default="0", help="searcher seeds, comma-separated: each a search of its own per space "
                    "and start (the sweep's --seed; default 0)")
    ws.add_argument("--work", type=Path, default=Path("runs/warm"), help="the searches' stores (reused)")
    ws.add_argument("--write", type=Path, default=None, metavar="MD")
    args = p.parse_args(argv)
    setup_logging()
    words = argv if argv is not None else sys.argv[1:]
    command = "python -m mentor_ray.bench " + " ".join(shlex.quote(a) for a in words)
    if args.cmd == "gpu":
        from mentor_ray.benchmarks import gpucheck

        vendored = gpucheck.use_local_wheels()
        if vendored:
            gpucheck.log(vendored)
        datasets = [d for d in args.datasets.split(",") if d]
        return gpucheck.run_check(args.out, args.device, datasets, args.tiktok, args.epochs, args.warmup, command,
                                  args.write, models=gpucheck.parse_models(args.variants))
    if args.cmd == "graphs":
        res = bench_graphs(args.dataset, args.data_root, args.k, args.knn_norm, args.builder)
        result = graphs_block(res, command, args.dataset, args.k, args.knn_norm)
        block = f"graphs:{args.dataset}:k{args.k}:{args.knn_norm}"
        block += "" if args.builder == "auto" else f":{args.builder}"
    elif args.cmd == "faults":
        from mentor_ray.benchmarks.faults import CASES, bench_faults, faults_block

        res = bench_faults(list(CASES) if args.cases == "all" else [c for c in args.cases.split(",") if c])
        result = faults_block(res, command)
        block = "faults"
        failed = [r["case"] for r in res["rows"] if not r["identical"] or r["duplicated"] or r["missing"]
                  or r["extra"] or r["left_after"]]
        if failed:
            print(block_text(result))
            raise MentorRayError(f"fault campaign: {', '.join(failed)} lost, duplicated or changed results, or "
                                 "left processes; see the table")
    elif args.cmd == "search":
        from mentor_ray.benchmarks.search import DEFAULT_SEARCHERS, bench_search, parse_searchers, search_block
        from mentor_ray.common.errors import check_flags

        check_flags(processes=(args.processes, 1, False), concurrency=(args.concurrency, 1, False),
                    max_fraction=(args.max_fraction, 0, True), time_scale=(args.time_scale, 0, False))
        if args.max_fraction > 1:
            raise MentorRayError(f"--max-fraction {args.max_fraction}: a share of the grid's epochs; allowed: "
                                 "above 0, at most 1")
        searchers = parse_searchers(args.searchers or DEFAULT_SEARCHERS)
        seeds = _int_list(args.seeds, "--seeds")
        res = bench_search(args.space, args.dataset, args.data_root, searchers, seeds, args.work, args.processes,
                           args.concurrency, args.max_fraction, args.time_scale)
        result = search_block(res, command)
        block = f"search:{args.space}:{args.dataset}"
    elif args.cmd == "warmstart":
        from mentor_ray.benchmarks.warmstart import bench_warmstart, warmstart_block

        overrides: dict[str, list[str]] = {}
        for item in (w for w in args.overrides.split(";") if w.strip()):
            space, _, setting = item.partition("=")
            if not setting:
                raise MentorRayError(f"--overrides {args.overrides!r}: expected SPACE=key=value, found {item!r}")
            overrides.setdefault(space.strip(), []).append(setting.strip())
        known: dict[str, float] = {}
        for item in (w for w in args.best_known.split(",") if w.strip()):
            space, _, value = item.partition("=")
            try:
                known[space.strip()] = float(value)
            except ValueError:
                raise MentorRayError(f"--best-known {args.best_known!r}: expected SPACE=R20, found {item!r}") from None
        spaces = [w.strip() for w in args.spaces.split(",") if w.strip()]
        res = bench_warmstart(spaces, args.dataset, args.data_root, args.budget, args.max_epochs, overrides, known,
                              args.work, _int_list(args.seeds, "--seeds"))
        result = warmstart_block(res, command)
        block = f"warmstart:{args.dataset}:{args.budget}:{','.join(spaces)}"
    elif args.cmd == "tune":
        workers = _int_list(args.workers_per_trial, "--workers-per-trial")
        res = bench_tune(args.dataset, args.data_root, args.trials, args.epochs, workers, args.overrides)
        result = tune_block(res, command, args.dataset)
        block = f"tune:{args.dataset}:{':'.join(map(str, workers))}"
    elif args.cmd == "models":
        from mentor_ray.common.registry import MODELS, VARIANT_MODELS

        trained = [m for m, e in MODELS.items() if e.trained]
        variants = [*trained, "mentor_fg"] if args.variants == "all" else [v for v in args.variants.split(",") if v]
        for v in variants:
            if v not in VARIANT_MODELS:
                raise MentorRayError(f"--variants {args.variants}: {v!r} is not a variant; allowed: all, or "
                                     f"{', '.join(VARIANT_MODELS)}")
        res = bench_models(args.dataset, args.data_root, variants, args.epochs, args.threads, args.overrides)
        result = models_block(res, command, args.dataset, args.overrides)
        block = f"models:{args.dataset}:{':'.join(sorted(args.overrides))}"
    elif args.cmd == "ray":
        workers = _int_list(args.workers, "--workers")
        if args.repeats < 1:
            raise MentorRayError(f"--repeats {args.repeats}: allowed 1 or more")
        res = bench_ray(args.dataset, args.data_root, args.variant, args.epochs, workers, args.cpus, args.overrides,
                        per_worker=args.cpus_per_worker, workers_first=args.workers_first, repeats=args.repeats)
        result = ray_block(res, command, args.dataset, args.variant, args.cpus, args.overrides)
        cpus = str(args.cpus) if args.cpus_per_worker is None else f"{args.cpus_per_worker:g}each"
        first = (":workers-first" if args.workers_first else "") + (f":x{args.repeats}" if args.repeats > 1 else "")
        block = f"ray:{args.dataset}:{args.variant}:{cpus}{first}:{':'.join(sorted(args.overrides))}"
    else:
        res = bench_train(args.dataset, args.data_root, args.variant, args.epochs, args.overrides)
        result = train_block(res, command, args.dataset, args.variant, args.overrides)
        block = f"train:{args.dataset}:{args.variant}:{':'.join(sorted(args.overrides))}"
    print(block_text(result))  # plain text on the terminal; Markdown into the file
    if args.write:
        upsert_block(args.write, block, block_md(result))
        print(f"\n[bench] written to {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
