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
from mentor_ray.common.errors import CheckpointError, ConfigError, MentorRayError
from mentor_ray.common.io import sha256_file
from mentor_ray.common.names import CHECKSUM_FILE, REPORTED_METRIC, STATE_FILE, SUMMARY_FILE, check_name
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
    quiet: bool = False,
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
        quiet: no per-epoch lines and no in-epoch progress lines from rank 0 (a quiet sweep's trials,
            whose driver prints one line per trial and a phase line a minute instead).

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
    name = check_name(name, "--run-name") if name else run_name(cfg)  # it must not leave --storage
    ensure_ray()
    check_resources(cpus_per_worker, gpus_per_worker, count=workers,  # Ray would wait for them forever
                    what=f"--workers {workers} --cpus-per-worker {cpus_per_worker:g} "
                    f"--gpus-per-worker {gpus_per_worker:g}")
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
            "quiet": quiet,
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
    try:
        result = trainer.fit()  # Train V2 raises what failed; V1 returned it in result.error
    except MentorRayError:
        raise
    except Exception as exc:  # noqa: BLE001 - every Ray failure becomes one line
        raise worker_error(exc, f"Ray Train run {name}", str(Path(storage or "~/ray_results") / name)) from exc
    if result.error:
        raise worker_error(result.error, f"Ray Train run {name}", result.path)
    if result.checkpoint is None:
        raise MentorRayError(f"Ray Train run {name} finished without a checkpoint")
    summary = read_summary(result.checkpoint)
    summary["run_name"] = name
    summary["storage"] = str(result.path)
    return summary


def worker_error(error: BaseException, what: str, path: str | None = None) -> MentorRayError:
    """A one-line error for a failed Ray Train run: the workers' own :class:`MentorRayError` when they
    raised one (a diverged loss, no intact checkpoint), else the first line of the failure and where
    the full traceback is."""
    from mentor_ray.training.ray_compat import nested_errors

    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, MentorRayError):
            return type(e)(f"{what}: {e}")
        stack += nested_errors(e)
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if not ln.startswith(("File ", "^", "~"))), type(error).__name__)
    where = f"; the full traceback is in the worker logs under {path}" if path else ""
    return MentorRayError(f"{what} failed: {type(error).__name__}: {last[:300]}{where}")


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


WAIT_ENV = "MENTOR_RAY_WAIT_FOR_RESOURCES"


