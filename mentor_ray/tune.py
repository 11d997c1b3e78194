"""`tune` command: the command line of :mod:`mentor_ray.sweep.tune`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import os
import re
from mentor_ray.common.config import validate
from mentor_ray.common.errors import ConfigError, MentorRayError
from mentor_ray.sweep.spaces import load_space
from mentor_ray.cli import run
from mentor_ray.sweep.tune import Sweep, _already_exists, datasets_for, log

_DESCRIPTION = "Ray Tune + Optuna sweeps of MENTOR's grid, then final runs over seeds and the ablation table."


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mentor_ray.tune", description=_DESCRIPTION)
    p.add_argument("--dataset", required=True, help="all, or NAME[,NAME...]")
    p.add_argument("--data-root", default=None)
    p.add_argument("--space", default="paper_grid", help="a YAML file or a name in tune_spaces/ (default paper_grid)")
    p.add_argument("--num-samples", type=int, default=24, help="search trials per dataset (default 24)")
    p.add_argument("--max-epochs", type=int, default=None, help="epoch budget per trial (default: the space's)")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the final and ablation runs (default 3)")
    p.add_argument("--seed", type=int, default=0, help="first seed, and the sampler's seed (default 0)")
    p.add_argument("--results", required=True, help="the results store (a directory of Parquet files)")
    p.add_argument("--storage", default="~/ray_results/mentor_ray", help="Tune experiments and checkpoints")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (per worker when W > 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per trial (per worker when W > 1); fractions share a GPU (e.g. 0.25)")
    p.add_argument("--workers-per-trial", type=int, default=1,
                   help="W > 1: each trial is a Ray Train DDP run of W workers (default 1: in-process)")
    p.add_argument("--max-concurrent", type=int, default=0, help="trials at once per phase (0: as resources allow)")
    p.add_argument("--grace-period", type=int, default=10, help="ASHA: epochs before a trial may be stopped")
    p.add_argument("--ablation", action="store_true", help="also run every variant and baseline at the best point")
    p.add_argument("--resume", action="store_true", help="continue the experiments of an interrupted sweep")
    p.add_argument("--optuna-storage", default=None,
                   help="Optuna study database URL (default: SQLite under --storage; needed for a URI --storage)")
    p.add_argument("--leaderboard", default=None,
                   help="where the leaderboard is written at the end (default: RESULTS/leaderboard; 'none': skip)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="settings for every trial, over the space's fixed ones (e.g. lr=1e-3 infonce_scope=batch)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for flag in ("num_samples", "seeds", "workers_per_trial"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    space = load_space(args.space)
    if args.ablation and space.model != "mentor":
        raise ConfigError(f"--ablation: the space {space.name} searches {space.model}; ablations are MENTOR's "
                          f"variants, so run them with a MENTOR space (e.g. --space paper_grid)")
    sweep = Sweep(args, space)  # checks the overrides before anything starts
    for d in (datasets := datasets_for(args.dataset, args.data_root)):
        validate(sweep.base(d), source="sweep")
        first = sweep.name("search", d)  # refused here, before Ray starts, rather than in the search phase
        if not args.resume and "://" not in sweep.storage and (Path(sweep.storage) / first).exists():
            raise _already_exists(sweep.storage, first)
    from mentor_ray.training.ray_train import ensure_ray

    # One checkpoint kept per trial (a TikTok trial's is ~28 MB) makes Tune snapshot the experiment at
    # every epoch's checkpoint; on fast small-data epochs it then warns on every snapshot. The snapshot
    # is what makes --resume exact, so keep it and silence the warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's classic progress table (CLIReporter, with our columns) instead of the new output, which
    # prints every trial's full config
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A trial stopped by ASHA gets this long to exit before Tune kills it (default 600 s). A DDP trial
    # sits in its Ray Train run and never exits by itself; while it lingers its run keeps the workers'
    # resources, so the next trial waits. Killed, the run is torn down (its controller is the trial's).
    os.environ.setdefault("TUNE_FORCE_TRIAL_CLEANUP_S", "15")
    ensure_ray()
    failure: MentorRayError | None = None
    try:
        run_datasets(sweep, datasets)
    except MentorRayError as exc:  # the datasets that finished still get their tables
        failure = exc
    if args.leaderboard != "none":
        from mentor_ray.report.leaderboard import write_leaderboard

        out = Path(args.leaderboard or Path(args.results) / "leaderboard")
        print(write_leaderboard(args.results, out), flush=True)
        print(f"[mentor_ray] leaderboard written to {out}", flush=True)
    if failure:
        raise failure
    return 0


def run_datasets(sweep: Sweep, datasets: list[str]) -> int:
    """Every dataset's sweep at once (their trials share the cluster), each in its own driver thread.

    Inputs (dataset, graphs) are prepared first, one after another, so the driver never holds two graph
    builds' peak memory at once. A dataset that fails is reported at the end; the others finish.
    """
    from concurrent.futures import ThreadPoolExecutor

    from ray.tune import register_trainable

    # Register every trainable here, in the main thread, and hand Tune the names: Tune's trainable
    # registry is not thread-safe, and a Tuner given a name does not register again.
    trainables = {}
    for d in datasets:
        trainables[d] = f"mentor_ray_{re.sub(r'[^A-Za-z0-9_]', '_', d)}"
        register_trainable(trainables[d], sweep.trainable(d))

    def one(dataset: str) -> None:
        sweep.dataset(dataset, trainables[dataset])
        print(f"[mentor_ray] {dataset}: done; results in {sweep.results}", flush=True)

    failed: dict[str, BaseException] = {}
    with ThreadPoolExecutor(max_workers=len(datasets), thread_name_prefix="sweep") as pool:
        futures = {d: pool.submit(one, d) for d in datasets}
        for d, future in futures.items():
            if future.exception() is not None:
                failed[d] = future.exception()
    for d, exc in failed.items():  # a traceback only where it helps: not for a bad flag or input
        log.error("%s: sweep failed: %s", d, exc, exc_info=None if isinstance(exc, MentorRayError) else exc)
    if failed:
        first = next(iter(failed.values()))
        if len(failed) == 1 and len(datasets) == 1:
            raise first
        raise MentorRayError(f"sweep failed on {len(failed)} of {len(datasets)} datasets "
                             f"({', '.join(failed)}); the others finished; fix and re-run with --resume")
    return 0


if __name__ == "__main__":
    from mentor_ray.cli import run

    raise SystemExit(run(main))
