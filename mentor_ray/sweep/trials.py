"""One Tune trial: the trainable (in-process, or driving a Ray Train DDP run), its summary, and the callback
that records it in the results store when it ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mentor_ray.common.config import VARIANTS, TrainConfig, role_of, validate
from mentor_ray.common.names import REPORTED_METRIC
from mentor_ray.training.ray_train import read_summary, report_with_checkpoint, restore
from mentor_ray.training.trainer import Trainer

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 60.0  # a quiet sweep's phase line: at most this often


def searched(config: dict[str, Any]) -> dict[str, Any]:
    """The run settings in a trial's Tune config (the searched point): its config keys. The rest is plumbing
    (``cfg``, ``threads``, ``ddp``, ``quiet``, ``resume``)."""
    return {k: v for k, v in config.items() if k in TrainConfig.model_fields}


def trial_values(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's settings from its Tune config: the phase's ``cfg`` under the searched values, if any."""
    return {**config["cfg"], **searched(config)}


def trial_key(variant: str, config: dict[str, Any], seed: int) -> str:
    """What identifies a run within one experiment: its variant, the settings that decide its results, its
    seed (as in :func:`mentor_ray.report.results.run_id`, whose other parts are the experiment's own)."""
    from mentor_ray.common.config import result_settings
    from mentor_ray.common.io import sha256_json

    return f"{variant}-{sha256_json(result_settings(config))[:12]}-s{int(seed)}"


def run_key(config: dict[str, Any]) -> str:
    """:func:`trial_key` of a trial's Tune config (its ``cfg`` under the searched values), as its summary will
    have it: the same for every attempt of the same run."""
    cfg = TrainConfig.model_validate(trial_values(config))
    return trial_key(cfg.variant, cfg.model_dump(), cfg.seed)


def summary_key(summary: dict[str, Any]) -> str:
    return trial_key(summary["variant"], summary["config"], summary["seed"])


def graph_key(knn_k: int, knn_norm: str) -> str:
    return f"k{knn_k}-{knn_norm}"


