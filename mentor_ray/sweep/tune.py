"""Ray Tune + Optuna sweeps of MENTOR's grid, then final runs over seeds and the ablation table.

Per dataset, three phases: ``search`` (Optuna over a space of ``tune_spaces/``, ASHA on validation
Recall@20), ``final`` (the best point re-run over ``--seeds`` seeds) and, with ``--ablation``, every
variant and baseline at that point; every run lands in the results store, and the leaderboard is
written at the end. Usage: ``run_sweep(SweepOptions(dataset=..., results=...))``, or the ``tune``
command (:mod:`mentor_ray.tune`). How it works: ``docs/architecture.md`` (*Sweeps*).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from mentor_ray.common.config import (
    VARIANTS,
    TrainConfig,
    keys_with,
    role_of,
    validate,
)
from mentor_ray.common.errors import ConfigError, DataError, MentorRayError, check_flags
from mentor_ray.common.errors import shown as shown_value
from mentor_ray.common.names import REPORTED_METRIC
from mentor_ray.sweep.asha import read_ledger, reported_values, stopped_at
from mentor_ray.sweep.resume import (
    Journal,
    attempt_name,
    attempts,
    cut_off_trials,
    describe,
    enqueue,
    prune_ended,
    study_points,
)
from mentor_ray.sweep.spaces import SearchSpace, dedupe_points, load_space, snap
from mentor_ray.sweep.trials import (
    HEARTBEAT_SECONDS,
    StopFlag,
    epoch_budget,
    graph_key,
    interrupt_stopper,
    name_stop,
    progress_printer,
    results_recorder,
    run_ddp_trial,
    run_key,
    run_trial,
    spent_epochs,
    stop_cause,
    summary_key,
    trial_config,
    trial_key,
    trial_summaries,
)
from mentor_ray.training.ray_compat import configure_tune

log = logging.getLogger(__name__)

METRIC = REPORTED_METRIC
ASHA_REDUCTION = 3  # ASHA keeps the top 1/3 of trials at each rung
GRACE_PERIOD = 10  # epochs before ASHA's first rung (--grace-period)
# TPE's random start-up trials (Optuna's default is 10): with 5, TPE + ASHA came within 1% of the grid's best
# at 10% of its compute in 9 of 10 searcher seeds, against 6 of 10 with 10 (`bench search`, docs/benchmarks.md)
TPE_STARTUP = 5
# A DDP trial's own process only drives its Ray Train run, whose workers hold the CPUs and GPUs. Tune
# refuses an all-zero request, and any CPU share would leave W workers of one CPU unplaceable on W CPUs.
# seeds of the final runs: fewer understate the spread between training runs (docs/results.md)
PAPER_BUDGET = 400  # --paper's search budget per model and dataset in trial-epochs, without --budget
DEFAULT_SEEDS = 5
DEFAULT_SAMPLES = 24  # search trials per dataset without --num-samples or --budget
DRIVER_RESOURCES = {"cpu": 0, "memory": 64 * 2**20}
STOP_GRACE = 20.0  # seconds an interrupted sweep waits for Tune to stop its trials before shutting Ray down
FLAG_KEYS = keys_with("run", "budget")  # set by the sweep's flags (variant, seed, --max-epochs, ...), not by overrides
GRAPH_KEYS = keys_with("graph")  # settings the graphs are built with: one build per searched value


def _progress_reporter(parameters: Sequence[str]):
    """Tune's progress table with the columns that matter: validation Recall@20 now and best, the epoch,
    and the searched hyper-parameters (or the variant and seed of a final / ablation run)."""
    from ray.tune import CLIReporter

    return CLIReporter(
        metric_columns={"epoch": "epoch", "valid_recall@20": "valid R@20", METRIC: "best R@20",
                        "best_epoch": "best epoch"},
        parameter_columns={p: p.split("/")[-1] for p in parameters},
        max_report_frequency=60, max_progress_rows=30, print_intermediate_tables=True,
    )


def _run_experiment(name: str, storage: str, trainable, param_space: dict, tune_config, columns: Sequence[str],
                    callbacks: Sequence = (), quiet: bool = False, stop=None):
    """Run the Tune experiment ``storage/name`` (always a new one: a resumed phase runs a new attempt, see
    :mod:`mentor_ray.sweep.resume`; ``Tuner.restore`` would unpickle whatever the storage holds); its
    ResultGrid. ``quiet``: no Tune status tables (mentor_ray's progress callback prints its own lines)."""
    from ray import tune

    run_config = tune.RunConfig(
        name=name, storage_path=storage, verbose=0 if quiet else 1,
        progress_reporter=None if quiet else _progress_reporter(columns),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # a corrupt newest one falls back
        failure_config=tune.FailureConfig(max_failures=2), callbacks=list(callbacks), stop=stop,
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config).fit()


class SweepStopped(BaseException):
    """A phase ended because the driver was interrupted (SIGINT or SIGTERM): not an error of the phase, and
    no later phase may start. A BaseException, so that no ``except Exception`` takes it for a failure."""


@dataclasses.dataclass
class Prior:
    """What earlier attempts of one experiment left (:mod:`mentor_ray.sweep.resume`): the journal, the trials
    that ended (by key), the cut-off ones with their checkpoints, and the folder name of this attempt."""

    journal: Journal
    ended: dict[str, dict[str, Any]]
    cut_off: dict[str, dict[str, Any]]
    attempt: str

    @property
    def done(self) -> dict[str, dict[str, Any]]:
        return {k: s for k, s in self.ended.items() if s["status"] != "failed"}

    @property
    def failed(self) -> dict[str, dict[str, Any]]:
        return {k: s for k, s in self.ended.items() if s["status"] == "failed"}

    @property
    def checkpoints(self) -> dict[str, str]:
        """Where each cut-off trial continues from (its ``resume`` map)."""
        return {k: c["checkpoint"] for k, c in self.cut_off.items() if c["checkpoint"]}


def _already_exists(storage: str, name: str) -> ConfigError:
    return ConfigError(f"--storage {storage}: experiment {name} already exists; add --resume to continue it, "
                       f"or choose another --storage")


def _best_valid(summaries: dict[str, dict[str, Any]]) -> float | None:
    """The best validation Recall@20 of ``summaries`` (an earlier attempt's ended trials); None without one."""
    values = [s["valid"]["recall@20"] for s in summaries.values()
              if (s.get("valid") or {}).get("recall@20") is not None]
    return max(values, default=None)


def _ended_text(summaries: list[dict[str, Any]]) -> str:
    """How a search's trials ended, exactly (their ``status``, the trainer's ``stop_reason`` and the sweep's
    ``stopped_by``): ``5 completed (2 at the epoch cap), 3 stopped by ASHA, 1 by the budget, 0 failed``."""
    from collections import Counter

    status = Counter(s["status"] for s in summaries)
    capped = sum(s["status"] == "completed" and s.get("stop_reason") == "max_epochs" for s in summaries)
    by = Counter(s.get("stopped_by") for s in summaries if s["status"] == "stopped_early")
    parts = [f"{status['completed']} completed" + (f" ({capped} at the epoch cap)" if capped else "")]
    parts += [f"{by[cause]} {words}" for cause, words in (("asha", "stopped by ASHA"), ("budget", "by the budget"),
                                                          (None, "stopped early")) if by[cause]]
    return ", ".join([*parts, f"{status['failed']} failed"])


def _warn_no_experiment(storage: Path, name: str) -> None:
    """--resume with no experiment of this name: say so, naming same-phase experiments that differ
    only in settings (a changed flag or override gives a new name, so the sweep starts over)."""
    stem = name.rsplit("-", 1)[0]
    others = sorted(p.name for p in storage.glob(f"{stem}-*") if p.is_dir()) if storage.is_dir() else []
    if not others and not any(p.is_dir() for phase in ("search", "final", "ablation")
                              for p in (storage.glob(f"{phase}-*") if storage.is_dir() else ())):
        return  # a storage with no experiment yet: a first run with --resume (scripts/run.sh), nothing to say
    hint = (f"; {', '.join(others)} there was started with other settings (flags, key=value overrides or "
            f"--data-root): repeat that sweep's exact command to continue it") if others else ""
    print(f"[mentor_ray] --resume: no experiment {name} under {storage}, starting it{hint}", flush=True)


@dataclasses.dataclass
class SweepOptions:
    """How a sweep runs: the ``tune`` command's flags (see ``mentor-ray tune --help``)."""

    dataset: str
    results: str
    data_root: str | None = None
    space: str = "paper_grid"
    num_samples: int | None = None  # None: DEFAULT_SAMPLES, or with a budget as many as it allows
    max_epochs: int | None = None
    final_max_epochs: int | None = None  # the final and ablation runs' cap (None: the search's)
    seeds: int = DEFAULT_SEEDS
    seed: int = 0
    storage: str = "~/ray_results/mentor_ray"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1
    max_concurrent: int = 0
    grace_period: int = GRACE_PERIOD
    ablation: bool = False
    resume: bool = False
    optuna_storage: str | None = None
    leaderboard: str | None = None
    quiet: bool = False
    budget: int | None = None  # search trial-epochs per dataset
    baselines: str | None = None  # "all" or NAME[,NAME...]: also sweep each baseline's own grid, same budget
    paper: bool = False  # the paper's experiments section: --ablation, --baselines all, a budget for every model
    plan: bool = False  # print the plan (and its warnings) and exit before Ray starts
    warm_start_from: str | None = None  # a results store: the best points of the same space on other datasets
    no_warm_start: bool = False  # TPE from its random start-up alone (no known points first)
    search_only: bool = False  # the search alone: no finals, ablation or leaderboard
    overrides: list[str] = dataclasses.field(default_factory=list)


class Sweep:
    """One sweep over datasets: search, finals and ablation; rows into the results store."""

    def __init__(self, args: SweepOptions, space: SearchSpace):
        from mentor_ray.common.config import parse_overrides

        self.args, self.space = args, space
        if args.data_root and "://" not in args.data_root:  # one experiment name however the path is typed
            args.data_root = str(Path(args.data_root).expanduser().resolve())
        self.storage = args.storage if "://" in args.storage else str(Path(args.storage).expanduser().resolve())
        self.results = Path(args.results)
        self.overrides = parse_overrides(args.overrides)
        for key in self.overrides:
            if key in FLAG_KEYS or key in space.search:
                what = "a flag of the sweep" if key in FLAG_KEYS else f"searched by the space {space.name}"
                raise ConfigError(f"override {key}=...: {key} is {what}; overrides may set any other config key")
        validate(self.overrides, source="override")
        self.synthetic: dict[str, bool] = {}
        self._start: dict[str, dict[str, Any]] = {}  # per dataset: the start_from stage's best settings
        self._datasets: dict[str, Any] = {}  # loaded by check_dataset, handed to the trials once
        self.interrupted = StopFlag()  # set on SIGINT/SIGTERM: every phase stops, none starts

    def base(self, dataset: str) -> dict[str, Any]:
        """Settings of every trial on ``dataset``: the start point (``start_from``) < the space's fixed
        settings < ``key=value`` overrides."""
        base = {"dataset": dataset, "data_root": self.args.data_root, **self.start_point(dataset),
                **self.space.settings_for(dataset), **self.overrides}
        if self.args.max_epochs is not None:
            base["max_epochs"] = self.args.max_epochs
        return base

    def final_base(self, dataset: str) -> dict[str, Any]:
        """Settings of every final and ablation run on ``dataset``: :meth:`base` with ``--final-max-epochs``."""
        base = self.base(dataset)
        if self.args.final_max_epochs is not None:
            base["max_epochs"] = self.args.final_max_epochs
        return base

    def start_point(self, dataset: str) -> dict[str, Any]:
        """The settings of the best search trial of the space's ``start_from`` stage on ``dataset``, read from
        the results store (every setting that decides results: the stage's point and what it started from)."""
        stage = self.space.start_from
        if stage is None:
            return {}
        if dataset not in self._start:
            from mentor_ray.common.config import result_settings
            from mentor_ray.report.results import best_search_run

            best = best_search_run(self.results, dataset, stage)
            if best is None:
                raise ConfigError(
                    f"--space {self.space.name}: it starts from the best point of {stage} (start_from), but "
                    f"--results {self.results} holds no {stage} search on {dataset}; run "
                    f"`mentor-ray tune --space {stage}` on it first with the same --results")
            self._start[dataset] = result_settings(best["config"])
            shown = " ".join(f"{k}={v}" for k, v in self._start[dataset].items()
                             if v != TrainConfig.model_fields[k].default)
            print(f"[mentor_ray] {dataset}: {self.space.name} starts from {stage}'s best point (valid R@20 "
                  f"{best['valid_recall@20']:.4f}, {best['run_id']}): {shown or 'the defaults'}", flush=True)
        return self._start[dataset]

    def check_dataset(self, dataset: str) -> None:
        """Load and validate ``dataset`` with the sweep's settings, before Ray starts (kept for the trials)."""
        from mentor_ray.datasets.dataset import load_dataset

        cfg = validate(self.base(dataset), source="sweep")
        first = self.name("search", dataset)
        if not self.args.resume and "://" not in self.storage and (Path(self.storage) / first).exists():
            raise _already_exists(self.storage, first)
        ds = load_dataset(dataset, self.args.data_root)
        unmet = cfg.entry.unmet(cfg.variant, ds.name, ds.modalities)
        if unmet:
            raise DataError(f"--dataset {dataset}: {unmet}; sweep a space of one of those (e.g. --space "
                            f"lightgcn_grid)")
        self._datasets[dataset] = ds

    def trainable(self, dataset: str):
        """The trial function with the dataset and graphs in Ray's object store (built once, here).

        The graphs are built for every (knn_k, knn_norm) the space searches (else the sweep's one),
        keyed by :func:`graph_key`; each trial takes the build of its own settings."""
        import itertools

        import ray
        from ray import tune

        from mentor_ray.datasets.dataset import load_dataset
        from mentor_ray.datasets.graphs import build_graphs, to_arrays

        cfg = validate(self.base(dataset), source="sweep")
        ds = self._datasets.pop(dataset, None) or load_dataset(dataset, self.args.data_root)
        self.synthetic[dataset] = ds.synthetic
        axes = [self.space.search.get(key, [getattr(cfg, key)]) for key in GRAPH_KEYS]
        wanted = set(itertools.product(*axes))
        for variant in self.ablation_variants() if self.args.ablation else ():  # each at its own defaults
            other = validate({**self.base(dataset), "variant": variant}, source="sweep")
            if other.entry.needs_graphs:
                wanted.add((other.knn_k, other.knn_norm))
        graphs = {graph_key(k, norm): to_arrays(build_graphs(ds, k=k, knn_norm=norm)) for k, norm in sorted(wanted)}
        if self.args.workers_per_trial > 1:  # the trial is a Train driver: its workers hold the resources
            inputs = [ray.put(ds), {key: ray.put(g) for key, g in graphs.items()}]
            return tune.with_resources(tune.with_parameters(run_ddp_trial, inputs=inputs), DRIVER_RESOURCES)
        resources = {"cpu": self.args.cpus_per_trial, "gpu": self.args.gpus_per_trial}
        return tune.with_resources(tune.with_parameters(run_trial, ds=ds, graphs=graphs), resources)

    def trial_space(self, experiment: str, prior: Prior | None = None) -> dict[str, Any]:
        """What every trial's config carries besides the model settings: threads, quiet, the DDP layout, and
        (resumed) the earlier attempts' checkpoints of the cut-off trials."""
        space: dict[str, Any] = {"threads": self.args.cpus_per_trial}
        if self.args.quiet:  # trials print no progress lines inside epochs; the driver prints a phase line
            space["quiet"] = True
        if prior is not None and prior.checkpoints:
            space["resume"] = prior.checkpoints
        if self.args.workers_per_trial > 1:
            attempt = prior.attempt if prior is not None else experiment
            space["ddp"] = {"workers": self.args.workers_per_trial, "cpus": self.args.cpus_per_trial,
                            "gpus": self.args.gpus_per_trial, "storage": f"{self.storage}/train/{attempt}"}
        return space

    def max_concurrent(self) -> int:
        """``--max-concurrent``, or for DDP trials as many Train runs as the cluster can hold at once
        (more would start Train drivers that only wait for workers; Ray's guide to Train in Tune)."""
        if self.args.max_concurrent or self.args.workers_per_trial == 1:
            return self.args.max_concurrent
        import ray

        total = ray.cluster_resources()
        w = self.args.workers_per_trial
        fits = [total.get("CPU", 0) // (w * self.args.cpus_per_trial)]
        if self.args.gpus_per_trial:
            fits.append(total.get("GPU", 0) // (w * self.args.gpus_per_trial))
        return max(1, int(min(fits)))

    def concurrency(self, total: int) -> int:
        """How many of ``total`` trials run at once (for the time estimate)."""
        import ray

        if self.max_concurrent():
            return min(total, self.max_concurrent())
        per = self.args.cpus_per_trial * self.args.workers_per_trial
        return max(1, min(total, int(ray.cluster_resources().get("CPU", 1) // per)))

    @property
    def reuse(self) -> bool:
        """In-process trials reuse their Ray actor (no process start and no torch import per trial);
        a DDP trial's actor only drives a Train run, which starts its own workers anyway."""
        return self.args.workers_per_trial == 1

    def name(self, phase: str, dataset: str, extra: Any = None) -> str:
        from mentor_ray.common.io import sha256_json

        # a field added to spaces later enters the name only when set: older sweeps keep their names (--resume)
        space = self.space.model_dump(exclude={"path"} | ({"start_points"} if not self.space.start_points else set()))
        base = {k: v for k, v in self.base(dataset).items() if role_of(k) != "runtime"}
        key = {"space": space, "base": base,
               "samples": self.samples, "seeds": self.args.seeds, "extra": extra}
        if self.args.budget:  # only then: names of sweeps without a budget stay what they were
            key["budget"] = self.args.budget
        if self.args.workers_per_trial > 1:
            key["workers"] = self.args.workers_per_trial
        safe = dataset.replace("/", "_")
        return f"{phase}-{safe}-{self.space.name}-{sha256_json(key)[:8]}"

    def optuna_storage(self, name: str):
        import optuna

        url = self.args.optuna_storage
        if not url:
            if "://" in self.storage:
                raise ConfigError(f"--storage {self.storage}: the Optuna study needs a database; add "
                                  f"--optuna-storage (an RDB URL, e.g. postgresql://user@host/optuna)")
            Path(self.storage, "optuna").mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{Path(self.storage, 'optuna', name + '.db')}"
        return optuna.storages.RDBStorage(url)

    def prior(self, name: str, label: str, asha=None) -> Prior:
        """What the earlier attempts of experiment ``name`` left, for ``--resume`` (nothing without it; an
        existing experiment without ``--resume`` is refused). Trials found cut off at their own end (a
        completed checkpoint whose journal entry never got written) count as ended, and so do those that
        ``asha`` (a search's :class:`~mentor_ray.sweep.asha.LedgerASHA`) stopped at a rung their checkpoint
        reached, judged there now if the interrupt came before it judged them
        (:meth:`~mentor_ray.sweep.asha.LedgerASHA.catch_up`)."""
        journal = Journal(self.results, name)
        earlier = attempts(self.storage, name)
        if not self.args.resume:
            if earlier:
                raise _already_exists(self.storage, name)
            return Prior(journal, {}, {}, name)
        if not earlier and "://" not in self.storage:
            _warn_no_experiment(Path(self.storage), name)
        ended = journal.ended()
        cut_off = cut_off_trials(self.storage, name, {k for k, s in ended.items() if s["status"] != "failed"})
        rungs = asha.recorded if asha is not None else read_ledger(self.rungs_ledger(name))
        for key, trial in list(cut_off.items()):
            summary = trial.get("summary")
            if not summary or "dataset" not in summary:
                continue
            if asha is not None and not summary.get("stop_reason"):
                asha.catch_up(key, reported_values(summary.get("valid_curve") or []))
            stop = stopped_at(rungs, key)  # ASHA's decision, taken before the interrupt (or just now), stands
            if summary.get("stop_reason") or (stop is not None and trial["epochs"] >= stop):
                status = "completed" if summary.get("stop_reason") else "stopped_early"
                ended[key] = {**summary, "status": status, "error": None}
                journal.add(ended[key])
                del cut_off[key]
        prior = Prior(journal, ended, cut_off, attempt_name(self.storage, name))
        if earlier or ended:
            print(f"[mentor_ray] {label}: resuming {name} as {prior.attempt}: "
                  f"{describe(len(prior.done), len(prior.failed), cut_off)}", flush=True)
        return prior

    def whole_grid(self, dataset: str) -> bool:
        """Whether the search runs every point of the grid (Optuna's grid sampler), not TPE."""
        max_epochs = validate(self.base(dataset), source="sweep").max_epochs
        n_trials = min(self.samples, self.space.grid_size)
        budget = self.args.budget
        return n_trials == self.space.grid_size and (budget is None or n_trials * max_epochs <= budget)

    def warm_points(self, dataset: str) -> list[tuple[str, dict[str, Any]]]:
        """(source, point) of the known points a TPE search on ``dataset`` evaluates first: the model's
        published defaults and the space's ``start_points`` (:meth:`SearchSpace.warm_points`), then with
        ``--warm-start-from`` the best search point of this space on each other dataset of that store."""
        points = self.space.warm_points()
        store = self.args.warm_start_from
        if store:
            from mentor_ray.report import results

            table = results.read_results(store, role="search", sweep=self.space.name)
            for other in sorted(set(table.column("dataset").to_pylist()) - {dataset, None}):
                best = results.best_search_run(store, other, self.space.name)
                if best and all(k in best["config"] for k in self.space.search):
                    point = snap({k: best["config"][k] for k in self.space.search}, self.space.search)
                    points.append((f"best on {other} in {store}", point))
        return dedupe_points(points)

    def search_plan_lines(self, dataset: str) -> list[str]:
        """:func:`mentor_ray.sweep.plan.plan_lines` of the search on ``dataset`` (none without a budget or a
        search, or when the whole grid runs)."""
        if not (self.space.search and self.args.budget) or self.whole_grid(dataset):
            return []
        from mentor_ray.sweep.plan import plan_lines, search_plan

        max_epochs = validate(self.base(dataset), source="sweep").max_epochs
        warm = [] if self.args.no_warm_start else self.warm_points(dataset)
        p = search_plan(self.args.budget, max_epochs, self.args.grace_period, ASHA_REDUCTION,
                        min(self.samples, self.space.grid_size), len(warm), TPE_STARTUP)
        return plan_lines(dataset, p, [src for src, _ in warm], self.args.grace_period, ASHA_REDUCTION)

    def search(self, dataset: str, trainable) -> dict[str, Any]:
        """Phase 1; the best point on validation (the space's settings alone when it searches nothing)."""
        if not self.space.search:
            return {}
        from ray import tune

        from mentor_ray.report import results

        name = self.name("search", dataset)
        max_epochs = validate(self.base(dataset), source="sweep").max_epochs
        n_trials = min(self.samples, self.space.grid_size)
        budget = self.args.budget
        # a grid only where it runs whole: with a budget too small for it, TPE chooses what to spend it on
        grid = n_trials == self.space.grid_size and (budget is None or n_trials * max_epochs <= budget)
        grace = self.args.grace_period
        warning = asha_warning(n_trials, grace, max_epochs)
        if warning:
            print(f"[mentor_ray] {dataset}: warning: {warning}", flush=True)
        # ASHA's rungs outlive the driver: a resumed search judges its cut-off trials as it would have
        asha = ledger_asha(max_epochs, grace, None, self.rungs_ledger(name), run_key) if self.args.resume else None
        prior = self.prior(name, f"{dataset} search", asha)
        storage = self.optuna_storage(name)
        axes = list(self.space.search)
        point_of = lambda config: {k: config[k] for k in axes}  # noqa: E731
        seen: list[dict[str, Any]] = []
        if self.args.resume:  # the study goes on: its finished points, and the cut-off and failed ones again
            finished, _ = study_points(name, storage)
            seen = finished + [point_of(s["config"]) for s in prior.done.values()]
            again = {**{k: s["config"] for k, s in prior.failed.items()},
                     **{k: c["config"] for k, c in prior.cut_off.items()}}
            enqueue(name, storage, [point_of(c) for c in again.values()][:max(0, n_trials - len(prior.done))])
        left = max(0, n_trials - len(prior.done))
        stopper, extra = None, {"space_axes": self.space.search, "budget_epochs": budget}
        spent = 0  # trial-epochs earlier drivers of this search trained (its budget ledger)
        if budget:
            ledger = self.budget_ledger(name)
            stopper = epoch_budget(budget, ledger)
            spent = spent_epochs(ledger) if ledger and ledger.exists() else 0
            print(f"[mentor_ray] {dataset}: search budget {budget:,} trial-epochs"
                  + (f", {spent:,} spent before this resume" if ledger and ledger.exists() else ""), flush=True)
            if spent >= budget:
                left = 0
        rungs = self.rungs_ledger(name)
        if not self.args.resume:
            rungs.unlink(missing_ok=True)  # a new search (its experiment folders gone): its own rungs only
        # Known-good points first (Optuna's enqueue_trial, through Tune's points_to_evaluate), counted in the
        # budget; a resumed search's study already holds those its first driver enqueued.
        warm = [] if grid or self.args.resume or self.args.no_warm_start else self.warm_points(dataset)[:max(0, left)]
        if warm:
            print(f"[mentor_ray] {dataset}: warm start: {len(warm)} known point(s) first "
                  f"({'; '.join(src for src, _ in warm)}), then TPE", flush=True)
        searcher, scheduler = search_algorithms(
            self.space.search, seed=self.args.seed, sampler="grid" if grid else "tpe", asha=True,
            max_epochs=max_epochs, grace_period=grace, study_name=name, storage=storage, seen=seen,
            ledger=rungs, key_of=run_key, points=[p for _, p in warm])
        base_cfg = trial_config(self.base(dataset), self.space.model, self.args.seed, {}, self.space.model,
                                self.overrides).model_dump()
        param_space = {"cfg": base_cfg, **self.trial_space(name, prior)}
        tune_config = tune.TuneConfig(metric=METRIC, mode="max", search_alg=searcher, scheduler=scheduler,
                                      num_samples=max(1, left),
                                      max_concurrent_trials=self.max_concurrent(), reuse_actors=self.reuse)
        expected = None
        if budget and not grid:
            from mentor_ray.sweep.plan import search_plan

            expected = search_plan(max(1, budget - spent), max_epochs, grace, ASHA_REDUCTION, max(1, left),
                                   len(warm), TPE_STARTUP).expected
        summaries = self.experiment(prior, dataset, "search", trainable, param_space, tune_config,
                                    axes, total=left, max_epochs=max_epochs,
                                    stop=stopper, extra=extra, budget=budget, expected_trials=expected,
                                    cause=stop_cause(rungs, budget), spent_before=spent)
        ok = [s for s in summaries if s["status"] != "failed"]
        if not ok:
            raise MentorRayError(f"search on {dataset}: no trial finished an epoch; see {self.storage}/{name}")
        best = max(ok, key=lambda s: results.selection_key(s["valid"]["recall@20"], s["valid"]["ndcg@20"],
                                                           s["best_epoch"], results.config_hash(s["config"])))
        point = {k: best["config"][k] for k in self.space.search}
        spent = sum(int(s.get("epochs_run") or 0) for s in summaries)
        print(f"[mentor_ray] {dataset}: search done, {len(summaries)} trials ({_ended_text(summaries)}), "
              f"{spent:,} trial-epochs"
              f"{f' of a budget of {budget:,}' if budget else ''}; best valid R@20 "
              f"{best['valid']['recall@20']:.4f} at {point}", flush=True)
        return point

    def rungs_ledger(self, name: str) -> Path:
        """Where a search's ASHA rungs are kept across drivers (:mod:`mentor_ray.sweep.asha`): beside its
        journal, in the results store."""
        return Journal(self.results, name).folder.parent / f"{name}.asha.json"

    def budget_ledger(self, name: str) -> Path:
        """Where a search's spent trial-epochs are kept across drivers: under a local --storage (where
        earlier versions kept it), else in the results store's journal."""
        if "://" in self.storage:
            return Journal(self.results, name).folder.parent / f"{name}.budget.json"
        return Path(self.storage, "budgets", f"{name}.json")

    @property
    def samples(self) -> int:
        """Search trials: ``--num-samples``; without it 24, or with ``--budget`` as many as the budget allows
        (the grid at most)."""
        if self.args.num_samples is not None:
            return self.args.num_samples
        return self.space.grid_size if self.args.budget else DEFAULT_SAMPLES

    def experiment(self, prior: Prior, dataset: str, role: str, trainable, param_space: dict, tune_config,
                   columns: Sequence[str], total: int, max_epochs: int, stop=None,
                   extra: dict[str, Any] | None = None, budget: int | None = None,
                   expected_trials: float | None = None, cause=None, spent_before: int = 0) -> list[dict[str, Any]]:
        """Run one attempt of a phase's Tune experiment (none when ``total`` is 0: everything ended before);
        every trial's summary, the earlier attempts' included. A callback records each trial in the results
        store and the journal as it ends; one whose row is missing afterwards (the driver was killed between
        the trial's end and its callback) is recorded here, and a failed one is rewritten with the error the
        finished experiment holds; ``cause`` (:func:`~mentor_ray.sweep.trials.stop_cause`) names what stopped
        each trial stopped early. Raises :class:`SweepStopped` when the driver was interrupted."""
        from ray.tune.stopper import CombinedStopper

        from mentor_ray.report import results

        if self.interrupted.is_set():
            raise SweepStopped()
        summaries: list[dict[str, Any]] = []
        if total > 0:
            synthetic = self.synthetic.get(dataset, False)
            recorder = results_recorder(self.results, role, self.space.name, synthetic, self.storage, extra,
                                        journal=prior.journal, interrupted=self.interrupted, cause=cause)
            progress = progress_printer(f"{dataset} {role}", total, max_epochs, self.concurrency(total), budget,
                                        heartbeat=HEARTBEAT_SECONDS if self.args.quiet else None,
                                        expected_trials=expected_trials, spent_before=spent_before,
                                        ended_before=len(prior.ended), best_before=_best_valid(prior.done))
            halt = interrupt_stopper(self.interrupted)
            grid = _run_experiment(prior.attempt, self.storage, trainable, param_space, tune_config, columns,
                                   callbacks=[recorder, progress], quiet=self.args.quiet,
                                   stop=CombinedStopper(halt, stop) if stop else halt)
            if self.interrupted.is_set():
                raise SweepStopped()
            summaries = trial_summaries(grid, synthetic, self.storage)
        for s in summaries:
            s.update(extra or {})
            name_stop(s, cause)
            # the grid has every failed trial's error for certain; the callback may have read it early
            if s["status"] == "failed" or not results.is_recorded(self.results, s, role, self.space.name):
                results.record(self.results, s, role, self.space.name)
            prior.journal.add(s)
        merged = {**prior.ended, **{summary_key(s): s for s in summaries}}
        for s in merged.values():  # an earlier attempt's trial found ended by its checkpoint alone has no row yet
            for key, value in (extra or {}).items():
                s.setdefault(key, value)
            name_stop(s, cause)
            if not results.is_recorded(self.results, s, role, self.space.name):
                results.record(self.results, s, role, self.space.name)
        # every ended trial is in the store and the journal now: its checkpoints are no longer needed
        ended = {k for k, s in prior.journal.ended().items() if s.get("status") != "failed"}
        freed = prune_ended(self.storage, prior.journal.folder.name, ended)
        if freed:
            log.info("%s %s: freed %.1f MB of the ended trials' checkpoints", dataset, role, freed / 1e6)
        return list(merged.values())

    def runs(self, phase: str, dataset: str, trainable, variants: list[str], point: dict[str, Any]) -> list[dict]:
        """Phases 2 and 3: ``variants`` x seeds with the chosen point, to early stopping."""
        from ray import tune

        from mentor_ray.report import results

        seeds = [self.args.seed + i for i in range(self.args.seeds)]
        configs = [trial_config(self.final_base(dataset), v, s, point, self.space.model, self.overrides).model_dump()
                   for v in variants for s in seeds]
        name = self.runs_name(phase, dataset, point, variants)
        prior = self.prior(name, f"{dataset} {phase}")
        # a run the results store holds already (same settings, budget and seed; e.g. --seeds 5 after
        # --seeds 3, whose experiment has another name) is taken from there, not trained again
        keyed = {trial_key(c["variant"], c, c["seed"]): c for c in configs}
        stored = {key: s for key, c in keyed.items() if key not in prior.done
                  and (s := results.stored_summary(self.results, phase, c)) is not None}
        if stored:
            print(f"[mentor_ray] {dataset} {phase}: {len(stored)} of {len(configs)} run(s) are in the results "
                  f"store {self.results} already (same settings, epoch budget and seed): not trained again",
                  flush=True)
        todo = [c for key, c in keyed.items() if key not in prior.done and key not in stored]
        param_space = {"cfg": tune.grid_search(todo), **self.trial_space(name, prior)}
        tune_config = tune.TuneConfig(max_concurrent_trials=self.max_concurrent(), reuse_actors=self.reuse)
        summaries = self.experiment(prior, dataset, phase, trainable, param_space, tune_config,
                                    ["cfg/variant", "cfg/seed"], total=len(todo),
                                    max_epochs=validate(self.final_base(dataset), source="sweep").max_epochs)
        summaries = [s for s in summaries if summary_key(s) in keyed] + list(stored.values())
        failed = [s for s in summaries if s["status"] == "failed"]
        if failed:
            raise MentorRayError(f"{phase} on {dataset}: {len(failed)} of {len(configs)} runs failed (first: "
                                 f"{failed[0]['error']}); see {self.storage}/{name}; re-run with --resume to retry")
        return summaries

    def runs_name(self, phase: str, dataset: str, point: dict[str, Any], variants: list[str]) -> str:
        """The experiment name of the final or ablation runs of ``variants`` at ``point``; their own cap enters it
        only where it differs from the search's, so that sweeps without ``--final-max-epochs`` keep their names."""
        extra: dict[str, Any] = {"point": point, "variants": variants}
        cap = self.final_base(dataset).get("max_epochs")
        if cap != self.base(dataset).get("max_epochs"):
            extra["final_max_epochs"] = cap
        return self.name(phase, dataset, extra=extra)

    @staticmethod
    def ablation_variants() -> list[str]:
        """What ``--ablation`` runs at the chosen point: MENTOR's variants and the general baselines (at their
        published settings). The multimodal baselines are tuned on their own grids instead (``--baselines``)."""
        return [v for v, s in VARIANTS.items() if s.entry.group in ("general", "mentor")]

    def dataset(self, dataset: str, trainable) -> None:
        point = self.search(dataset, trainable)
        if self.args.search_only:
            print(f"[mentor_ray] {dataset}: --search-only: no final runs; the best point is {point}", flush=True)
            return
        finals = self.runs("final", dataset, trainable, [self.space.model], point)
        _print_table(dataset, "final", finals)
        if self.args.ablation:  # `mentor` at the chosen point is the final runs: recorded again, not re-run
            from mentor_ray.report import results

            others = [v for v in self.ablation_variants() if v != "mentor"]
            ablation = finals + self.runs("ablation", dataset, trainable, others, point)
            for s in finals:
                results.record(self.results, s, "ablation", self.space.name)
            _print_table(dataset, "ablation", ablation)


def search_algorithms(search: dict[str, list], *, seed: int, sampler: str, asha: bool, max_epochs: int,
                      grace_period: int | None = None, reduction: int | None = None, startup: int | None = None,
                      study_name: str = "optuna", storage=None, seen: Sequence[dict[str, Any]] = (),
                      ledger: Path | None = None, key_of=None, points: Sequence[dict[str, Any]] = ()):
    """The searcher and scheduler of a search phase: the sweep's, and the search benchmark's
    (:mod:`mentor_ray.benchmarks.search`), so that the benchmark measures what sweeps run.

    ``sampler`` is ``grid`` (the grid in one seeded order, the same for a resumed search), ``random`` or ``tpe``
    (``startup`` random trials first), behind :class:`DistinctOptunaSearch` (never the same point twice, nor one of
    ``seen``: the points a resumed search finished before). With ``asha``, ASHA on the reported metric, its rungs
    from ``grace_period`` epochs by ``reduction`` (:class:`mentor_ray.sweep.asha.LedgerASHA`: its rungs kept in
    ``ledger``, trials known by ``key_of(config)``, so that a resumed search judges trials as an uninterrupted one);
    else None (FIFO).
    ``points``: evaluated first, in order (warm starts; they count as TPE's start-up trials).
    Unset settings take the sweep's defaults (:data:`GRACE_PERIOD`, :data:`ASHA_REDUCTION`, :data:`TPE_STARTUP`).
    """
    import optuna

    from mentor_ray.sweep.searcher import DistinctOptunaSearch, TuneGridSampler

    samplers = {"grid": lambda: TuneGridSampler(search, seed=seed),
                "random": lambda: optuna.samplers.RandomSampler(seed=seed),
                "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup or TPE_STARTUP)}
    searcher = DistinctOptunaSearch(search, seed=seed, metric=METRIC, mode="max", sampler=samplers[sampler](),
                                    study_name=study_name, storage=storage, seen=seen, ordered=sampler == "grid",
                                    points_to_evaluate=[dict(p) for p in points] or None)
    if not asha:
        return searcher, None
    return searcher, ledger_asha(max_epochs, grace_period, reduction, ledger, key_of)


def ledger_asha(max_epochs: int, grace_period: int | None = None, reduction: int | None = None,
                ledger: Path | None = None, key_of=None):
    """The search phase's ASHA (:class:`mentor_ray.sweep.asha.LedgerASHA`), its rungs kept in ``ledger``."""
    from mentor_ray.common.io import sha256_json
    from mentor_ray.sweep.asha import LedgerASHA

    # One past the budget: a trial that reaches its last epoch ends by itself rather than being stopped
    # (a stopped DDP trial's Ray Train run has to be torn down; one that returns ends cleanly).
    max_t = max(1, max_epochs + 1)
    return LedgerASHA(key_of or sha256_json, max_t=max_t,
                      grace_period=max(1, min(grace_period or GRACE_PERIOD, max_t)),
                      reduction_factor=reduction or ASHA_REDUCTION, ledger=ledger)


def asha_warning(n_trials: int, grace_period: int, max_epochs: int) -> str | None:
    """A search of at most ``ASHA_REDUCTION`` trials gains little from ASHA and risks much: at the first
    rung every trial behind the leader is stopped, and deeper or slower-starting points start behind."""
    if 1 < n_trials <= ASHA_REDUCTION and grace_period < max_epochs:
        return (f"{n_trials} search trials: ASHA stops every trial behind the leader at epoch {grace_period}; "
                f"add --grace-period {max_epochs} to train each to early stopping")
    return None


def _print_table(dataset: str, phase: str, summaries: list[dict]) -> None:
    import statistics

    by_variant: dict[str, list[dict]] = {}
    for s in summaries:
        by_variant.setdefault(s["variant"], []).append(s)
    print(f"[mentor_ray] {dataset}: {phase} (test at the best validation epoch, mean ± std over seeds)")
    for variant, runs in by_variant.items():
        r = [s["test"]["recall@20"] for s in runs]
        n = [s["test"]["ndcg@20"] for s in runs]
        sd = lambda x: statistics.stdev(x) if len(x) > 1 else 0.0  # noqa: E731
        print(f"  {variant:12s} R@20 {statistics.mean(r):.4f} ± {sd(r):.4f}  N@20 {statistics.mean(n):.4f} ± "
              f"{sd(n):.4f}  ({len(runs)} seed{'' if len(runs) == 1 else 's'})")


def datasets_for(arg: str, data_root: str | None) -> list[str]:
    """``all``: every dataset under the data root; ``synth-all``: the synthetic presets (paper scale)."""
    from mentor_ray.datasets.dataset import discover_datasets
    from mentor_ray.datasets.synthetic import PRESETS

    if arg == "synth-all":
        return [p for p in PRESETS if p != "synth-tiny"]
    if arg != "all":
        names = [d.strip() for d in arg.split(",")]
        if not all(names):  # "tiktok," or "a,,b": a name left out by mistake, not a list to tidy
            raise ConfigError(f"--dataset {shown_value(arg, 80)}: an empty name in the list; give names separated by "
                              f"single commas (or all, synth-all)")
        return names
    found = discover_datasets(data_root) if data_root else []
    if not found:
        where = f"under --data-root {data_root}" if data_root else "without --data-root"
        raise DataError(
            f"--dataset all: no datasets {where} (a dataset is a directory holding <name>.inter); give the "
            f"root of your datasets, or --dataset synth-all for the synthetic presets at paper scale (days on a CPU)"
        )
    return found


def default_leaderboard(results: str | Path) -> Path:
    """``<results>-leaderboard``, beside the store: the store itself stays a plain Parquet dataset."""
    results = Path(results)
    return results.with_name(f"{results.name}-leaderboard")


def check_options(args: SweepOptions) -> None:
    """Every flag in range and every output directory usable, before anything starts."""
    from mentor_ray.common.io import check_path_roles, check_writable_dir, dataset_inputs

    at_least = (("num_samples", 1), ("seeds", 1), ("workers_per_trial", 1), ("seed", 0), ("max_concurrent", 0),
                ("grace_period", 1), ("max_epochs", 1), ("final_max_epochs", 1), ("budget", 1),
                ("gpus_per_trial", 0))
    check_flags(**{flag: (getattr(args, flag), low, False) for flag, low in at_least},
                cpus_per_trial=(args.cpus_per_trial, 0, True))
    if not str(args.results).strip() or Path(args.results).name in ("", ".", "..") \
            or not Path(args.results).expanduser().resolve().name:
        raise ConfigError(f"--results {args.results!r}: give the store a folder of its own (e.g. runs/results): its "
                          f"leaderboard is written beside it, as <results>-leaderboard")
    check_writable_dir(args.results, "--results")
    check_writable_dir(args.storage, "--storage")
    leaderboard = None if args.leaderboard == "none" else args.leaderboard or default_leaderboard(args.results)
    if leaderboard is not None:
        check_writable_dir(leaderboard, "--leaderboard")
    baseline_spaces(args.baselines)
    study = check_optuna_storage(args.optuna_storage)
    if args.warm_start_from and "://" not in args.warm_start_from:
        store = Path(args.warm_start_from).expanduser()
        if not store.is_dir():
            raise ConfigError(f"--warm-start-from {args.warm_start_from}: "
                              f"{'is not a folder' if store.exists() else 'no such folder'}; give the results "
                              f"store of an earlier sweep (its --results)")
    named = [] if args.dataset in ("all", "synth-all") else datasets_for(args.dataset, args.data_root)
    inputs: list[tuple[str, Any, bool]] = [*dataset_inputs(args.data_root, named),
                                           ("--warm-start-from", args.warm_start_from, True)]
    if args.space and Path(args.space).expanduser().is_file():
        inputs.append(("--space", args.space, False))
    check_path_roles([("--results", args.results, True), ("--storage", args.storage, True),
                      ("--leaderboard", leaderboard, True), ("--optuna-storage", study, False)], inputs)


def check_optuna_storage(url: str | None) -> Path | None:
    """Raise a one-line :class:`ConfigError` unless ``url`` is an RDB URL Optuna can use (sqlite, postgresql,
    mysql, with or without a driver: ``postgresql+psycopg2://...``); the file of a ``sqlite:///`` URL, which the
    sweep writes (None otherwise). Checked before Ray starts: the study is opened only in the search phase."""
    if url is None:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"--optuna-storage {shown_value(url, 80)}: not a database URL ({exc}); e.g. "
                          f"sqlite:///optuna.db or postgresql://user@host/optuna") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql", "mysql"):
        raise ConfigError(f"--optuna-storage {shown_value(url, 80)}: {parsed.get_backend_name()} is not a database "
                          f"Optuna keeps studies in; allowed: sqlite, postgresql, mysql")
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError(f"--optuna-storage {shown_value(url, 80)}: an in-memory database is lost with the "
                              f"driver; give a file (sqlite:///path/optuna.db)")
        from mentor_ray.common.io import check_writable_file

        check_writable_file(parsed.database, "--optuna-storage")
        return Path(parsed.database)
    return None


def run_sweep(args: SweepOptions) -> None:
    """Run a whole sweep (every dataset: search, finals, ablation), then write its leaderboard.

    What can be checked before Ray starts is: the flags, the output directories, and every dataset (loaded
    and validated with the sweep's settings). A dataset that fails a check, or fails later, is reported
    with its own error while the others run; the sweep then ends with an error naming them all.
    """
    check_options(args)
    space = load_space(args.space)
    if args.ablation and space.model != "mentor":
        raise ConfigError(f"--ablation: the space {space.name} searches {space.model}; ablations are MENTOR's "
                          f"variants, so run them with a MENTOR space (e.g. --space paper_grid)")
    sweep = Sweep(args, space)  # checks the overrides before anything starts
    datasets = datasets_for(args.dataset, args.data_root)
    failed: dict[str, BaseException] = {}
    for d in datasets:
        try:
            sweep.check_dataset(d)
        except MentorRayError as exc:
            if len(datasets) == 1:
                raise
            failed[d] = exc
            print(f"[mentor_ray] {d}: skipped: {exc}", flush=True)
    good = [d for d in datasets if d not in failed]
    if not good:
        raise MentorRayError(f"every dataset of the sweep failed its checks ({', '.join(failed)}); see above")
    print(plan(sweep, good), flush=True)
    for d in good:
        for line in sweep.search_plan_lines(d):
            print(line, flush=True)
    if args.plan:
        return
    from mentor_ray.common.lock import DriverLock
    from mentor_ray.training.ray_train import check_resources, driver_ray

    # one driver per store and per storage: a second is refused, naming the first (a --resume while the
    # first still runs would otherwise start new attempts of its experiments beside it)
    lock = DriverLock([args.results, args.storage], ["--results", "--storage"],
                      advice="wait for it to end, or stop it and re-run with --resume; a sweep of its own "
                      "needs its own --results and --storage")
    lock.acquire()
    try:
        configure_tune()
        # Ray for this driver: shut down on the way out however it goes, and then every process that carries
        # the lock's token ended (agents and workers outlive their raylet), so nothing is left under PID 1
        with driver_ray(lock, quiet=args.quiet):
            check_resources(args.cpus_per_trial, args.gpus_per_trial, count=args.workers_per_trial,  # never a hang
                            what=f"--workers-per-trial {args.workers_per_trial} --cpus-per-trial "
                            f"{args.cpus_per_trial:g} --gpus-per-trial {args.gpus_per_trial:g}")
            failed.update(run_datasets(sweep, good))
        if args.leaderboard != "none" and not args.search_only:
            write_sweep_leaderboard(args, failed)
    finally:
        lock.release()  # and the folders it created, when nothing was written to them
    if failed:
        first = next(iter(failed.values()))
        if len(datasets) == 1:
            raise first
        raise MentorRayError(f"sweep failed on {len(failed)} of {len(datasets)} datasets "
                             f"({', '.join(failed)}; errors above); the others finished; fix and re-run with "
                             f"--resume")


def baseline_spaces(text: str | None) -> list[str]:
    """The grid spaces of ``--baselines``: ``all`` (every trained baseline of the registry, in the paper's row
    order) or model names, each searched on its own published grid, ``tune_spaces/<name>_grid.yaml``."""
    if text is None:
        return []
    from mentor_ray.common.registry import MODELS

    known = [m for m, e in MODELS.items() if e.group != "mentor" and e.trained]
    names = known if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--baselines {text!r}: names no model; allowed: all, or names among {', '.join(known)} "
                          f"(leave the flag out for none)")
    for name in names:
        if name not in known:
            raise ConfigError(f"--baselines {shown_value(text, 80, quote=False)}: {shown_value(name, 40)} is not a "
                              f"baseline with a grid; allowed: all, or names among {', '.join(known)}")
    return [f"{n}_grid" for n in dict.fromkeys(names)]


def paper_options(args: SweepOptions) -> SweepOptions:
    """``--paper``: the MENTOR paper's experiments section as one sweep. MENTOR's space with its ablation
    (Table 2's variants, Fig. 3, the MENTOR_base runs Fig. 4 maps), every baseline on its own published grid
    (``--baselines``, default all: Table 2, Table 3's models, Fig. 6's), all at one search budget in
    trial-epochs (``--budget``, default :data:`PAPER_BUDGET`; a trial count would favour models with short
    epochs), then the leaderboard with every table and figure."""
    space = load_space(args.space)
    if space.model != "mentor":
        raise ConfigError(f"--paper: the space {space.name} searches {space.model}; the experiments section tunes "
                          f"MENTOR first, so give a MENTOR space (e.g. --space paper_grid)")
    if args.num_samples is not None and args.budget is None:
        raise ConfigError(f"--paper: --num-samples {args.num_samples} counts trials, and models' epochs differ in "
                          f"cost and count; give every model the same --budget in trial-epochs instead "
                          f"(default {PAPER_BUDGET})")
    out = dataclasses.replace(args, paper=False, ablation=True, baselines=args.baselines or "all",
                              budget=args.budget or PAPER_BUDGET)
    models = len(baseline_spaces(out.baselines))
    print(f"[mentor_ray] --paper: MENTOR ({space.name}) and its ablation, then {models} baseline(s) on their own "
          f"grids, each searched for {out.budget} trial-epochs per dataset and re-run over {out.seeds} seed(s); the "
          "leaderboard then has Table 2, Table 3 (measured on this sweep's device) and Figs. 3-6", flush=True)
    return out


def run_sweeps(args: SweepOptions) -> None:
    """``--space`` and then, with ``--baselines``, each baseline's own grid: one sweep per space, one after
    another, with the same datasets, seeds, ``--budget``, results store and storage (so every model is tuned
    at the same compute), and one leaderboard at the end. A space that fails does not stop the others; the
    command then ends with an error naming them (``--resume`` continues each where it stopped)."""
    if args.paper:
        args = paper_options(args)
    spaces = list(dict.fromkeys([args.space, *baseline_spaces(args.baselines)]))
    if len(spaces) == 1:
        return run_sweep(dataclasses.replace(args, baselines=None))
    for name in spaces:  # every space is checked before the first starts
        load_space(name)
    failed: dict[str, BaseException] = {}
    for i, name in enumerate(spaces):
        print(f"[mentor_ray] space {i + 1} of {len(spaces)}: {name}", flush=True)
        one = dataclasses.replace(args, space=name, baselines=None, leaderboard="none",
                                  ablation=args.ablation and i == 0)
        try:
            run_sweep(one)
        except MentorRayError as exc:  # Ctrl-C and SIGTERM are BaseExceptions: they end the command
            failed[name] = exc
            print(f"[mentor_ray] space {name} failed: {exc}", flush=True)
    if args.leaderboard != "none" and not (args.plan or args.search_only):
        write_sweep_leaderboard(args, failed)
    if failed:
        raise MentorRayError(f"{len(failed)} of {len(spaces)} spaces failed ({', '.join(failed)}; errors above); the "
                             f"others finished; fix and re-run the same command with --resume")


def plan(sweep: Sweep, datasets: list[str]) -> str:
    """The sweep's size, said before it starts: runs per dataset and the epoch budget they may spend."""
    args = sweep.args
    search = min(sweep.samples, sweep.space.grid_size) if sweep.space.search else 0
    ablation = args.seeds * (len(sweep.ablation_variants()) - 1) if args.ablation else 0
    later = 0 if args.search_only else args.seeds + ablation
    default = TrainConfig.model_fields["max_epochs"].default
    epochs = {d: int(sweep.base(d).get("max_epochs", default)) for d in datasets}
    final = {d: int(sweep.final_base(d).get("max_epochs", default)) for d in datasets}
    # a search with a budget spends at most that (plus the epochs under way when it runs out)
    search_epochs = {d: min(search * e, args.budget) if args.budget else search * e for d, e in epochs.items()}
    budget = sum(search_epochs[d] + later * final[d] for d in epochs)
    budgeted = bool(args.budget and search and any(search_epochs[d] < search * e for d, e in epochs.items()))
    parts = ([f"search trials for {args.budget:,} trial-epochs" if budgeted else f"{search:,} search trials"]
             if search else [])
    if not args.search_only:
        parts += [f"{args.seeds} final runs"] + ([f"{ablation} ablation runs"] if ablation else [])
    runs = "" if budgeted else f" = {(search + later) * len(datasets):,} runs"
    per = ", ".join(f"{d} {e}" + (f", finals {final[d]}" if final[d] != e and later else "") for d, e in epochs.items())
    return (f"[mentor_ray] plan: {len(datasets)} dataset(s) x ({' + '.join(parts)}){runs}, "
            f"at most {budget:,} epochs in all (epoch budget per run: {per}; early stopping and ASHA end most "
            f"runs sooner)")


def write_sweep_leaderboard(args: SweepOptions, failed: dict[str, BaseException]) -> None:
    """The leaderboard of the store, when it holds any run; a failure here is logged, never raised over
    the sweep's own error."""
    from mentor_ray.report.leaderboard import write_leaderboard

    out = Path(args.leaderboard or default_leaderboard(args.results))
    if not Path(args.results).is_dir() or not any(Path(args.results).glob("*.parquet")):
        print(f"[mentor_ray] no leaderboard: no run reached the results store {args.results}", flush=True)
        return
    try:
        print(write_leaderboard(args.results, out, returns="text"), flush=True)  # plain text: no markup on a terminal
    except Exception as exc:  # noqa: BLE001 - the sweep's results are in the store; say so and go on
        if not failed:
            raise
        log.error("leaderboard not written (%s: %s); the results store %s is intact: rerun "
                  "`mentor-ray leaderboard --results %s` after fixing the failures above",
                  type(exc).__name__, exc, args.results, args.results)
        return
    print(f"[mentor_ray] leaderboard written to {out}", flush=True)
    warn_undertrained(args)


def warn_undertrained(args: SweepOptions) -> None:
    """The sweep's last line when the epoch cap cut runs of its datasets off while they were still improving
    (:func:`mentor_ray.report.leaderboard.undertrained_warning`); runs of other datasets in the store are not
    this sweep's."""
    from mentor_ray.report.leaderboard import undertrained_warning
    from mentor_ray.report.select import load_runs

    try:
        runs = load_runs(args.results)
        swept = datasets_for(args.dataset, args.data_root)
    except MentorRayError:
        return  # nothing recorded (or nothing to find): nothing to warn about
    warning = undertrained_warning(runs[runs["dataset"].isin(swept)])
    if warning:
        print(f"[mentor_ray] warning: {warning}", flush=True)


def run_datasets(sweep: Sweep, datasets: list[str]) -> dict[str, BaseException]:
    """Every dataset's sweep at once (their trials share the cluster), each in its own driver thread;
    the datasets that failed, with their errors (each also logged as it is known).

    Inputs (dataset, graphs) are prepared first, one after another, so the driver never holds two graph
    builds' peak memory at once. A dataset that fails does not stop the others.
    """
    from ray.tune import register_trainable

    failed: dict[str, BaseException] = {}

    def report(dataset: str, exc: BaseException) -> None:  # a traceback only where it helps
        failed[dataset] = exc
        log.error("%s: sweep failed: %s", dataset, exc, exc_info=None if isinstance(exc, MentorRayError) else exc)

    # Register every trainable here, in the main thread, and hand Tune the names: Tune's trainable
    # registry is not thread-safe, and a Tuner given a name does not register again.
    trainables = {}
    for d in datasets:
        try:
            trainables[d] = f"mentor_ray_{re.sub(r'[^A-Za-z0-9_]', '_', d)}"
            register_trainable(trainables[d], sweep.trainable(d))
        except Exception as exc:  # noqa: BLE001 - reported; the other datasets go on
            report(d, exc)

    def one(dataset: str) -> None:
        try:
            sweep.dataset(dataset, trainables[dataset])
        except SweepStopped:
            return
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread with the others
            errors[dataset] = exc
            return
        finally:
            ended[dataset].set()
        print(f"[mentor_ray] {dataset}: done; results in {sweep.results}", flush=True)

    # Plain daemon threads, not a pool: on SIGINT/SIGTERM the main thread stops waiting after STOP_GRACE
    # seconds, and a thread still inside Tune must not keep the process alive (Ray is shut down under it).
    # The main thread waits on events, not Thread.join: a KeyboardInterrupt inside join() leaves Python
    # 3.11/3.12 believing the thread has ended (its state lock is released by the interrupted wait).
    errors: dict[str, BaseException] = {}
    ready = [d for d in datasets if d not in failed]
    ended = {d: threading.Event() for d in ready}
    for d in ready:
        threading.Thread(target=one, args=(d,), name=f"sweep-{d}", daemon=True).start()
    try:
        for d in ready:
            while not ended[d].wait(timeout=0.5):
                pass
    except BaseException:  # KeyboardInterrupt, Interrupted: stop every phase, keep what ended
        sweep.interrupted.set()
        deadline = time.monotonic() + STOP_GRACE
        for d in ready:
            if not ended[d].wait(timeout=max(0.0, deadline - time.monotonic())):
                log.warning("%s: Tune did not stop its trials within %.0f s; shutting Ray down under them",
                            d, STOP_GRACE)
        raise
    for d in datasets:
        if d in errors:
            report(d, errors[d])
    return failed