def check_resources(cpus: float, gpus: float, what: str, count: int = 1) -> None:
    """Raise a one-line :class:`ConfigError` when the Ray cluster cannot place ``count`` bundles of ``cpus``
    CPUs and ``gpus`` GPUs (each on one node): Ray would wait for them forever, silently.

    ``MENTOR_RAY_WAIT_FOR_RESOURCES=1`` skips the check, for a cluster whose autoscaler adds the nodes.
    """
    import ray

    if os.environ.get(WAIT_ENV) == "1":
        return
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    fits = sum(int(min(r.get("CPU", 0) // cpus if cpus else count,
                       r.get("GPU", 0) // gpus if gpus else count)) for r in nodes)
    if fits >= count:
        return
    most_cpu = max((r.get("CPU", 0) for r in nodes), default=0)
    all_gpu = sum(r.get("GPU", 0) for r in nodes)
    need = f"{count} x " if count > 1 else ""
    raise ConfigError(
        f"{what}: needs {need}{cpus:g} CPU + {gpus:g} GPU, each on one node, but this Ray cluster has "
        f"{len(nodes)} node(s), at most {most_cpu:g} CPUs on one and {all_gpu:g} GPUs in all; lower the "
        f"request, or set {WAIT_ENV}=1 if an autoscaler will add such nodes"
    )


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

    state_path = Path(directory) / STATE_FILE
    torch.save({"trainer": trainer.state_dict(), "resumed": resumed}, state_path)
    # torch's zip format does not check tensor bytes on load: a flipped bit would resume silently.
    (Path(directory) / CHECKSUM_FILE).write_text(json.dumps({STATE_FILE: sha256_file(state_path)}))
    summary = {**trainer.summary(), "resumed_at_epochs": resumed}
    (Path(directory) / SUMMARY_FILE).write_text(json.dumps(summary, default=str))


def report_with_checkpoint(trainer: Trainer, resumed: list[int], report, checkpoint_cls, **kwargs: Any) -> None:
    """``report(epoch_metrics, checkpoint=...)`` with a fresh checkpoint of ``trainer``: Ray Train's report and
    Checkpoint from a worker, Tune's from a trial."""
    with tempfile.TemporaryDirectory() as d:
        write_checkpoint(trainer, d, resumed)
        report(epoch_metrics(trainer), checkpoint=checkpoint_cls.from_directory(d), **kwargs)


def restore(trainer: Trainer, checkpoint) -> list[int]:
    """Load ``checkpoint`` (a Ray Checkpoint or None) into ``trainer``; the epochs resumed at so far.

    A checkpoint that cannot be read (truncated, bit-flipped, or holding anything but tensors and plain
    types) is skipped with a warning, and the previous one in the same run folder is tried: runs keep
    two. Resuming from an older epoch gives the same result, since every epoch re-seeds from
    ``(seed, epoch)``. With no intact checkpoint left, a :class:`CheckpointError` names them.
    """
    if checkpoint is None:
        return []
    failures = []
    for candidate in [checkpoint, *_older_checkpoints(checkpoint)]:
        try:
            state = _load_state(candidate, trainer.device)
            trainer.load_state_dict(state["trainer"])
            resumed = [int(e) for e in state["resumed"]]
        except ConfigError:
            raise  # another dataset's checkpoint: not corruption, the user chose the wrong folder
        except Exception as exc:  # noqa: BLE001 - any unreadable file counts as corrupt
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            failures.append(f"{candidate.path} ({type(exc).__name__}: {reason[:200]})")
            log.warning("checkpoint %s is corrupt (%s: %s); trying the previous one", candidate.path,
                        type(exc).__name__, reason[:200])
            continue
        if failures:
            log.warning("resumed from the older checkpoint %s (epoch %d)", candidate.path, trainer.epoch)
        return resumed + [trainer.epoch]
    raise CheckpointError(
        "no intact checkpoint to resume from: " + "; ".join(failures)
        + ". Delete the run folder to start the run over"
    )


def _load_state(checkpoint, device) -> dict[str, Any]:
    import torch

    with checkpoint.as_directory() as d:
        sums = Path(d) / CHECKSUM_FILE
        if sums.exists():  # checkpoints written before checksums were added have none
            expected = json.loads(sums.read_text()).get(STATE_FILE)
            if expected != sha256_file(Path(d) / STATE_FILE):
                raise ValueError(f"{STATE_FILE} does not match its checksum in {CHECKSUM_FILE}")
        # weights_only: a checkpoint on shared storage must not be able to run code in a worker.
        state = torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=True)
    if not isinstance(state, dict) or not {"trainer", "resumed"} <= set(state):
        raise ValueError(f"{STATE_FILE} holds no trainer state")
    return state


def _older_checkpoints(checkpoint) -> list:
    """The checkpoints saved before ``checkpoint`` in its run folder, newest first.

    Ray Train's are named ``epoch-<epoch>`` here (``checkpoint_dir_name``) and Tune's
    ``checkpoint_<index>``: a shared prefix and a zero-padded number, so names sort by age.
    """
    import pyarrow.fs as pafs

    path = str(checkpoint.path).rstrip("/")
    parent, own = path.rsplit("/", 1) if "/" in path else ("", path)
    prefix = own.rstrip("0123456789")
    if not prefix or prefix == own:
        return []
    try:
        infos = checkpoint.filesystem.get_file_info(pafs.FileSelector(parent or "/"))
    except OSError:
        return []
    older = sorted(
        (i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix)
         and i.base_name[len(prefix):].isdigit() and i.base_name < own),
        reverse=True,
    )
    return [type(checkpoint)(path=p, filesystem=checkpoint.filesystem) for p in older]


def read_summary(checkpoint) -> dict[str, Any]:
    """The run summary saved in a checkpoint by :func:`write_checkpoint`."""
    with checkpoint.as_directory() as d:
        return json.loads((Path(d) / SUMMARY_FILE).read_text())


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the trainer's loop, reporting (rank 0 with a checkpoint) after each epoch."""
    import ray.train
    import ray.train.torch

    from mentor_ray.common.runtime import worker_logging
    from mentor_ray.training.ray_compat import quiet_checkpoint_logs

    worker_logging()
    quiet_checkpoint_logs()
    import torch

    from mentor_ray.datasets.graphs import from_arrays

    torch.set_num_threads(config["threads"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = TrainConfig.model_validate(config["cfg"])
    ds = ray.get(config["dataset"])  # from the object store: no parsing, no DGL on workers
    graphs = from_arrays(ray.get(config["graphs"])) if config["graphs"] is not None else None
    trainer = Trainer(cfg, ds=ds, rank=rank, world_size=world, device=ray.train.torch.get_device(), graphs=graphs)
    quiet = bool(config.get("quiet"))
    if quiet:
        trainer.progress_seconds = None
    resumed = restore(trainer, ray.train.get_checkpoint())
    if resumed and rank == 0:
        print(f"[mentor_ray] resumed from the checkpoint of epoch {trainer.epoch - 1}", flush=True)

    def report(record: dict[str, Any]) -> None:
        if rank != 0:  # every rank reports (a barrier); rank 0 attaches the checkpoint
            ray.train.report(epoch_metrics(trainer))
            return
        if not quiet:
            print(f"[mentor_ray] {format_epoch(record)}", flush=True)  # worker stdout reaches the driver
        report_with_checkpoint(trainer, resumed, ray.train.report, ray.train.Checkpoint,
                               checkpoint_dir_name=f"epoch-{record['epoch']:05d}")

    hook = config.get("batch_hook")
    trainer.fit(on_epoch=report, on_batch=(lambda epoch, batch: hook(rank, epoch, batch)) if hook else None)


def ray_address_hint() -> str:
    addr = os.environ.get("RAY_ADDRESS")
    return f"connecting to {addr}" if addr else "starting a local Ray instance (set RAY_ADDRESS for a cluster)"
