"""Data-parallel training on Ray Train (Train V2, Ray 2.60): DDP over N workers, checkpoints every
epoch, resume, and restarts after a lost worker.

``fit_with_ray(cfg, workers=W, storage=...)`` returns the run summary, as an in-process
:class:`~mentor_ray.training.trainer.Trainer` does; the ``train`` command (:mod:`mentor_ray.train`)
calls it when given ``--workers``, ``--storage`` or ``--run-name``. How it is put together (object
store, ranks, checkpoints, run names): ``docs/architecture.md`` (*Data-parallel training on Ray Train*).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from mentor_ray.common.config import TrainConfig, legacy_resume_settings, resume_settings
from mentor_ray.common.errors import CheckpointError, ConfigError, EnvironmentProblem, Interrupted, MentorRayError
from mentor_ray.common.io import (
    StorageFullError,
    atomic_path,
    out_of_space,
    sha256_file,
    storage_full,
    write_atomic,
    write_json_atomic,
)
from mentor_ray.common.names import CHECKSUM_FILE, REPORTED_METRIC, STATE_FILE, SUMMARY_FILE, check_name
from mentor_ray.training.trainer import STEP_TIMER_ENV, Trainer, format_epoch

log = logging.getLogger(__name__)

BatchHook = Callable[[int, int, int], None]  # (rank, epoch, batch)


def run_name(cfg: TrainConfig, storage: str | None = None) -> str:
    """Deterministic: the same settings give the same name, so re-running resumes. Only the keys the model
    reads count (:func:`~mentor_ray.common.config.resume_settings`). With ``storage`` (a local folder), a run
    that 0.2/0.3 started under its older name (every model key in the hash) is found and continued."""
    from mentor_ray.common.io import sha256_json

    def name(settings: dict[str, Any]) -> str:
        return f"{cfg.dataset}-{cfg.variant}-s{cfg.seed}-{sha256_json(settings)[:8]}"

    dump = cfg.model_dump()
    current = name(resume_settings(dump))  # a longer budget or other runtime keys continue the run
    if storage and "://" not in storage:
        root = Path(storage).expanduser()
        legacy = name(legacy_resume_settings(dump))
        if not (root / current).exists() and (root / legacy).is_dir():
            return legacy
    return current


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
    start_from: str | None = None,
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
        start_from: a checkpoint folder to continue from when the run has none of its own (a resumed
            sweep's DDP trial, cut off in an earlier attempt, whose Train run had another name).

    ``resumed_at_epochs`` in the summary lists the epochs at which the run continued from a
    checkpoint (a re-run of the same command, or a restart after a lost worker).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    from mentor_ray.training.ray_compat import abort_train_run, interruptible_torch_trainer, pinned_torch_config

    if workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    if cfg.batch_size % workers:
        raise ConfigError(
            f"--workers {workers}: batch_size {cfg.batch_size} is not divisible by it; each worker takes "
            f"batch_size / workers triplets of every batch (choose workers dividing {cfg.batch_size})"
        )
    storage = str(Path(storage).expanduser().resolve()) if storage and "://" not in storage else storage
    name = check_name(name, "--run-name") if name else run_name(cfg, storage)  # it must not leave --storage
    ensure_ray()
    check_resources(cpus_per_worker, gpus_per_worker, count=workers,  # Ray would wait for them forever
                    what=f"--workers {workers} --cpus-per-worker {cpus_per_worker:g} "
                    f"--gpus-per-worker {gpus_per_worker:g}")
    repaired = repair_run_folder(Path(storage or "~/ray_results").expanduser() / name) \
        if "://" not in str(storage) else None
    start_from = repaired or start_from
    ds_ref, graphs_ref = inputs or _prepare_inputs(cfg)  # before the trainer: Ray must be up for ray.put
    trainer = interruptible_torch_trainer()(
        _worker_loop,
        torch_config=pinned_torch_config(),
        train_loop_config={
            "cfg": cfg.model_dump(),
            "dataset": ds_ref,
            "graphs": graphs_ref,
            "threads": max(1, int(cpus_per_worker)),
            "batch_hook": batch_hook,
            "quiet": quiet,
            "start_from": str(start_from) if start_from else None,
            # MENTOR_RAY_STEP_TIMER=1 on the driver: the workers time their steps part by part (bench ray)
            "step_timer": os.environ.get(STEP_TIMER_ENV) == "1",
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
    except (KeyboardInterrupt, Interrupted):
        abort_train_run(trainer)  # its workers stop now, not when the driver's Ray goes away
        raise
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
        if out_of_space(e):  # a worker's checkpoint could not be written to the storage (or its /tmp)
            full = e if isinstance(e, OSError) else None
            return StorageFullError(f"{what}: {storage_full((full and full.filename) or path or '.')}")
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
    if cfg.entry.needs_graphs:
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


# Loggers whose lines a quiet command leaves out: Ray's notice that token authentication is on (a WARNING at
# every start, with nothing for the user to do), Tune's INFO lines, and Optuna's line per study.
QUIET_LOGGERS = {"ray._private.authentication.authentication_token_setup": logging.ERROR, "ray": logging.WARNING,
                 "ray.tune": logging.WARNING, "optuna": logging.WARNING,
                 # a trial the search budget stopped before its first result has no metrics to fetch: the sweep's
                 # own lines count it, Tune's warning (and its file path) says nothing more
                 "ray.tune.analysis.experiment_analysis": logging.ERROR}


def quiet_ray_logs() -> None:
    """Only warnings and errors from Ray, Tune and Optuna (see :data:`QUIET_LOGGERS`); with
    ``log_to_driver=False`` the trials' own output stays in their log files under the Ray session folder
    (a failed trial's error still reaches the command, through Tune's result)."""
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    with contextlib.suppress(ImportError):
        import optuna

        optuna.logging.set_verbosity(logging.WARNING)  # Optuna sets its own logger's level on import


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
    check_head_answers()
    if cluster_address() is None:  # no cluster to join: a single-machine Ray
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # inherited by the local raylet's workers
    handlers = _python_signal_handlers()
    try:
        ray.init(**{"log_to_driver": True, **init_kwargs})
    except Exception as exc:
        # Ray raises a bare Exception when its local node does not come up in time (an overloaded machine): the
        # environment's limit, said as one, not an internal error
        if cluster_address() is None and "during startup" in str(exc):
            raise EnvironmentProblem(f"Ray's local node did not start in time ({str(exc).split('.')[0].strip()}); "
                                     f"the machine may be overloaded: retry when it is quieter, or raise "
                                     f"RAY_raylet_start_wait_time_s (seconds)") from exc
        raise
    _reinstall_signal_handlers(handlers)


HEAD_PROBE_S = 3.0


def check_head_answers(timeout: float = HEAD_PROBE_S) -> None:
    """Raise a one-line :class:`ConfigError` when ``RAY_ADDRESS`` names a head that does not accept a TCP
    connection within ``timeout`` seconds: ``ray.init`` would retry it silently for minutes.

    Only the address given is tried (and the one Ray would turn it into: a loopback name becomes the node's
    IP); ``auto``, ``local`` and addresses Ray parses differently are left to Ray.
    """
    import socket

    raw = os.environ.get("RAY_ADDRESS", "").strip()
    if not raw or raw in ("auto", "local"):
        return
    scheme, uri, rest = raw.partition("://")
    if uri and scheme != "ray":  # ray:// is Ray Client, on its own port; other schemes are not for ray.init
        return
    host, sep, port = (rest if uri else raw).rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    candidates = [(host.strip("[]"), int(port))]
    if not uri:  # a GCS address
        with contextlib.suppress(Exception):  # Ray's own reading of it; any trouble is Ray's to report
            from mentor_ray.training.ray_compat import cluster_address

            resolved = cluster_address()
            r_host, _, r_port = (resolved or "").rpartition(":")
            if r_host and r_port.isdigit() and (r_host, int(r_port)) not in candidates:
                candidates.append((r_host.strip("[]"), int(r_port)))
    reasons = []
    for address in candidates:
        try:
            with socket.create_connection(address, timeout=timeout):
                return
        except socket.timeout:
            reasons.append(f"{address[0]}:{address[1]}: no answer within {timeout:g} s")
        except OSError as exc:
            reasons.append(f"{address[0]}:{address[1]}: {(exc.strerror or type(exc).__name__).lower()}")
    raise ConfigError(f"RAY_ADDRESS={raw}: no Ray head answers there ({'; '.join(reasons)}); unset it to start a "
                      f"local Ray, or start the head")


def _python_signal_handlers() -> dict:
    """The Python handlers of SIGTERM, SIGHUP and SIGINT now, in the main thread (elsewhere none can be set)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    return {s: h for s, h in handlers.items() if callable(h)}


