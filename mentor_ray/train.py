"""Train MENTOR, an ablation or a baseline, in-process or on Ray Train (:mod:`mentor_ray.training`).

In-process (``key=value`` overrides any setting of :class:`mentor_ray.common.config.TrainConfig`)::

    mentor-ray train --dataset synth-small --variant mentor --max-epochs 5
    mentor-ray train --dataset tiktok --data-root ../shared/datasets --variant mentor \\
        --summary runs/tiktok-mentor.json infonce_scope=batch lambda_g=1e-3
    mentor-ray train --dataset tiktok --data-root ../shared/datasets --variant most_pop

On Ray Train (DDP; ``--workers``, ``--storage`` or ``--run-name`` selects it; re-running resumes)::

    mentor-ray train --dataset synth-small --workers 2 --storage runs/           # local Ray, gloo
    mentor-ray train --dataset tiktok --data-root /data --workers 4 --gpus-per-worker 1 \\
        --storage s3://bucket/mentor-runs                                       # NCCL on 4 GPUs
    ray job submit --working-dir . -- python -m mentor_ray.train --dataset synth-small --workers 2

``python -m mentor_ray.train ...`` is the same command (cluster command lines use that form).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Sequence

from mentor_ray.cli import ArgumentParser, run, seed_arg, setup_logging
from mentor_ray.common.config import VARIANTS, make_config
from mentor_ray.common.errors import ConfigError, check_flags
from mentor_ray.common.io import check_path_roles, check_writable_dir, check_writable_file, dataset_inputs
from mentor_ray.common.names import METRICS
from mentor_ray.training.trainer import Trainer, format_epoch

log = logging.getLogger(__name__)

_DESCRIPTION = "Train one model (MENTOR, an ablation or a baseline) with early stopping on validation Recall@20."


def format_table(summary: dict[str, Any]) -> str:
    label = f"{summary['dataset']}{' (synthetic)' if summary['synthetic'] else ''} / {summary['variant']}"
    if summary["epochs_run"] == 0 and VARIANTS[summary["variant"]].entry.trained:
        label += " (untrained: max_epochs=0 evaluates the initial model)"
    lines = [
        f"{label} / seed {summary['seed']}: best epoch {summary['best_epoch']} of {summary['epochs_run']} run; "
        f"{summary['seconds_per_epoch']:.2f}s per epoch; peak RSS {summary['peak_rss_mb']:,.0f} MB",
        f"{'split':6s} " + " ".join(f"{m.replace('recall', 'R').replace('ndcg', 'N'):>7s}" for m in METRICS),
    ]
    for split in ("valid", "test"):
        vals = summary[split] or {}
        lines.append(f"{split:6s} " + " ".join(f"{vals.get(m, float('nan')):7.4f}" for m in METRICS))
    return "\n".join(lines)


def run_inputs(cfg, preset: str | None) -> list[tuple[str, Any, bool]]:
    """What a run reads, for :func:`~mentor_ray.common.io.check_path_roles`: its data root, its dataset's folder
    (read whole) and a preset given as a file."""
    inputs: list[tuple[str, Any, bool]] = list(dataset_inputs(cfg.data_root, [cfg.dataset]))
    if preset and Path(preset).expanduser().is_file():
        inputs.append(("--preset", preset, False))
    return inputs


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m mentor_ray.train",
        description="Train MENTOR, an ablation or a baseline; early stopping on validation Recall@20.",
        epilog="Any setting can be overridden as key=value (e.g. lambda_g=1e-3 infonce_scope=batch); "
        "see mentor_ray/common/config.py for the keys.",
    )
    p.add_argument("--dataset", help="dataset directory under --data-root, or a synth-* preset")
    p.add_argument("--data-root", help="directory holding dataset directories")
    p.add_argument("--variant", choices=list(VARIANTS), help="model or ablation (default: mentor)")
    p.add_argument("--preset", help="a preset under mentor_ray/presets/ or a YAML file of settings")
    p.add_argument("--max-epochs", type=int, help="at most this many epochs, at least 1 (default 1000; the key "
                   "max_epochs=0 evaluates the untrained model)")
    p.add_argument("--seed", type=seed_arg, help="random seed (default 0)")
    p.add_argument("--summary", type=Path, help="write the run summary as JSON here")
    p.add_argument("--threads", type=int, help="CPU threads of an in-process run (default: torch's, one per core). "
                   "Results depend on it: a sweep trial runs --cpus-per-trial threads (default 1), so --threads 1 "
                   "reproduces its rows")
    p.add_argument("--rank-profile", action="store_true",
                   help="also profile the test ranking at the best validation epoch: hits per rank band, hits "
                   "on items unseen in training, popularity of the recommended items (in-process runs only)")
    ray = p.add_argument_group("Ray Train (any of these runs training on Ray Train; otherwise in-process)")
    ray.add_argument("--workers", type=int, help="data-parallel workers (DDP; gloo on CPU, NCCL on GPU)")
    ray.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker (default 1)")
    ray.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (default 0)")
    ray.add_argument("--storage", help="run storage: a local path, NFS, or a URI Ray accepts (s3://, gs://)")
    ray.add_argument("--run-name", help="default: dataset-variant-seed-settingshash (re-running resumes)")
    ray.add_argument("--max-failures", type=int, default=2, help="restarts from the last checkpoint (default 2)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="setting overrides")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    check_flags(max_epochs=(args.max_epochs, 1, False), seed=(args.seed, 0, False), workers=(args.workers, 1, False),
                cpus_per_worker=(args.cpus_per_worker, 0, True), gpus_per_worker=(args.gpus_per_worker, 0, False),
                max_failures=(args.max_failures, 0, False), threads=(args.threads, 1, False))
    if args.storage:
        check_writable_dir(args.storage, "--storage")
    if args.summary:
        check_writable_file(args.summary, "--summary")
    flags = {"dataset": args.dataset, "data_root": args.data_root, "variant": args.variant,
             "max_epochs": args.max_epochs, "seed": args.seed}
    cfg = make_config(args.preset, flags, args.overrides)
    check_path_roles([("--storage", args.storage, True), ("--summary", args.summary, False)],
                     run_inputs(cfg, args.preset))
    if args.workers is not None or args.storage or args.run_name or args.gpus_per_worker:
        if args.rank_profile:
            raise ConfigError("--rank-profile: in-process runs only; drop --workers, --storage and --run-name")
        from mentor_ray.cli import set_resume_hint
        from mentor_ray.common.lock import DriverLock
        from mentor_ray.common.names import check_name
        from mentor_ray.training.ray_train import driver_ray, fit_with_ray, run_name

        storage = args.storage or "~/ray_results"
        name = check_name(args.run_name, "--run-name") if args.run_name else run_name(cfg, storage)
        # one driver per run; object storage (s3://...) has no lock to take, and DriverLock skips it. Taken
        # before Ray starts, so that every process of this driver's Ray carries the lock's token: ended here
        # however the run ends (driver_ray), or by the next driver if this one is killed outright.
        lock = DriverLock(None if "://" in storage else Path(storage) / name, "--storage/--run-name",
                          advice="wait for it to end, or stop it and re-run the same command (it resumes)")
        set_resume_hint("re-run the same command to resume from its last checkpoint")
        with lock, driver_ray(lock):
            summary = fit_with_ray(cfg, workers=args.workers or 1, cpus_per_worker=args.cpus_per_worker,
                                   gpus_per_worker=args.gpus_per_worker, storage=args.storage, name=name,
                                   max_failures=args.max_failures)
        return _finish(summary, args.summary)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    trainer = Trainer(cfg, rank_profile=args.rank_profile)
    name = f"{trainer.ds.name}{' (synthetic)' if trainer.ds.synthetic else ''}"
    log.info("training %s on %s: %d users, %d items, %d train interactions, device %s",
             cfg.variant, name, trainer.ds.n_users, trainer.ds.n_items, len(trainer.ds.train), trainer.device)
    summary = trainer.fit(on_epoch=lambda r: log.info(format_epoch(r)))
    return _finish(summary, args.summary)


def _finish(summary: dict[str, Any], path: Path | None) -> int:
    print(format_table(summary))
    if summary.get("rank_profile"):
        print("test ranking at the best epoch: " + ", ".join(f"{k} {v:g}" for k, v in summary["rank_profile"].items()))
    if summary.get("resumed_at_epochs"):
        print(f"resumed from a checkpoint at epoch(s) {summary['resumed_at_epochs']} (re-run or worker restart)")
    if path:
        from mentor_ray.common.io import write_json_atomic

        write_json_atomic(path, summary)
        log.info("summary written to %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
