"""Data-parallel training on Ray Train (Train V2, Ray 2.60): DDP over N workers, checkpoints every
epoch, resume, and restarts after a lost worker.

``fit_with_ray(cfg, workers=W, storage=...)`` returns the run summary, as an in-process
:class:`~mentor_ray.training.trainer.Trainer` does; the ``train`` command (:mod:`mentor_ray.train`)
calls it when given ``--workers``, ``--storage`` or ``--run-name``. How it is put together (object
store, ranks, checkpoints, run names): ``docs/architecture.md`` (*Data-parallel training on Ray Train*).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from mentor_ray.common.config import TrainConfig, resume_settings
from mentor_ray.common.errors import ConfigError, MentorRayError
from mentor_ray.common.names import REPORTED_METRIC, STATE_FILE, SUMMARY_FILE
from mentor_ray.training.trainer import Trainer, format_epoch

log = logging.getLogger(__name__)

BatchHook = Callable[[int, int, int], None]  # (rank, epoch, batch)


def run_name(cfg: TrainConfig) -> str:
    """Deterministic: the same settings give the same name, so re-running resumes."""
    from mentor_ray.common.io import sha256_json

    settings = resume_settings(cfg.model_dump())  # a longer budget or other runtime keys continue the run
    return f"{cfg.dataset}-{cfg.variant}-s{cfg.seed}-{sha256_json(settings)[:8]}"


def fit_with_ray(
    cfg: TrainConfig,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    storage: str | None = None,
    name: str | None = None,
    max_failures: int = 2,
    inputs: tuple[Any, Any] | None = None,
    callbacks: list | None = None,
    batch_hook: BatchHook | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` with ``workers`` Ray Train workers; the run summary (as ``Trainer.summary``).

    Args:
        workers, cpus_per_worker, gpus_per_worker: the DDP group and each worker's resources.
        storage, name: where checkpoints go; re-running with the same pair resumes.
        max_failures: restarts from the latest checkpoint after a lost worker.
        inputs: object refs of the dataset and graph arrays, when the caller has them (a Tune trial).
        callbacks: Ray Train user callbacks (a Tune trial passes ``TuneReportCallback``).
        batch_hook: called as ``hook(rank, epoch, batch)`` before every training batch on every worker
            (it travels to the workers pickled).

    ``resumed_at_epochs`` in the summary lists the epochs at which the run continued from a
    checkpoint (a re-run of the same command, or a restart after a lost worker).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mentor_ray.training.ray_compat import pinned_torch_config

    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    if cfg.batch_size % workers:
        raise ConfigError(
            f"--workers {workers}: batch_size {cfg.batch_size} is not divisible by it; each worker takes "
            f"batch_size / workers triplets of every batch (choose workers dividing {cfg.batch_size})"
        )
    storage = str(Path(storage).expanduser().resolve()) if storage and "://" not in storage else storage
    name = name or run_name(cfg)
    ds_ref, graphs_ref = inputs or _prepare_inputs(cfg)  # before the trainer: Ray must be up for ray.put
    trainer = TorchTrainer(
        _worker_loop,
        torch_config=pinned_torch_config(),
        train_loop_config={
            "cfg": cfg.model_dump(),
            "dataset": ds_ref,
            "graphs": graphs_ref,
            "threads": max(1, int(cpus_per_worker)),
            "batch_hook": batch_hook,
        },
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=gpus_per_worker > 0,
            resources_per_worker={"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks or [],
        ),
    )
    log.info("Ray Train run %s: %d worker(s), storage %s; %s", name, workers, storage or "~/ray_results",
             ray_address_hint())
    result = trainer.fit()
    if result.error:
        raise MentorRayError(f"Ray Train run {name} failed: {result.error}")
    if result.checkpoint is None:
        raise MentorRayError(f"Ray Train run {name} finished without a checkpoint")
    summary = read_summary(result.checkpoint)
    summary["run_name"] = name
    summary["storage"] = str(result.path)
    return summary


def _prepare_inputs(cfg: TrainConfig):
    """Load the dataset and graphs on the driver (cached on disk) and put them in the object store."""
    import ray

    from mentor_ray.datasets.dataset import load_dataset

    ensure_ray()
    ds = load_dataset(cfg.dataset, cfg.data_root)
    graphs_ref = None
    if cfg.spec.model in ("mentor", "lightgcn"):
        from mentor_ray.datasets.graphs import build_graphs, to_arrays

        graphs_ref = ray.put(to_arrays(build_graphs(ds, k=cfg.knn_k, knn_norm=cfg.knn_norm)))
    return ray.put(ds), graphs_ref


def ensure_ray(**init_kwargs: Any) -> None:
    """Connect to the cluster named by RAY_ADDRESS (or started with ``ray start``), else start a local one.

    A local instance keeps gloo on the loopback interface (``GLOO_SOCKET_IFNAME=lo`` unless already
    set): gloo otherwise binds to the address the machine's hostname resolves to, and where it does not
    resolve (containers, sandboxes) creating the process group hangs instead of failing.
    """
    import ray

    from mentor_ray.training.ray_compat import cluster_address

    if ray.is_initialized():
        return
    if cluster_address() is None:  # no cluster to join: a single-machine Ray
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # inherited by the local raylet's workers
    ray.init(**{"log_to_driver": True, **init_kwargs})


# --------------------------------------------------------------------------- checkpoints and reports


def epoch_metrics(trainer: Trainer) -> dict[str, Any]:
    """What every rank reports after an epoch (Tune's ASHA and searcher read these)."""
    last = trainer.history[-1]
    return {
        "epoch": last["epoch"],
        "valid_recall@20": last["valid"]["recall@20"],
        REPORTED_METRIC: trainer.best["valid"]["recall@20"],
        "best_epoch": trainer.best["epoch"],
        "loss": last["train"].get("loss", 0.0),
    }


def write_checkpoint(trainer: Trainer, directory: str | Path, resumed: list[int]) -> None:
    """The trainer's state (to resume) and its summary (what the run has found so far)."""
    import torch

    torch.save({"trainer": trainer.state_dict(), "resumed": resumed}, Path(directory) / STATE_FILE)
    summary = {**trainer.summary(), "resumed_at_epochs": resumed}
    (Path(directory) / SUMMARY_FILE).write_text(json.dumps(summary, default=str))


def report_with_checkpoint(trainer: Trainer, resumed: list[int], report, checkpoint_cls, **kwargs: Any) -> None:
    """``report(epoch_metrics, checkpoint=...)`` with a fresh checkpoint of ``trainer``: Ray Train's report and
    Checkpoint from a worker, Tune's from a trial."""
    with tempfile.TemporaryDirectory() as d:
        write_checkpoint(trainer, d, resumed)
        report(epoch_metrics(trainer), checkpoint=checkpoint_cls.from_directory(d), **kwargs)


def restore(trainer: Trainer, checkpoint) -> list[int]:
    """Load ``checkpoint`` (a Ray Checkpoint or None) into ``trainer``; the epochs resumed at so far."""
    if checkpoint is None:
        return []
    import torch

    with checkpoint.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, map_location=trainer.device)
    trainer.load_state_dict(state["trainer"])
    return state["resumed"] + [trainer.epoch]