def _reinstall_signal_handlers(handlers: dict) -> None:
    """Put back the Python signal handlers ``ray.init`` replaced.

    In a driver, ``ray.init`` sets its own SIGTERM handlers, in Python (``sys.exit``: no ``error:`` line,
    exit 1) and in C (a stack dump and SIGABRT), over the one :func:`mentor_ray.cli.run` installed, which
    raises :class:`~mentor_ray.common.errors.Interrupted` so that the command unwinds: Ray shut down by
    :func:`driver_ray`, the lock released, one ``error: interrupted`` line, exit 143. Setting the handler
    again also reinstalls Python's C-level one. Signals that had no Python handler keep Ray's.
    """
    import signal

    for signum, handler in handlers.items():
        signal.signal(signum, handler)


@contextlib.contextmanager
def driver_ray(lock=None, quiet: bool = False) -> Iterator[None]:
    """Ray for a command's driver: :func:`ensure_ray`, and on the way out, however it goes (done, an error,
    Ctrl-C, SIGTERM), the Ray it started shut down, and then whatever carries ``lock``'s token (a
    :class:`~mentor_ray.common.lock.DriverLock` held since before Ray started) ended: agents and workers
    that outlive their raylet. A Ray the process had already started (or joined) is left as it was.

    ``quiet``: the command prints its own lines only (:func:`quiet_ray_logs`)."""
    import ray

    started = not ray.is_initialized()
    try:
        if quiet:
            quiet_ray_logs()
        ensure_ray(**({"log_to_driver": False, "logging_level": logging.WARNING} if quiet else {}))
        if lock is not None:
            lock.record_children()  # for reports; the token is what the next driver goes by
        with _signals_through_ray():
            yield
    finally:
        if started:
            with _sigint_ignored():  # a second Ctrl-C must not cut the shutdown short and leave processes behind
                try:
                    ray.shutdown()
                finally:
                    # ray.shutdown() leaves some of a local Ray's processes (its agents, the dashboard's
                    # modules) to notice the raylet has gone; under PID 1 if this driver then exits
                    left = lock.end_own_processes() if lock is not None else 0
                    if left:
                        log.debug("ended %d process(es) this driver's Ray left running", left)