def trial_config(base: dict[str, Any], variant: str, seed: int, point: dict[str, Any],
                 searched: str = "mentor", overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config of one trial: sweep flags < space's fixed settings < the searched point.

    ``searched`` is the model the space is for. A variant of another model (a baseline in the ablation of a
    MENTOR sweep) keeps its own model's published settings, not that grid's: of the model, graph and
    optimisation keys, only those its model does not set itself (its registry entry's defaults) carry over.
    The user's ``overrides`` (``key=value`` on the command line) go over every run, whatever its model.
    """
    values = {**base, **point, "variant": variant, "seed": seed}
    entry = VARIANTS[variant].entry
    if searched not in VARIANTS or entry is not VARIANTS[searched].entry:
        own = entry.all_defaults()
        values = {k: v for k, v in values.items() if k not in own or role_of(k) not in ("model", "graph", "optim")}
    return validate({**values, **(overrides or {})}, source="sweep")


def run_trial(config: dict[str, Any], ds=None, graphs=None) -> None:
    """One trial: an in-process trainer, one report (and checkpoint) per epoch, resumable."""
    import ray.tune
    import torch

    from mentor_ray.common.runtime import worker_logging
    from mentor_ray.datasets.graphs import from_arrays
    from mentor_ray.training.ray_compat import quiet_checkpoint_logs

    worker_logging()
    torch.set_num_threads(max(1, int(config["threads"])))
    quiet_checkpoint_logs()
    cfg = TrainConfig.model_validate(trial_values(config))
    # the build of this trial's k; none (a k the driver did not build): the trainer builds or reads the cache
    arrays = graphs.get(graph_key(cfg.knn_k, cfg.knn_norm)) if graphs else None
    trainer = Trainer(cfg, ds=ds, graphs=from_arrays(arrays) if arrays is not None else None)
    if config.get("quiet"):  # the driver's phase line says how far the sweep is
        trainer.progress_seconds = None
    resumed = restore(trainer, ray.tune.get_checkpoint() or resume_checkpoint(config, cfg))

    trainer.fit(on_epoch=lambda record: report_with_checkpoint(trainer, resumed, ray.tune.report,
                                                               ray.tune.Checkpoint))


def resume_checkpoint(config: dict[str, Any], cfg: TrainConfig):
    """The checkpoint a resumed sweep found for this trial in an earlier attempt (``config["resume"]``: folders
    by :func:`mentor_ray.sweep.resume.trial_key`), or None. Its state is loaded with ``weights_only``."""
    path = (config.get("resume") or {}).get(trial_key(cfg.variant, cfg.model_dump(), cfg.seed))
    if not path:
        return None
    import ray.tune

    log.info("continuing from %s, the checkpoint of this run's earlier attempt", path)
    return ray.tune.Checkpoint.from_directory(path)


def run_ddp_trial(config: dict[str, Any], inputs=None) -> None:
    """One trial of ``--workers-per-trial W > 1``: this Tune function drives a Ray Train (DDP) run.

    The Train run reports once per epoch; ``TuneReportCallback`` forwards rank 0's metrics (the same
    keys as :func:`run_trial`'s) to Tune, so ASHA and the searcher see them. Checkpoints are the Train
    run's own, under ``<storage>/train/<experiment>/<trial id>``: a trial that Tune restarts or resumes
    re-creates the same Train run, which continues from its latest checkpoint; a trial of a resumed sweep
    that was cut off in an earlier attempt continues from that attempt's Train checkpoint (``resume``).
    """
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from mentor_ray.training.ray_compat import quiet_checkpoint_logs
    from mentor_ray.training.ray_train import fit_with_ray

    quiet_checkpoint_logs()
    cfg = TrainConfig.model_validate(trial_values(config))
    ddp = config["ddp"]
    earlier = resume_checkpoint(config, cfg)  # cut off in an earlier attempt: its Train run had another name
    fit_with_ray(cfg, workers=ddp["workers"], cpus_per_worker=ddp["cpus"], gpus_per_worker=ddp["gpus"],
                 storage=ddp["storage"], name=ray.tune.get_context().get_trial_id(),
                 inputs=(inputs[0], inputs[1].get(graph_key(cfg.knn_k, cfg.knn_norm))),
                 callbacks=[TuneReportCallback()], quiet=bool(config.get("quiet")),
                 start_from=str(earlier.path) if earlier is not None else None)


def trial_summary(checkpoint, metrics: dict[str, Any], config: dict[str, Any], error: str | None,
                  synthetic: bool, storage: str) -> dict[str, Any] | None:
    """One trial's summary, with its ``status``, from its latest checkpoint (a DDP trial's is its Ray Train
    run's, whose path ``TuneReportCallback`` reported). A trial that failed before its first epoch gets a
    failure summary, so that none goes missing; None for a trial with neither a checkpoint nor an error."""
    from mentor_ray.report.results import failure_summary

    checkpoint = checkpoint or train_checkpoint(metrics or {}, storage)
    if checkpoint is not None:
        summary = read_summary(checkpoint)
        summary["status"] = "failed" if error else ("completed" if summary["stop_reason"] else "stopped_early")
        summary["error"] = error.strip().splitlines()[-1][:500] if error else None
        return summary
    if error:
        return failure_summary(trial_values(config), error, synthetic)
    return None


def trial_summaries(grid, synthetic: bool, storage: str) -> list[dict[str, Any]]:
    """Every trial's summary (:func:`trial_summary`) of a finished experiment."""
    out = []
    for result in grid:
        error = str(result.error) if result.error else None
        if error and result.checkpoint is None:
            log.warning("trial %s failed: %s", result.path, error)
        summary = trial_summary(result.checkpoint, result.metrics, result.config, error, synthetic, storage)
        if summary is not None:
            out.append(summary)
    return out


def stop_cause(rungs: Path, budget: int | None):
    """What stopped a search trial early, from its summary: ``asha`` when ASHA's ledger (``rungs``,
    :mod:`mentor_ray.sweep.asha`) holds a stop decision for its key at a rung it reached, else ``budget`` when
    the search has one (the only other stopper of a trial that gets recorded: trials an interruption stops are
    not recorded), else None. The ledger is the scheduler's own record, kept across drivers, so the cause is
    the same for a trial recorded by a resumed driver."""
    from mentor_ray.sweep.asha import read_ledger, stopped_at

    def cause(summary: dict[str, Any]) -> str | None:
        stop = stopped_at(read_ledger(rungs), summary_key(summary))
        if stop is not None and int(summary.get("epochs_run") or 0) >= stop:
            return "asha"
        return "budget" if budget else None

    return cause


def name_stop(summary: dict[str, Any], cause) -> None:
    """Give a trial stopped early its ``stopped_by`` from ``cause`` (:func:`stop_cause`), unless it has one."""
    if cause is not None and summary["status"] == "stopped_early":
        summary.setdefault("stopped_by", cause(summary))


def results_recorder(results_dir: Path, role: str, sweep: str, synthetic: bool, storage: str,
                     extra: dict[str, Any] | None = None, journal=None, interrupted=None, cause=None):
    """A Tune callback that writes each trial's rows to the results store as the trial ends (completed,
    stopped by the scheduler, or failed), so a sweep killed mid-phase keeps every finished trial, and
    notes it in the phase's ``journal`` (:class:`mentor_ray.sweep.resume.Journal`), from which ``--resume``
    knows it ended. ``extra`` goes into every summary (a search's space axes and budget). Once
    ``interrupted`` (a :class:`StopFlag`) is set, trials that end are being stopped by the interruption,
    not by early stopping or ASHA: they are neither recorded nor journalled, so a resume continues them.
    ``cause`` (:func:`stop_cause`) names what stopped a trial stopped early (its summary's ``stopped_by``)."""
    from ray import tune

    from mentor_ray.common.runtime import kill_point
    from mentor_ray.report import results

    class RecordResults(tune.Callback):
        def _record(self, trial, error: str | None) -> None:
            summary = trial_summary(trial.checkpoint, trial.last_result, trial.config, error, synthetic, storage)
            if summary is None:
                return
            if interrupted is not None and interrupted.is_set() and summary["status"] == "stopped_early":
                return
            summary.update(extra or {})
            name_stop(summary, cause)
            results.record(results_dir, summary, role, sweep)
            if journal is not None:
                journal.add(summary)
            kill_point(f"driver-{role}")  # fault campaign: the driver killed with runs of this phase recorded

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._record(trial, None)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._record(trial, _error_text(trial))

    return RecordResults()


class StopFlag:
    """Set once the sweep driver is interrupted (a ``threading.Event``). Tune pickles its callbacks and
    stoppers into the experiment state, which mentor_ray never reads back: a pickled flag is a new, unset one."""

    def __init__(self):
        import threading

        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __reduce__(self):
        return (StopFlag, ())


def interrupt_stopper(event):
    """A Tune stopper that ends the whole experiment once ``event`` (a ``threading.Event``) is set: the
    sweep driver sets it (a :class:`StopFlag`) on SIGINT or SIGTERM, and Tune stops every trial at its next step.

    It stops the experiment (``stop_all``), never one trial on its result: Tune asks a trial's stopper before its
    scheduler and skips the scheduler when the stopper says stop, so a result that arrived after the signal
    would not reach ASHA. Its rung would then go unrecorded, and the resumed trial, continuing from that
    epoch's checkpoint, would be judged one epoch late, on another value (and train an epoch the uninterrupted
    search never ran)."""
    from ray.tune.stopper import Stopper

    class StopOnInterrupt(Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return event.is_set()

    return StopOnInterrupt()


def phase_status(trials, total: int, budget: int | None, elapsed: float, max_epochs: int | None = None,
                 before: int = 0, ended_before: int = 0, best_before: float | None = None) -> str:
    """Where a phase stands: epochs trained (against the ``budget`` of trial-epochs, with the time left at
    the rate so far; without a budget, against ``total`` runs of up to ``max_epochs``, the time left at most),
    trials ended and running, and the best validation value reported so far. A search's time left is that of
    the budget left or, with ``max_epochs``, of what its ``total`` trials can still train if that is less (a
    one-point search ends at the cap, whatever its budget). ``before``: trial-epochs earlier drivers of a
    resumed search spent (its budget ledger), counted in what is spent and out of the rate (``elapsed`` is this
    driver's); ``ended_before`` and ``best_before``: the trials those drivers ended and the best validation value
    among them, counted with this driver's (a resumed search's best so far is the search's, not the driver's)."""
    epochs = sum(int((t.last_result or {}).get("training_iteration", 0)) for t in trials)
    ended = ended_before + sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    running = sum(t.status == "RUNNING" for t in trials)
    most = _epochs_left_at_most(trials, total, max_epochs) if max_epochs else None
    if budget:
        spent = before + epochs
        spend = max(0, budget - spent) if most is None else min(max(0, budget - spent), most)
        left = f", ~{_duration(elapsed / epochs * spend)} left at this rate" if epochs else ""
        parts = [f"{spent:,} of {budget:,} trial-epochs ({min(100, round(100 * spent / budget))}%){left}",
                 f"{ended} ended, {running} running"]
    else:
        left = (f", ~{_duration(elapsed / epochs * most)} left if every run trains to the cap"
                if epochs and max_epochs else "")
        parts = [f"{epochs:,} epochs{left}", f"{ended}/{total:,} ended, {running} running"]
    best = [t.last_result[REPORTED_METRIC] for t in trials
            if t.last_result and t.last_result.get(REPORTED_METRIC) is not None]
    best += [best_before] if best_before is not None else []
    if best:
        parts.append(f"best valid R@20 so far {max(best):.4f}")
    return "; ".join(parts) + f"; {_duration(elapsed)} so far"


def _epochs_left_at_most(trials, total: int, max_epochs: int) -> int:
    """Epochs the phase's ``total`` runs can still train: the runs not ended yet each up to the cap (early
    stopping and ASHA end most sooner), those not started yet the whole cap."""
    most = sum(max(0, max_epochs - int((t.last_result or {}).get("training_iteration", 0)))
               for t in trials if t.status not in ("TERMINATED", "ERROR"))
    return most + max(0, total - len(trials)) * max_epochs


def phase_estimate(set_up: float, epoch: float, total: int, max_epochs: int, concurrent: int,
                   budget: int | None = None, expected_trials: float | None = None) -> tuple[float, str]:
    """Seconds a phase should take, and what the figure assumes: each run's ``set_up`` seconds (process,
    data, graphs, model, up to its first epoch) and ``epoch`` seconds per epoch (training and evaluation, set-up
    excluded), ``concurrent`` runs side by side. A budgeted search trains ``budget`` trial-epochs over
    ``expected_trials`` runs (:func:`mentor_ray.sweep.plan.search_plan`; each a set-up); otherwise ``total`` runs
    of up to ``max_epochs`` (each to the cap: early stopping ends most sooner, but set-up times vary from run to
    run, so it is an estimate, not a bound)."""
    lanes = max(1, concurrent)
    if budget and budget < total * max_epochs:
        runs = min(total, max(1.0, expected_trials or budget / max_epochs))
        return (runs * set_up + budget * epoch) / lanes, (
            f"a budget of {budget:,} trial-epochs over ~{runs:.1f} trials, {concurrent} at once: ~")
    return total * (set_up + max_epochs * epoch) / lanes, (
        f"{total:,} runs x up to {max_epochs} epochs, {concurrent} at once, if every run trains to the cap: ~")


def progress_printer(label: str, total: int, max_epochs: int, concurrent: int, budget: int | None = None,
                     heartbeat: float | None = None, clock=None, expected_trials: float | None = None,
                     spent_before: int = 0, ended_before: int = 0, best_before: float | None = None):
    """A Tune callback printing mentor_ray's own progress lines: once a trial's second epoch is reported (its
    first includes the set-up), an estimate of the phase's time (:func:`phase_estimate`); then a line per trial
    as it ends; and with ``heartbeat`` (seconds), at most that often, where the phase stands
    (:func:`phase_status`, with the time left). (Quiet mode shows these instead of Tune's status tables.)
    ``spent_before``: the trial-epochs of the ``budget`` a resumed search spent before this driver (the
    estimate is of the rest); ``ended_before`` and ``best_before``: the trials it ended and the best validation
    value among them (:func:`phase_status`). ``clock`` (monotonic seconds) is for tests."""
    import time

    from ray import tune

    from mentor_ray.common.runtime import kill_point

    now = clock or time.monotonic

    class PrintProgress(tune.Callback):
        def __init__(self):
            self.started, self.done, self.estimated, self.results = now(), 0, False, 0
            self.beat = self.started
            self.first: dict[object, float] = {}  # trial id -> when its first epoch was reported

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.results += 1
            kill_point(f"driver-{label.split()[-1]}-result{self.results}")  # tests: interrupted mid-phase
            if heartbeat and now() - self.beat >= heartbeat:
                self.beat = now()
                status = phase_status(trials, total, budget, self.beat - self.started, max_epochs, spent_before,
                                      ended_before, best_before)
                print(f"[mentor_ray] {label}: {status}", flush=True)
            if self.estimated or "epoch" not in result:
                return
            key = getattr(trial, "trial_id", id(trial))
            if key not in self.first:
                self.first[key] = now()
                if max_epochs > 1:
                    return  # the next epoch of this trial gives the epoch time without the set-up
                epoch, set_up = now() - self.started, 0.0
            else:
                epoch = now() - self.first[key]
                set_up = max(0.0, self.first[key] - self.started - epoch)
            self.estimated = True
            rest = max(1, budget - spent_before) if budget else budget
            seconds, what = phase_estimate(set_up, epoch, total, max_epochs, concurrent, rest, expected_trials)
            print(f"[mentor_ray] {label}: set-up {_seconds(set_up)} and {_seconds(epoch)} an epoch; {what}"
                  f"{_duration(seconds)} in all", flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._line(trial, "done")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._line(trial, "failed")

        def _line(self, trial, how: str) -> None:
            self.done += 1
            r = trial.last_result or {}
            got = (f"best valid R@20 {r[REPORTED_METRIC]:.4f} at epoch {r.get('best_epoch')} of {r.get('epoch', 0) + 1}"
                   if REPORTED_METRIC in r else "no epoch finished")
            cfg = trial.config.get("cfg", {})
            point = searched(trial.config)
            what = (" ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
                    or f"{cfg.get('variant')} seed {cfg.get('seed')}")
            of = f"/{total:,}" if not budget or total * max_epochs <= budget else ""
            print(f"[mentor_ray] {label}: {self.done}{of} {how} ({what}): "
                  f"{got}; {_duration(now() - self.started)} so far", flush=True)

    return PrintProgress()


def epoch_budget(budget: int, ledger: Path | None):
    """A Tune stopper that ends the experiment once its trials have trained ``budget`` epochs in all.

    Each trial counts its highest ``training_iteration`` (the epochs it trained in this attempt: a trial
    continued from an earlier attempt's checkpoint has a new id and counts from there); the counts live in
    ``ledger`` (JSON, rewritten atomically at each new epoch), so a resumed sweep's new stopper reads what
    was spent and never counts an epoch twice. The trial whose epoch spends the budget keeps that epoch;
    the others running then stop after the epoch they are in, which Tune discards (no checkpoint kept), so
    it is not counted either: what the budget counts is what the results store shows.
    """
    import json

    from ray.tune.stopper import Stopper

    from mentor_ray.common.io import write_json_atomic

    class EpochBudget(Stopper):
        def __init__(self):
            self.budget, self.ledger, self.spent = budget, ledger, None

        def _counts(self) -> dict[str, int]:
            if self.spent is None:  # first call in this driver: what earlier drivers spent
                try:
                    self.spent = {k: int(v) for k, v in json.loads(self.ledger.read_text()).items()}
                except (AttributeError, OSError, ValueError):
                    self.spent = {}
            return self.spent

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            counts = self._counts()
            if self.stop_all():  # a result that arrives once the experiment is stopping: Tune keeps no checkpoint
                return True    # of it, so the store will not show that epoch, and the budget does not count it
            epochs = int(result.get("training_iteration", 0))
            if epochs > counts.get(trial_id, 0):
                counts[trial_id] = epochs
                if self.ledger is not None:
                    write_json_atomic(self.ledger, counts)
            return self.stop_all()

        def stop_all(self) -> bool:
            return sum(self._counts().values()) >= self.budget

    return EpochBudget()


def spent_epochs(ledger: Path) -> int:
    import json

    try:
        return sum(int(v) for v in json.loads(ledger.read_text()).values())
    except (OSError, ValueError):
        return 0


def _seconds(seconds: float) -> str:
    """A short time with a decimal below 10 s (an epoch of 1.4 s is not "1s")."""
    return f"{seconds:.1f}s" if seconds < 9.95 else _duration(seconds)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _error_text(trial) -> str:
    """The trial's error as Tune wrote it: first the local error file (written before the callbacks run),
    then the copy in storage (synced later)."""
    local = trial.error_file
    if local and Path(local).is_file():
        text = Path(local).read_text().strip()
        if text:
            return text
    return trial.get_error() or "trial failed (no error text)"


def train_checkpoint(metrics: dict[str, Any], storage: str):
    """The Ray Train checkpoint whose path a DDP trial reported (``TuneReportCallback``), or None."""
    path = metrics.get("checkpoint_path")
    if not path:
        return None
    import pyarrow.fs
    from ray.train import Checkpoint

    fs = pyarrow.fs.FileSystem.from_uri(storage)[0] if "://" in storage else pyarrow.fs.LocalFileSystem()
    return Checkpoint(path, filesystem=fs)