def read_summary(checkpoint) -> dict[str, Any]:
    """The run summary saved in a checkpoint by :func:`write_checkpoint`."""
    with checkpoint.as_directory() as d:
        return json.loads((Path(d) / SUMMARY_FILE).read_text())


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the trainer's loop, reporting (rank 0 with a checkpoint) after each epoch."""
    import ray.train
    import ray.train.torch
    import torch

    from mentor_ray.datasets.graphs import from_arrays

    torch.set_num_threads(config["threads"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = TrainConfig.model_validate(config["cfg"])
    ds = ray.get(config["dataset"])  # from the object store: no parsing, no DGL on workers
    graphs = from_arrays(ray.get(config["graphs"])) if config["graphs"] is not None else None
    trainer = Trainer(cfg, ds=ds, rank=rank, world_size=world, device=ray.train.torch.get_device(), graphs=graphs)
    resumed = restore(trainer, ray.train.get_checkpoint())
    if resumed and rank == 0:
        print(f"[mentor_ray] resumed from the checkpoint of epoch {trainer.epoch - 1}", flush=True)

    def report(record: dict[str, Any]) -> None:
        if rank != 0:  # every rank reports (a barrier); rank 0 attaches the checkpoint
            ray.train.report(epoch_metrics(trainer))
            return
        print(f"[mentor_ray] {format_epoch(record)}", flush=True)  # worker stdout reaches the driver
        report_with_checkpoint(trainer, resumed, ray.train.report, ray.train.Checkpoint,
                               checkpoint_dir_name=f"epoch-{record['epoch']:05d}")

    hook = config.get("batch_hook")
    trainer.fit(on_epoch=report, on_batch=(lambda epoch, batch: hook(rank, epoch, batch)) if hook else None)


def ray_address_hint() -> str:
    addr = os.environ.get("RAY_ADDRESS")
    return f"connecting to {addr}" if addr else "starting a local Ray instance (set RAY_ADDRESS for a cluster)"