@contextlib.contextmanager
def _signals_through_ray() -> Iterator[None]:
    """SIGTERM and SIGHUP interrupt a blocking Ray call (``trainer.fit()`` waits in ``ray.get``) as Ctrl-C does,
    and still end the command as :class:`~mentor_ray.common.errors.Interrupted` (exit 143 / 129).

    While Ray blocks, it runs the Python signal handlers from a callback that lets only KeyboardInterrupt
    through: any other exception a handler raises there (``mentor_ray.cli``'s Interrupted) is printed as
    "ignored" and lost, and the driver waits on until the run ends. So, where the command has Python
    handlers for them, these two raise KeyboardInterrupt here, the signal noted; it is turned back into
    Interrupted on the way out. As with the command's own handler, a second signal while unwinding is
    ignored rather than raised inside a ``finally`` block.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum, _frame):
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        received.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    previous = {s: h for s, h in previous.items() if callable(h)}  # a signal left to its default stays so
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    except KeyboardInterrupt:
        if received:
            raise Interrupted(received[0]) from None
        raise
    finally:
        if not received:  # after a signal, the others stay ignored until the command has unwound
            for s, h in previous.items():
                signal.signal(s, h)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------- a run folder's Train snapshot

SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Train V2's record of a run's checkpoints
CHECKPOINT_PREFIX = "epoch-"  # checkpoint_dir_name of every report (see _worker_loop)


def repair_run_folder(folder: Path) -> Path | None:
    """Make a Train run folder that Ray can no longer load loadable again; the checkpoint to start from
    when Ray's own record of the run cannot say (None: Ray's record is fine, or nothing intact is left).

    Ray writes its snapshot of the run's checkpoints in place, not atomically: a full disk or a kill while
    writing leaves it empty or torn, and every re-run then fails to load it
    (``CheckpointManagerInitializationError``), the checkpoints beside it unused. Such a snapshot is moved
    aside (kept, renamed ``...json.torn-<time>``), and the run continues from the newest intact checkpoint in
    the folder (its state file matches its checksum and its summary reads), as it does when there are
    checkpoints but no snapshot (a kill between the two writes). Newer checkpoints that are not intact (cut
    short by the same full disk) are moved aside too (``<name>.torn-<time>``), so that the continued run
    writes its own in their place, not into their remains; with none intact, the run starts over. Ray's
    snapshot of the continued run starts afresh; the intact checkpoints from before stay.
    """
    from mentor_ray.training.ray_compat import train_snapshot_problem

    if not folder.is_dir():
        return None
    snapshot = folder / SNAPSHOT_FILE
    if snapshot.exists():
        try:
            problem = train_snapshot_problem(snapshot.read_text(errors="replace"), folder)
        except OSError as exc:
            problem = f"unreadable ({exc.strerror or type(exc).__name__})"
        if problem is None:
            return None
    checkpoints = sorted((d for d in folder.iterdir() if d.is_dir() and d.name.startswith(CHECKPOINT_PREFIX)
                          and d.name[len(CHECKPOINT_PREFIX):].isdigit()), reverse=True)
    if snapshot.exists():
        aside = _set_aside(snapshot)
        log.warning("%s: Ray Train's record of the run is %s (a full disk, or a kill while it was written); kept "
                    "as %s", snapshot, problem, aside.name)
    elif not checkpoints:
        return None
    for checkpoint in checkpoints:
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            log.warning("%s: the run continues from its newest intact checkpoint, %s", folder, checkpoint.name)
            return checkpoint
        aside = _set_aside(checkpoint)
        log.warning("%s: checkpoint %s is not intact (%s); kept as %s", folder, checkpoint.name, problem, aside.name)
    log.warning("%s: no intact checkpoint; the run starts over", folder)
    return None


def _set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.torn-<time>`` (a name not taken: an earlier one is never replaced)."""
    stem = f"{path.name}.torn-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    aside, n = path.with_name(stem), 1
    while aside.exists():
        aside, n = path.with_name(f"{stem}-{n}"), n + 1
    os.replace(path, aside)
    return aside


