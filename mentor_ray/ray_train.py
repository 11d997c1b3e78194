"""Data-parallel training on Ray Train (Train V2, Ray 2.60): DDP over N workers, checkpoints every
epoch, resume, and restarts after a lost worker.

Launch (through ``python -m mentor_ray.train``, which calls :func:`fit_with_ray` when asked)::

    python -m mentor_ray.train --dataset synth-small --workers 2                   # local Ray, gloo
    python -m mentor_ray.train --dataset tiktok --data-root /data --workers 4 --gpus-per-worker 1 \\
        --storage s3://bucket/mentor-runs                                          # NCCL on 4 GPUs
    ray job submit --working-dir . -- python -m mentor_ray.train --dataset synth-small --workers 2

How it is put together:

- The driver loads the dataset and builds (or reads from the cache) the graphs once, then puts both
  in Ray's object store; every worker gets them from there, so no worker parses data or runs DGL.
- Each worker runs :class:`mentor_ray.train.Trainer` with its rank: every global batch of 2048 is
  split into disjoint per-rank parts, DDP averages the gradients, metric sums are all-reduced, so
  every rank reports the same numbers, the same number of times (once per epoch).
- Rank 0 writes a checkpoint each epoch (model, optimiser, epoch, best-validation state and epoch,
  early-stopping counter, history; randomness is re-seeded from (seed, epoch), so no RNG state is
  needed). Re-running the same command with the same ``--storage`` and run name resumes from the
  latest checkpoint; ``--max-failures`` restarts from it when a worker dies.
- Run names are deterministic (dataset, variant, seed and a hash of the settings), never timestamps.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from mentor_ray.config import TrainConfig
from mentor_ray.errors import ConfigError, MentorRayError

log = logging.getLogger("mentor_ray.ray_train")

STATE_FILE = "trainer_state.pt"
SUMMARY_FILE = "summary.json"


def run_name(cfg: TrainConfig) -> str:
    """Deterministic: the same settings give the same name, so re-running resumes."""
    from mentor_ray.cache import sha256_json

    settings = cfg.model_dump(exclude={"max_epochs", "device", "eval_batch_size", "infonce_threads"})
    return f"{cfg.dataset}-{cfg.variant}-s{cfg.seed}-{sha256_json(settings)[:8]}"


def fit_with_ray(
    cfg: TrainConfig,
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    storage: str | None = None,
    name: str | None = None,
    max_failures: int = 2,
    fault: dict[str, Any] | None = None,
    inputs: tuple[Any, Any] | None = None,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` with ``workers`` Ray Train workers; the run summary (as ``Trainer.summary``).

    ``resumed_at_epochs`` in the summary lists the epochs at which the run continued from a
    checkpoint (a re-run of the same command, or a restart after a lost worker). ``fault`` is for
    tests: ``{"epoch": e, "batch": b, "rank": r, "marker": path}`` kills rank r's process with
    SIGKILL at that batch, once (the marker file records that it happened). ``inputs`` are the object
    refs of the dataset and graphs when the caller has them already (a Tune trial); ``callbacks`` are
    Ray Train user callbacks (a Tune trial passes ``TuneReportCallback``).
    """
    import ray
    from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

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
        torch_config=_torch_config(),
        train_loop_config={
            "cfg": cfg.model_dump(),
            "dataset": ds_ref,
            "graphs": graphs_ref,
            "threads": max(1, int(cpus_per_worker)),
            "fault": fault,
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
    checkpoint: Checkpoint | None = result.checkpoint
    if checkpoint is None:
        raise MentorRayError(f"Ray Train run {name} finished without a checkpoint")
    with checkpoint.as_directory() as d:
        summary = json.loads((Path(d) / SUMMARY_FILE).read_text())
    summary["run_name"] = name
    summary["storage"] = str(result.path)
    return summary


def _torch_config():
    """Ray Train's TorchConfig, with gloo pinned to the interface that carries each worker's Ray node IP.

    Unpinned, gloo binds to whatever the machine's hostname resolves to; where it does not resolve
    (containers, sandboxes, some CI machines) creating the process group hangs instead of failing.
    Pinning to the node IP's interface is what a multi-node run needs anyway. An explicit
    ``GLOO_SOCKET_IFNAME`` in the workers' environment wins.
    """
    from dataclasses import dataclass

    from ray.train.torch import TorchConfig
    from ray.train.torch.config import _TorchBackend  # Ray 2.60; pinned in pyproject.toml

    class _PinnedGlooBackend(_TorchBackend):
        def on_start(self, worker_group, backend_config):
            worker_group.execute(pin_gloo_interface)
            super().on_start(worker_group, backend_config)

    @dataclass
    class _PinnedTorchConfig(TorchConfig):
        @property
        def backend_cls(self):
            return _PinnedGlooBackend

    return _PinnedTorchConfig()


def pin_gloo_interface() -> str | None:
    """Set GLOO_SOCKET_IFNAME to the network interface holding this Ray node's IP (unless already set)."""
    if os.environ.get("GLOO_SOCKET_IFNAME"):
        return os.environ["GLOO_SOCKET_IFNAME"]
    import psutil
    import ray.util

    ip = ray.util.get_node_ip_address()
    for iface, addrs in psutil.net_if_addrs().items():
        if any(a.address == ip for a in addrs):
            os.environ["GLOO_SOCKET_IFNAME"] = iface
            return iface
    return None  # not found: leave gloo's default (the hostname's address)


def _prepare_inputs(cfg: TrainConfig):
    """Load the dataset and graphs on the driver (cached on disk) and put them in the object store."""
    import ray

    from mentor_ray.data import load_dataset

    ensure_ray()
    ds = load_dataset(cfg.dataset, cfg.data_root)
    graphs_ref = None
    if cfg.spec.model in ("mentor", "lightgcn"):
        from mentor_ray.graphs import build_graphs, to_arrays

        graphs_ref = ray.put(to_arrays(build_graphs(ds, k=cfg.knn_k, knn_norm=cfg.knn_norm)))
    return ray.put(ds), graphs_ref


def ensure_ray(**init_kwargs: Any) -> None:
    """Connect to the cluster named by RAY_ADDRESS (or started with ``ray start``), else start a local one.

    A local instance keeps gloo on the loopback interface (``GLOO_SOCKET_IFNAME=lo`` unless already
    set): gloo otherwise binds to the address the machine's hostname resolves to, and where it does not
    resolve (containers, sandboxes) creating the process group hangs instead of failing.
    """
    import ray
    from ray._private.services import canonicalize_bootstrap_address

    if ray.is_initialized():
        return
    if canonicalize_bootstrap_address(None) is None:  # no cluster to join: a single-machine Ray
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # inherited by the local raylet's workers
    ray.init(**{"log_to_driver": True, **init_kwargs})


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the trainer's epoch loop with a report (and rank 0's checkpoint) per epoch."""
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from mentor_ray.graphs import from_arrays
    from mentor_ray.train import Trainer

    torch.set_num_threads(config["threads"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = TrainConfig.model_validate(config["cfg"])
    ds = ray.get(config["dataset"])  # from the object store: no parsing, no DGL on workers
    graphs = from_arrays(ray.get(config["graphs"])) if config["graphs"] is not None else None
    trainer = Trainer(cfg, ds=ds, rank=rank, world_size=world, device=ray.train.torch.get_device(), graphs=graphs)
    resumed: list[int] = []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location=trainer.device)
        trainer.load_state_dict(state["trainer"])
        resumed = state["resumed"] + [trainer.epoch]
        if rank == 0:
            print(f"[mentor_ray] resumed from the checkpoint of epoch {trainer.epoch - 1}", flush=True)
    t_start = _now()
    if not trainer.trainable and not trainer.history:  # MostPop: one evaluation, one report
        trainer.end_epoch(0, {}, trainer.evaluate("valid"), lambda: trainer.evaluate("test"), 0.0)
        _report(trainer, rank, resumed, _now() - t_start, done=True)
        return
    on_batch = _fault_injector(config["fault"], rank) if config.get("fault") else None
    while not trainer.should_stop():
        train = trainer.train_epoch(trainer.epoch, on_batch)
        t0 = _now()
        valid = trainer.evaluate("valid")
        record = trainer.end_epoch(trainer.epoch, train, valid, lambda: trainer.evaluate("test"), _now() - t0)
        if rank == 0:
            from mentor_ray.train import format_epoch

            print(f"[mentor_ray] {format_epoch(record)}", flush=True)
        _report(trainer, rank, resumed, _now() - t_start, done=trainer.should_stop())


def _report(trainer, rank: int, resumed: list[int], wall: float, done: bool) -> None:
    """Every rank reports once per epoch (a barrier); rank 0 attaches the checkpoint."""
    import ray.train
    import torch

    last = trainer.history[-1]
    metrics = {
        "epoch": last["epoch"],
        "valid_recall@20": last["valid"]["recall@20"],
        "valid_ndcg@20": last["valid"]["ndcg@20"],
        "best_epoch": trainer.best["epoch"],
        "best_valid_recall@20": trainer.best["valid"]["recall@20"],
        "loss": last["train"].get("loss", 0.0),
        "finished": done,  # not Tune's reserved "done": a DDP trial must end by returning, not be stopped
    }
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        torch.save({"trainer": trainer.state_dict(), "resumed": resumed}, Path(d) / STATE_FILE)
        summary = trainer.summary(wall)
        summary["resumed_at_epochs"] = resumed
        summary_json = json.dumps(summary, default=str)
        (Path(d) / SUMMARY_FILE).write_text(summary_json)
        metrics["summary_json"] = summary_json  # rank 0's metrics are what a Tune trial sees
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(d),
            checkpoint_dir_name=f"epoch-{last['epoch']:05d}",
        )


def _fault_injector(fault: dict[str, Any], rank: int):
    """Kill this process (SIGKILL, as a crash would) at the given epoch/batch/rank, once."""
    import signal
    import time

    marker = Path(fault["marker"])

    def on_batch(epoch: int, batch: int) -> None:
        if (epoch, batch, rank) == (fault["epoch"], fault["batch"], fault["rank"]) and not marker.exists():
            # Ray Train's controller collects reports (and so registers checkpoints) on a 2 s poll; a
            # crash right after a report can lose that report. Wait past a few polls so the test's
            # crash restarts from the previous epoch's checkpoint deterministically.
            time.sleep(fault.get("settle_s", 8.0))
            marker.write_text(f"killed rank {rank} at epoch {epoch} batch {batch}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    return on_batch


def _now() -> float:
    import time

    return time.perf_counter()


def ray_address_hint() -> str:
    addr = os.environ.get("RAY_ADDRESS")
    return f"connecting to {addr}" if addr else "starting a local Ray instance (set RAY_ADDRESS for a cluster)"
