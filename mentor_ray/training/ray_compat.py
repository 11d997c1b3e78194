"""Every use of Ray's private or developer APIs, in one place, behind a version check.

Ray does not promise these across releases. They are tested with Ray 2.60 only: any other version
stops here with a message rather than failing somewhere deep inside a run.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from mentor_ray.common.errors import MentorRayError

TESTED_RAY = "2.60"


def check_ray_version() -> None:
    """Stop with a clear message on a Ray release these shims were not tested with."""
    import ray

    if not ray.__version__.startswith(TESTED_RAY + "."):
        raise MentorRayError(
            f"Ray {ray.__version__} is installed; mentor_ray is tested with Ray {TESTED_RAY}.x, whose private "
            f"APIs it uses (mentor_ray/training/ray_compat.py). Install ray[default,tune,train]=={TESTED_RAY}.* "
            f"(scripts/setup.sh does), or set MENTOR_RAY_ALLOW_RAY={ray.__version__} to try anyway"
        )


def _checked() -> None:
    import ray

    if os.environ.get("MENTOR_RAY_ALLOW_RAY") != ray.__version__:
        check_ray_version()


def cluster_address() -> str | None:
    """The address of a running cluster to join (RAY_ADDRESS, or one started with ``ray start``), else None."""
    _checked()
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None)


def pinned_torch_config():
    """Ray Train's TorchConfig, whose backend first pins gloo to the interface of each worker's node IP.

    Unpinned, gloo binds to whatever the machine's hostname resolves to; where it does not resolve
    (containers, sandboxes, some CI machines) creating the process group hangs instead of failing.
    Pinning to the node IP's interface is what a multi-node run needs anyway. An explicit
    ``GLOO_SOCKET_IFNAME`` in the workers' environment wins.
    """
    _checked()
    from ray.train.torch import TorchConfig
    from ray.train.torch.config import _TorchBackend

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


@functools.lru_cache(maxsize=None)
def interruptible_torch_trainer() -> type:
    """Ray Train's TorchTrainer, except that ``fit()`` leaves Ctrl-C to the caller.

    Train V2's ``fit()`` in the main thread replaces the SIGINT handler with one that asks the controller to
    abort and then keeps waiting (a second Ctrl-C: ``sys.exit(0)``), and never puts the previous handler
    back: an interrupted run would return as if it had finished, with exit status 0. Here Ctrl-C raises
    KeyboardInterrupt out of ``fit()`` as anywhere else, and the controller, kept in ``.controller``, is
    aborted by :func:`abort_train_run` while the interruption unwinds (private ``_register_sigint_handler``).
    """
    _checked()
    from ray.train.torch import TorchTrainer

    class InterruptibleTorchTrainer(TorchTrainer):
        controller = None

        def _register_sigint_handler(self, controller) -> None:
            self.controller = controller

    return InterruptibleTorchTrainer


def abort_train_run(trainer, timeout: float = 10.0) -> None:
    """Ask the controller of ``trainer``'s run (if it started one from the main thread) to stop its workers,
    waiting at most ``timeout`` seconds. Best effort: it runs while an interruption unwinds."""
    import ray

    controller = getattr(trainer, "controller", None)
    if controller is None:
        return
    try:
        ray.get(controller.abort.remote(), timeout=timeout)
    except Exception:  # noqa: BLE001 - the controller exits as it aborts (RayActorError), or is already gone
        pass


def train_snapshot_problem(text: str, run_folder) -> str | None:
    """None when ``text`` is a Train V2 run snapshot (``checkpoint_manager_snapshot.json``) that Ray can load
    in ``run_folder``: it parses as Ray's own model of it (private ``_CheckpointManagerState``), and every
    checkpoint it names is there. Else what is wrong, in a few words."""
    import json
    from pathlib import Path

    _checked()
    from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import _CheckpointManagerState

    if not text.strip():
        return "empty"
    try:
        parse = getattr(_CheckpointManagerState, "model_validate", None) or _CheckpointManagerState.parse_obj
        state = parse(json.loads(text))
    except Exception as exc:  # noqa: BLE001 - a torn file fails in the JSON parser or the model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"unreadable ({type(exc).__name__}: {first[:120]})"
    named = [r.checkpoint_dir_name for r in [*state.checkpoint_results, *state.pending_training_results]]
    if state.latest_checkpoint_result is not None:
        named.append(state.latest_checkpoint_result.checkpoint_dir_name)
    missing = sorted({n for n in named if not (Path(run_folder) / n).is_dir()})
    return f"names checkpoint(s) that are not there ({', '.join(missing)})" if missing else None


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


def quiet_checkpoint_logs() -> None:
    """Ray logs a line per saved checkpoint and per reported result, i.e. per trial and epoch; the progress
    lines say enough."""
    import logging

    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:  # Train V2's "Reporting training result ..." comes from a logger named by its file's path
        from ray.train.v2._internal.execution import context
    except ImportError:
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def optuna_study(search):
    """The Optuna study behind Ray's ``OptunaSearch`` (a private attribute)."""
    _checked()
    return search._ot_study


def optuna_live_trials(search) -> dict:
    """Ray's ``OptunaSearch`` map of Tune trial id to the Optuna trial it asked for (private)."""
    _checked()
    return search._ot_trials


def configure_tune() -> None:
    """Tune's behaviour that only environment variables reach (internal knobs, Ray 2.60); set before Ray starts,
    each only where the user has not set it."""
    # One checkpoint kept per trial makes Tune snapshot the experiment at every epoch's checkpoint
    # (docs/benchmarks.md); on fast small-data epochs it then warns on every snapshot. The snapshot
    # is what makes --resume exact, so keep it and silence the warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's classic progress table (CLIReporter, with our columns) instead of the new output, which
    # prints every trial's full config
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A trial stopped by ASHA gets this long to exit before Tune kills it (default 600 s). A DDP trial
    # sits in its Ray Train run and never exits by itself; while it lingers its run keeps the workers'
    # resources, so the next trial waits. Killed, the run is torn down (its controller is the trial's).
    os.environ.setdefault("TUNE_FORCE_TRIAL_CLEANUP_S", "15")


def nested_errors(error: BaseException) -> list[BaseException]:
    """The exceptions a Ray Train/Tune error wraps: the workers' failures (``worker_failures``), the
    controller's, and the user exception inside ``UserExceptionWithTraceback`` (private ``_base_exc``)."""
    found = [getattr(error, "_base_exc", None), getattr(error, "controller_failure", None),
             getattr(error, "cause", None), error.__cause__, error.__context__]
    found += list(getattr(error, "worker_failures", {}).values())
    return [e for e in found if isinstance(e, BaseException)]
