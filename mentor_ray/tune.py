"""Sweep a search space on Ray Tune, re-run the best point over seeds, ablate (:mod:`mentor_ray.sweep.tune`).

A minute on 2 CPU cores::

    mentor-ray tune --dataset synth-tiny --space smoke --num-samples 4 --seeds 2 --ablation --results /tmp/r

On a Ray cluster, every dataset under the data root::

    ray job submit --working-dir . -- python -m mentor_ray.tune --dataset all --data-root /data \\
        --space paper_grid --num-samples 64 --results /shared/results --storage /shared/tune

``key=value`` settings go over the space's fixed ones; DDP trials; continue after a kill::

    mentor-ray tune --dataset tiktok --data-root /data --space paper_grid --num-samples 24 \\
        --results runs/r lr=1e-3 infonce_scope=batch
    mentor-ray tune --dataset synth-baby --workers-per-trial 4 --gpus-per-trial 1 ...
    mentor-ray tune ... --resume

The paper's whole experiments section (MENTOR, its ablation, every baseline on its own grid at one budget;
Table 2, Table 3, Figs. 3-6)::

    mentor-ray tune --dataset tiktok --data-root /data --paper --budget 400 --seeds 5 --results runs/r

MENTOR and every baseline of the paper, each on its own grid at the same search budget, in one command::

    mentor-ray tune --dataset tiktok --data-root /data --space paper_grid --baselines all --budget 400 \
        --seeds 5 --results runs/r

``python -m mentor_ray.tune ...`` is the same command (cluster command lines use that form).
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

from mentor_ray.cli import ArgumentParser, run, seed_arg, set_resume_hint, setup_logging
from mentor_ray.sweep.tune import DEFAULT_SEEDS, GRACE_PERIOD, PAPER_BUDGET, SweepOptions, run_sweeps

_DESCRIPTION = "Ray Tune + Optuna sweeps of MENTOR's grid, then final runs over seeds and the ablation table."


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m mentor_ray.tune", description=_DESCRIPTION)
    p.add_argument("--dataset", required=True, help="all, or NAME[,NAME...]")
    p.add_argument("--data-root", default=None)
    p.add_argument("--space", default="paper_grid", help="a YAML file or a name in tune_spaces/ (default paper_grid)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="search trials per dataset (default 24; with --budget, as many as the budget allows)")
    p.add_argument("--budget", type=int, default=None, metavar="EPOCHS",
                   help="search budget per dataset in trial-epochs (every epoch any search trial trains); the search "
                   "stops once it is spent, and the leaderboard reports it beside the device time")
    p.add_argument("--max-epochs", type=int, default=None, help="epoch budget per trial (default: the space's)")
    p.add_argument("--final-max-epochs", type=int, default=None, metavar="EPOCHS",
                   help="epoch cap of the final and ablation runs (default: the search's, --max-epochs or the "
                   "space's); higher lets a slowly converging model finish: early stopping still ends each run "
                   "`patience` epochs after its best, so it costs only the epochs a run still improves in")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                   help=f"seeds of the final and ablation runs (default {DEFAULT_SEEDS})")
    p.add_argument("--seed", type=seed_arg, default=0, help="first seed, and the sampler's seed (default 0)")
    p.add_argument("--results", required=True, help="the results store (a directory of Parquet files)")
    p.add_argument("--storage", default="~/ray_results/mentor_ray", help="Tune experiments and checkpoints")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (per worker when W > 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per trial (per worker when W > 1); fractions share a GPU (e.g. 0.25)")
    p.add_argument("--workers-per-trial", type=int, default=1,
                   help="W > 1: each trial is a Ray Train DDP run of W workers (default 1: in-process)")
    p.add_argument("--max-concurrent", type=int, default=0, help="trials at once per phase (0: as resources allow)")
    p.add_argument("--grace-period", type=int, default=GRACE_PERIOD,
                   help=f"ASHA: epochs before a trial may be stopped (default {GRACE_PERIOD}; shorter spends less "
                   "per weak trial but stops slow starters)")
    p.add_argument("--baselines", default=None, metavar="all|NAME[,NAME...]",
                   help="after --space, sweep each baseline on its own published grid (tune_spaces/NAME_grid.yaml) "
                   "with the same datasets, seeds and --budget; one leaderboard at the end")
    p.add_argument("--ablation", action="store_true", help="also run every variant and baseline at the best point")
    p.add_argument("--paper", action="store_true",
                   help="the paper's experiments section: --ablation, --baselines all (or those given) and one "
                   f"--budget for every model (default {PAPER_BUDGET} trial-epochs); the leaderboard has Table 2, "
                   "Table 3 and Figs. 3-6")
    p.add_argument("--resume", action="store_true", help="continue the experiments of an interrupted sweep")
    p.add_argument("--plan", action="store_true",
                   help="print the plan (runs, epochs, trials the budget buys, warnings) and exit before Ray starts")
    p.add_argument("--no-warm-start", action="store_true",
                   help="TPE from its random start-up trials alone, without the known points first")
    p.add_argument("--search-only", action="store_true",
                   help="run the search alone and print its best point: no final runs, ablation or leaderboard")
    p.add_argument("--warm-start-from", default=None, metavar="STORE",
                   help="a results store: a TPE search also starts from the best point of the same space on each "
                   "other dataset there (after the model's published defaults and the space's start_points)")
    p.add_argument("--optuna-storage", default=None,
                   help="Optuna study database URL (default: SQLite under --storage; needed for a URI --storage)")
    p.add_argument("--leaderboard", default=None,
                   help="where the leaderboard is written at the end "
                   "(default: RESULTS-leaderboard beside the store; 'none': skip)")
    p.add_argument("--quiet", action="store_true",
                   help="mentor_ray's progress lines only, no Ray Tune status tables (scripts/run.sh sets it)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="settings for every trial, over the space's fixed ones (e.g. lr=1e-3 infonce_scope=batch)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(level=logging.WARNING)  # the sweep's progress is print()ed; its warnings and errors one line each
    set_resume_hint("what finished is recorded; re-run the same command with --resume"
                    + ("" if args.resume else " added") + " to continue")  # after SIGINT/SIGTERM
    run_sweeps(SweepOptions(**vars(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