def checkpoint_problem(directory: Path) -> str | None:
    """None when the checkpoint ``directory`` (:func:`write_checkpoint`) is complete: its state file matches the
    checksum recorded after it, and its summary reads. Else what is wrong."""
    try:
        expected = json.loads((directory / CHECKSUM_FILE).read_text()).get(STATE_FILE)
        if expected != sha256_file(directory / STATE_FILE):
            return f"{directory / STATE_FILE}: does not match its checksum"
        json.loads((directory / SUMMARY_FILE).read_text())
    except (OSError, ValueError, AttributeError) as exc:
        return f"{directory}: incomplete ({type(exc).__name__})"
    return None


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
    with atomic_path(state_path) as tmp, open(tmp, "wb") as f:  # a full disk: one line naming the file
        torch.save({"trainer": trainer.state_dict(), "resumed": resumed}, f)
    # torch's zip format does not check tensor bytes on load: a flipped bit would resume silently.
    write_json_atomic(Path(directory) / CHECKSUM_FILE, {STATE_FILE: sha256_file(state_path)})
    summary = {**trainer.summary(), "resumed_at_epochs": resumed}
    write_atomic(Path(directory) / SUMMARY_FILE, json.dumps(summary, default=str))


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
    if config.get("step_timer"):
        os.environ[STEP_TIMER_ENV] = "1"  # read by the Trainer: its steps timed, its summary's "step_parts"
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cfg = TrainConfig.model_validate(config["cfg"])
    ds = ray.get(config["dataset"])  # from the object store: no parsing, no DGL on workers
    graphs = from_arrays(ray.get(config["graphs"])) if config["graphs"] is not None else None
    trainer = Trainer(cfg, ds=ds, rank=rank, world_size=world, device=ray.train.torch.get_device(), graphs=graphs)
    quiet = bool(config.get("quiet"))
    if quiet:
        trainer.progress_seconds = None
    # the run's own latest checkpoint; else, when Ray's record of the run was torn, the one fit_with_ray chose
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and config.get("start_from"):
        checkpoint = ray.train.Checkpoint(config["start_from"])
    resumed = restore(trainer, checkpoint)
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
    # Ray's backend destroys the process group once this returns (world size > 1). Freeing the DDP reducer in
    # that teardown can deadlock gloo (Trainer.release_ddp); release it now, in the safe order, with every rank
    # here (they stop at the same epoch: the stop rule reads all-reduced numbers).
    trainer.release_ddp()


def ray_address_hint() -> str:
    addr = os.environ.get("RAY_ADDRESS")
    return f"connecting to {addr}" if addr else "starting a local Ray instance (set RAY_ADDRESS for a cluster)"
