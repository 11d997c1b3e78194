"""Benchmarks written to ``docs/benchmarks.md``, and the GPU check (:mod:`mentor_ray.benchmarks`).

::

    mentor-ray bench graphs --dataset synth-clothing --write docs/benchmarks.md
    mentor-ray bench graphs --dataset tiktok --data-root ../shared/datasets
    mentor-ray bench train --dataset tiktok --data-root ../shared/datasets --variant mentor \\
        --epochs 3 --write docs/benchmarks.md infonce_scope=batch
    mentor-ray bench ray --dataset tiktok --data-root ../shared/datasets --workers 1,2 \\
        --cpus 2 --epochs 3 --write docs/benchmarks.md infonce_scope=batch
    mentor-ray bench tune --dataset synth-small --trials 6 --workers-per-trial 1,2 \\
        --write docs/benchmarks.md
    mentor-ray bench models --dataset synth-baby --epochs 3 --threads 1 --write docs/benchmarks.md   # Table 3
    mentor-ray bench faults --write docs/benchmarks.md      # the fault campaign (about 15 minutes)
    mentor-ray bench search --write docs/benchmarks.md      # grid, random, TPE, TPE + ASHA (about 40 minutes)
    mentor-ray bench warmstart --dataset tiktok --data-root ../shared/datasets --budget 150 \\
        --overrides mentor_joint=infonce_scope=batch --best-known lightgcn_grid=0.1104,mentor_joint=0.1088 \\
        --seeds 0,1,2                                     # a search per searcher seed (~5 min LightGCN, ~25 MENTOR)

The GPU check (:mod:`mentor_ray.benchmarks.gpucheck`; TikTok optional: a data root holding ``tiktok/``)::

    python -m mentor_ray.bench gpu --out gpu-check/ [--tiktok /path/to/datasets]            # on the GPU node
    python -m mentor_ray.bench gpu --out DIR --device cpu --datasets synth-tiny --epochs 1  # CPU against CPU

``python -m mentor_ray.bench ...`` is the same command as ``mentor-ray bench ...``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from mentor_ray.benchmarks.bench import (
    bench_graphs,
    bench_models,
    bench_ray,
    bench_train,
    bench_tune,
    graphs_block,
    models_block,
    ray_block,
    train_block,
    tune_block,
    upsert_block,
)
from mentor_ray.benchmarks.search import DEFAULT_SEARCHERS
from mentor_ray.benchmarks.search import SPACE as SEARCH_SPACE
from mentor_ray.cli import ArgumentParser, run, setup_logging
from mentor_ray.common.errors import ConfigError, MentorRayError
from mentor_ray.report.render import block_md, block_text

_DESCRIPTION = "Benchmarks, written to ``docs/benchmarks.md`` with the command, the machine and the date."


# --------------------------------------------------------------------------- flags, all checked before any work
#
# A benchmark runs its steps as child commands (python -m mentor_ray.graphs, .train, .tune) that check their own
# flags, but only once the benchmark is under way (after a cold graph build, say) and in their own words (their
# --max-epochs for our --epochs). So every flag here has a type that says what it allows, and check_args checks
# them all right after parsing, naming the flag the user gave: a child is never handed what it would refuse, and
# a refusal never costs a measurement. tests/test_bench_flags.py walks the parser to hold every flag to this.


class Flag:
    """An argparse ``type=``: ``__call__`` parses the text (a ValueError is argparse's one line, ``invalid <__name__>
    value``); :meth:`check` is called by :func:`check_args` once every flag is parsed, so that a value can be
    judged against the others (a dataset against its --data-root), and returns the value to keep. ``after``:
    the check reads other flags, so runs once those are checked."""

    __name__ = "str"
    after = False

    def __call__(self, text: str) -> Any:
        return text

    def check(self, flag: str, value: Any, args: argparse.Namespace) -> Any:
        return value


class Number(Flag):
    """A number of ``kind`` at least ``low`` (above it if ``strict``) and at most ``high``; ``many``: a
    comma-separated list of them. ``what`` says what the number is where its range needs a reason."""

    def __init__(self, kind: type = int, low: float | None = None, strict: bool = False, high: float | None = None,
                 what: str = "out of range", many: bool = False) -> None:
        self.kind, self.low, self.strict, self.high, self.what, self.many = kind, low, strict, high, what, many
        self.__name__ = f"comma-separated {kind.__name__}" if many else kind.__name__

    def __call__(self, text: str) -> Any:
        # an empty entry ("1,,2", "") is int('')'s ValueError: argparse's line
        return [self.kind(w) for w in text.split(",")] if self.many else self.kind(text)

    def allows(self, v: float) -> bool:
        # float('nan') and float('inf') parse; neither is a count, a share or a scale
        return (math.isfinite(v) and (self.low is None or (v > self.low if self.strict else v >= self.low))
                and (self.high is None or v <= self.high))

    @property
    def rule(self) -> str:
        parts = [] if self.low is None else [f"{'above' if self.strict else 'at least'} {self.low:g}"]
        parts += [] if self.high is None else [f"at most {self.high:g}"]
        return ", ".join(parts) + (" each" if self.many else "")

    def check(self, flag: str, value: Any, args: argparse.Namespace) -> Any:
        for v in value if self.many else (value,):
            if not self.allows(v):
                found = f"{','.join(map(str, value))}: {v} is" if self.many else f"{value}:"
                raise ConfigError(f"{flag} {found} {self.what}; allowed: {self.rule}")
        return value


class Names(Flag):
    """Comma-separated names, each one of ``choices`` (a registry's, never a copy of it); ``every``: what ``all``
    alone stands for, if it may be given."""

    __name__ = "comma-separated name"

    def __init__(self, choices: Iterable[str], every: Iterable[str] | None = None) -> None:
        self.choices = list(choices)
        self.every = None if every is None else list(every)

    def __call__(self, text: str) -> list[str]:
        names = [w.strip() for w in text.split(",") if w.strip()]
        if not names:
            raise ValueError(text)
        return names

    def check(self, flag: str, value: list[str], args: argparse.Namespace) -> list[str]:
        if value == ["all"] and self.every is not None:
            return self.every
        for name in value:
            if name not in self.choices:
                allowed = ("all, or " if self.every is not None else "") + ", ".join(self.choices)
                raise ConfigError(f"{flag} {','.join(value)}: unknown {name!r}; allowed: {allowed}")
        return value


class Parsed(Flag):
    """A flag with a syntax of its own: ``parse(flag, text, args)`` returns its value or refuses it in one line."""

    def __init__(self, parse: Callable[[str, str, argparse.Namespace], Any], after: bool = False) -> None:
        self.parse, self.after = parse, after

    def check(self, flag: str, value: Any, args: argparse.Namespace) -> Any:
        return self.parse(flag, value, args)


class Dataset(Flag):
    """A dataset under --data-root, or a synthetic preset: located now, loaded by the benchmark's steps."""

    after = True  # after --data-root

    def check(self, flag: str, value: str, args: argparse.Namespace) -> str:
        from mentor_ray.common.errors import DataError
        from mentor_ray.datasets.dataset import SPEC_FILE, is_dataset_dir, resolve_dataset_dir
        from mentor_ray.datasets.synthetic import PRESETS

        root = getattr(args, "data_root", None)
        if value in PRESETS and not (root and (Path(root) / value).is_dir()):
            return value  # a preset not yet generated is generated by the first step: that is work, not a check
        directory, _ = resolve_dataset_dir(value, root)  # a name, not a path; under the root, or a preset
        if not is_dataset_dir(directory):  # its files are read, and checked, by the steps
            raise DataError(f"{flag} {value}: {directory} holds neither {value}.inter nor {SPEC_FILE}")
        return value


class DataRoot(Flag):
    """An existing folder of dataset folders; ``holds``: a dataset it must hold. ``kind``: the value kept (the
    benchmark functions that take it)."""

    def __init__(self, holds: str | None = None, kind: type = Path) -> None:
        self.holds, self.kind = holds, kind

    def __call__(self, text: str) -> Any:
        return self.kind(text)

    def check(self, flag: str, value: Any, args: argparse.Namespace) -> Any:
        root = Path(value).expanduser()
        if not root.is_dir():
            raise ConfigError(f"{flag} {value}: no such directory; give the folder holding the dataset folders")
        if self.holds and not (root / self.holds / f"{self.holds}.inter").is_file():
            raise ConfigError(f"{flag} {value}: no {self.holds}/{self.holds}.inter under it; give the folder "
                              f"holding {self.holds}/")
        return value


class OutFile(Flag):
    """A file the benchmark writes at its end: writable now, so that its measurements are never lost."""

    def __call__(self, text: str) -> Path:
        return Path(text)

    def check(self, flag: str, value: Path, args: argparse.Namespace) -> Path:
        from mentor_ray.common.io import check_writable_file

        check_writable_file(value, flag)
        return value


class OutDir(OutFile):
    """A folder the benchmark writes into (made if missing)."""

    def check(self, flag: str, value: Path, args: argparse.Namespace) -> Path:
        from mentor_ray.common.io import check_writable_dir

        check_writable_dir(value, flag)
        return value


# Keys a benchmark's own flags set in every run it starts (--dataset, --data-root, --variant, --epochs): an
# override of one would train something else than the table says.
_BENCH_KEYS = ("dataset", "data_root", "variant", "max_epochs")


def check_overrides(settings: list[str], variant: str | None, reserved: Iterable[str] = _BENCH_KEYS) -> None:
    """``key=value`` settings as the run they go to checks them: the keys of ``variant`` (None: the default model),
    each value in its range; none of ``reserved``."""
    from mentor_ray.common.config import make_config, parse_overrides

    for key in parse_overrides(settings):
        if key in reserved:
            raise ConfigError(f"override {key}=...: {key} is set by the benchmark's flags; overrides may set any "
                              "other config key")
    make_config(flags={"variant": variant}, overrides=settings)


class Override(Flag):
    """The ``key=value`` training settings of every run a benchmark starts: checked for each variant it trains.
    ``sweep``: they go to a sweep, whose flags set more keys (the seed)."""

    __name__ = "key=value"
    after = True  # after --variant / --variants

    def __init__(self, sweep: bool = False) -> None:
        self.sweep = sweep

    def check(self, flag: str, value: list[str], args: argparse.Namespace) -> list[str]:
        from mentor_ray.common.config import keys_with

        reserved = (*_BENCH_KEYS, *(keys_with("run", "budget") if self.sweep else ()))
        for variant in getattr(args, "variants", None) or [getattr(args, "variant", None)]:
            check_overrides(value, variant, reserved)
        return value


def _searchers(flag: str, text: str, args: argparse.Namespace):
    from mentor_ray.benchmarks.search import parse_searchers

    return parse_searchers(text)


def _search_space(flag: str, text: str, args: argparse.Namespace) -> str:
    from mentor_ray.benchmarks.search import search_space

    search_space(text)
    return text


def _gpu_models(flag: str, text: str, args: argparse.Namespace):
    from mentor_ray.benchmarks import gpucheck

    return gpucheck.parse_models(text)


def _spaces(flag: str, text: str, args: argparse.Namespace) -> list[str]:
    """Search spaces: names in ``tune_spaces/`` or files, each loaded (a bad file is its own one line)."""
    from mentor_ray.sweep.spaces import load_space, space_files

    names = [w.strip() for w in text.split(",") if w.strip()]
    known = [p.stem for p in space_files()]
    for name in names or [""]:
        if name not in known and not Path(name).is_file():
            raise ConfigError(f"{flag} {text}: {name!r} is no search space; allowed: a space file, or "
                              f"{', '.join(known)}")
        load_space(name)
    return names


def _pairs(flag: str, text: str, args: argparse.Namespace, sep: str, form: str) -> list[tuple[str, str]]:
    """``SPACE=...`` items separated by ``sep``, each of a space given in --spaces."""
    pairs = []
    for item in (w.strip() for w in text.split(sep) if w.strip()):
        space, _, rest = item.partition("=")
        if not rest:
            raise ConfigError(f"{flag} {text!r}: expected {form}, found {item!r}")
        if space.strip() not in args.spaces:
            raise ConfigError(f"{flag} {text!r}: {space.strip()!r} is not one of --spaces ({', '.join(args.spaces)})")
        pairs.append((space.strip(), rest.strip()))
    return pairs


def _space_overrides(flag: str, text: str, args: argparse.Namespace) -> dict[str, list[str]]:
    """``SPACE=key=value[;...]``: each setting checked as that space's sweep will (its model's keys; neither a key
    the sweep's flags set nor one the space searches)."""
    from mentor_ray.common.config import keys_with
    from mentor_ray.sweep.spaces import load_space

    overrides: dict[str, list[str]] = {}
    for space, setting in _pairs(flag, text, args, ";", "SPACE=key=value"):
        overrides.setdefault(space, []).append(setting)
    for space, settings in overrides.items():
        loaded = load_space(space)
        check_overrides(settings, loaded.model, (*keys_with("run", "budget"), *loaded.search))
    return overrides


def _best_known(flag: str, text: str, args: argparse.Namespace) -> dict[str, float]:
    """``SPACE=R20[,...]``: a Recall@20, above 0 (each row's share is divided by it) and at most 1."""
    known: dict[str, float] = {}
    for space, value in _pairs(flag, text, args, ",", "SPACE=R20"):
        try:
            known[space] = float(value)
        except ValueError:
            known[space] = math.nan
        if not 0 < known[space] <= 1:
            raise ConfigError(f"{flag} {text!r}: {space}={value}: a validation Recall@20; allowed: above 0, at most 1")
    return known


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check every flag of the chosen command, given or left at its default, by its type (:class:`Flag`); those
    that read other flags last. Each value is replaced by the one its check keeps (``all`` by the names it means)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[args.cmd]
    typed = [a for a in command._actions if isinstance(a.type, Flag)]
    for action in sorted(typed, key=lambda a: a.type.after):
        value = getattr(args, action.dest)
        if value is not None:
            flag = max(action.option_strings, key=len, default=action.dest)
            setattr(args, action.dest, action.type.check(flag, value, args))
    # what it writes against what it reads (io.check_path_roles): --write docs/x.md, never a dataset's file
    from mentor_ray.common.io import check_path_roles, dataset_inputs

    def flag_of(action):
        return max(action.option_strings, key=len, default=action.dest)

    outputs = [(flag_of(a), getattr(args, a.dest), isinstance(a.type, OutDir)) for a in typed
               if isinstance(a.type, OutFile)]
    inputs = [(flag_of(a), getattr(args, a.dest), False) for a in typed if isinstance(a.type, DataRoot)]
    inputs += dataset_inputs(getattr(args, "data_root", None),
                             [getattr(args, a.dest) for a in typed if isinstance(a.type, Dataset)])
    check_path_roles(outputs, inputs)


def build_parser() -> ArgumentParser:
    """The ``bench`` command line; every flag that takes a value has ``choices`` (read at parse time) or a
    :class:`Flag` type (checked by :func:`check_args`)."""
    from mentor_ray.benchmarks.faults import CASES
    from mentor_ray.common.registry import MODELS, VARIANT_MODELS
    from mentor_ray.datasets.graphs import BUILDERS, KNN_NORMS
    from mentor_ray.datasets.synthetic import PRESETS

    variants = list(VARIANT_MODELS)
    count, epochs = Number(int, 1), Number(int, 1)
    p = ArgumentParser(prog="python -m mentor_ray.bench", description=_DESCRIPTION)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("graphs", help="graph build time and peak RSS, then the cache-hit time of a second call")
    g.add_argument("--dataset", type=Dataset(), required=True)
    g.add_argument("--data-root", type=DataRoot(), default=None)
    g.add_argument("--k", type=count, default=40, help="neighbours per item in the kNN graphs (default 40)")
    g.add_argument("--knn-norm", choices=KNN_NORMS, default="row", help="kNN normalisation (default row)")
    g.add_argument("--builder", choices=BUILDERS, default="auto", help="graph builder (default auto)")
    g.add_argument("--write", type=OutFile(), default=None, metavar="MD",
                   help="update this Markdown file (e.g. docs/benchmarks.md)")
    t = sub.add_parser("train", help="graph build, seconds per epoch, evaluation seconds and peak memory")
    t.add_argument("--dataset", type=Dataset(), required=True)
    t.add_argument("--data-root", type=DataRoot(), default=None)
    t.add_argument("--variant", choices=variants, default="mentor")
    t.add_argument("--epochs", type=epochs, default=3, help="epochs to time (the first is excluded from the median)")
    t.add_argument("--write", type=OutFile(), default=None, metavar="MD")
    t.add_argument("overrides", type=Override(), nargs="*", metavar="key=value", help="training settings")
    mo = sub.add_parser("models", help="Table 3: seconds per epoch and peak memory of every model, as ratios to "
                        "MENTOR measured in the same run")
    mo.add_argument("--dataset", type=Dataset(), required=True)
    mo.add_argument("--data-root", type=DataRoot(), default=None)
    mo.add_argument("--variants", type=Names(variants, every=[*(m for m, e in MODELS.items() if e.trained),
                                                              "mentor_fg"]),
                    default="all", help="comma-separated variants, or all (default): every model of the registry "
                    "and MENTOR_fg")
    mo.add_argument("--epochs", type=epochs, default=3, help="epochs per model (the first is excluded from the median)")
    mo.add_argument("--threads", type=count, default=1, help="torch threads per model (default 1)")
    mo.add_argument("--write", type=OutFile(), default=None, metavar="MD")
    mo.add_argument("overrides", type=Override(), nargs="*", metavar="key=value", help="settings for every model")
    r = sub.add_parser("ray", help="Ray Train seconds per epoch for several worker counts, and DDP traffic per step")
    r.add_argument("--dataset", type=Dataset(), required=True)
    r.add_argument("--data-root", type=DataRoot(), default=None)
    r.add_argument("--variant", choices=variants, default="mentor")
    r.add_argument("--epochs", type=epochs, default=3)
    r.add_argument("--workers", type=Number(int, 1, many=True), default="1,2",
                   help="comma-separated worker counts (default 1,2)")
    r.add_argument("--cpus", type=count, default=2, help="CPUs shared by the workers of a run (default 2)")
    r.add_argument("--cpus-per-worker", type=Number(float, 0, strict=True), default=None,
                   help="CPUs of each worker instead (one worker with one thread stands for one device)")
    r.add_argument("--workers-first", action="store_true",
                   help="run the worker actors at nice 0 (Ray starts them at 15, below its own processes) and, once "
                   "they are up, the rest of the run (driver, raylet, GCS, dashboard, Train's controller) at nice "
                   "19: with one worker per core standing for one device, Ray's processes then stand for the host "
                   "cores a GPU node leaves them instead of preempting a worker")
    r.add_argument("--repeats", type=count, default=1, help="run the worker counts this many times, interleaved "
                   "(1, 2, 1, 2, ...): medians, and each repeat's speed-up (default 1)")
    r.add_argument("--write", type=OutFile(), default=None, metavar="MD")
    r.add_argument("overrides", type=Override(), nargs="*", metavar="key=value", help="training settings")
    tu = sub.add_parser("tune", help="per-trial start-up cost of a sweep, in-process and DDP trials")
    tu.add_argument("--dataset", type=Dataset(), required=True)
    tu.add_argument("--data-root", type=DataRoot(), default=None)
    tu.add_argument("--trials", type=count, default=6)
    tu.add_argument("--epochs", type=epochs, default=1)
    tu.add_argument("--workers-per-trial", type=Number(int, 1, many=True), default="1,2",
                    help="comma-separated (default 1,2)")
    tu.add_argument("--write", type=OutFile(), default=None, metavar="MD")
    tu.add_argument("overrides", type=Override(sweep=True), nargs="*", metavar="key=value", help="training settings")
    gp = sub.add_parser("gpu", help="one-call GPU check: CUDA against CPU, s/epoch and peak memory, a DDP step "
                        "(no Ray, no DGL; see mentor_ray/benchmarks/gpucheck.py)")
    gp.add_argument("--out", type=OutDir(), required=True, help="folder for gpu_check.md and gpu_check.json")
    gp.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="device checked against the CPU")
    gp.add_argument("--datasets", type=Names(PRESETS), default="synth-baby,synth-sports,synth-clothing",
                    help="comma-separated presets to time (default: the paper's three Amazon shapes)")
    gp.add_argument("--tiktok", type=DataRoot(holds="tiktok"), default=None, metavar="DATA_ROOT",
                    help="also time TikTok from DATA_ROOT/tiktok")
    gp.add_argument("--variants", type=Parsed(_gpu_models), default="table3", help="models part (b) times: "
                    "comma-separated variants (mentor:batch for MENTOR's batch scope), table3 for Table 3's "
                    "(default), e.g. table3,mmssl,diffmm")
    gp.add_argument("--epochs", type=epochs, default=3, help="timed epochs per model (default 3)")
    gp.add_argument("--warmup", type=Number(int, 0), default=1, help="untimed epochs first (default 1)")
    gp.add_argument("--write", type=OutFile(), default=None, metavar="MD", help="also update this Markdown file")
    fa = sub.add_parser("faults", help="the fault campaign: SIGKILL workers and drivers at chosen moments, resume, "
                        "compare with uninterrupted runs (mentor_ray/benchmarks/faults.py)")
    fa.add_argument("--cases", type=Names(CASES, every=CASES), default="all",
                    help=f"comma-separated cases, or all (default): {', '.join(CASES)}")
    fa.add_argument("--write", type=OutFile(), default=None, metavar="MD")
    se = sub.add_parser("search", help="search efficiency: grid, random, TPE and TPE + ASHA against the compute "
                        "they spend, on a space trained whole (mentor_ray/benchmarks/search.py)")
    se.add_argument("--dataset", type=Dataset(), default="synth-small")
    se.add_argument("--space", type=Parsed(_search_space), default=SEARCH_SPACE,
                    help=f"a space trained whole (default {SEARCH_SPACE}: 81 points)")
    se.add_argument("--data-root", type=DataRoot(kind=str), default=None)
    se.add_argument("--searchers", type=Parsed(_searchers), default=DEFAULT_SEARCHERS,
                    help="comma-separated: grid, random or tpe, optionally +asha, with :grace=N, :reduction=N, "
                    ":startup=N (default: grid,random,tpe,tpe+asha and two variants)")
    se.add_argument("--seeds", type=Number(int, 0, many=True), default="0,1,2", help="searcher seeds (default 0,1,2)")
    se.add_argument("--work", type=OutDir(), default=Path(".bench-search"),
                    help="the trained table (table.json, reused) and Tune's files (default .bench-search/)")
    se.add_argument("--processes", type=count, default=2, help="points trained at once for the table (default 2)")
    se.add_argument("--concurrency", type=count, default=4, help="trials at once in a replay (default 4)")
    se.add_argument("--max-fraction", type=Number(float, 0, strict=True, high=1, what="a share of the grid's epochs"),
                    default=0.5, help="each replay's budget, as a share of the grid's epochs (default 0.5)")
    se.add_argument("--time-scale", type=Number(float, 0), default=0.02,
                    help="a replayed epoch sleeps its recorded seconds times this (default 0.02)")
    se.add_argument("--write", type=OutFile(), default=None, metavar="MD")
    ws = sub.add_parser("warmstart", help="what warm starts buy at a small budget: real searches with and without "
                        "the known points (mentor_ray/benchmarks/warmstart.py)")
    ws.add_argument("--dataset", type=Dataset(), default="tiktok")
    ws.add_argument("--data-root", type=DataRoot(kind=str), default=None)
    ws.add_argument("--spaces", type=Parsed(_spaces), default="lightgcn_grid,mentor_joint",
                    help="comma-separated search spaces")
    ws.add_argument("--budget", type=count, default=150, help="trial-epochs per search (default 150)")
    ws.add_argument("--max-epochs", type=epochs, default=100, help="epoch cap per trial (default 100)")
    ws.add_argument("--overrides", type=Parsed(_space_overrides, after=True), default="",
                    metavar="SPACE=key=value[;...]",
                    help="settings for one space's trials, e.g. mentor_joint=infonce_scope=batch")
    ws.add_argument("--best-known", type=Parsed(_best_known, after=True), default="", metavar="SPACE=R20[,...]",
                    help="the best validation Recall@20 known for each space's model on the dataset")
    ws.add_argument("--seeds", type=Number(int, 0, many=True), default="0", help="searcher seeds, comma-separated: "
                    "each a search of its own per space and start (the sweep's --seed; default 0)")
    ws.add_argument("--work", type=OutDir(), default=Path("runs/warm"), help="the searches' stores (reused)")
    ws.add_argument("--write", type=OutFile(), default=None, metavar="MD")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    words = list(argv if argv is not None else sys.argv[1:])
    vendored = None
    if words[:1] == ["gpu"]:  # a GPU node may lack pydantic, which the parser's registries import: unpack it first
        from mentor_ray.benchmarks import gpucheck

        vendored = gpucheck.use_local_wheels()
    p = build_parser()
    args = p.parse_args(argv)
    check_args(p, args)  # before anything starts: no child, no graph build, nothing written
    setup_logging()
    command = "python -m mentor_ray.bench " + " ".join(shlex.quote(a) for a in words)
    if args.cmd == "gpu":
        from mentor_ray.benchmarks import gpucheck

        if vendored:
            gpucheck.log(vendored)
        return gpucheck.run_check(args.out, args.device, args.datasets, args.tiktok, args.epochs, args.warmup,
                                  command, args.write, models=args.variants)
    if args.cmd == "graphs":
        res = bench_graphs(args.dataset, args.data_root, args.k, args.knn_norm, args.builder)
        result = graphs_block(res, command, args.dataset, args.k, args.knn_norm)
        block = f"graphs:{args.dataset}:k{args.k}:{args.knn_norm}"
        block += "" if args.builder == "auto" else f":{args.builder}"
    elif args.cmd == "faults":
        from mentor_ray.benchmarks.faults import bench_faults, faults_block

        res = bench_faults(args.cases)
        result = faults_block(res, command)
        block = "faults"
        failed = [r["case"] for r in res["rows"] if not r["identical"] or r["duplicated"] or r["missing"]
                  or r["extra"] or r["left_after"]]
        if failed:
            print(block_text(result))
            raise MentorRayError(f"fault campaign: {', '.join(failed)} lost, duplicated or changed results, or "
                                 "left processes; see the table")
    elif args.cmd == "search":
        from mentor_ray.benchmarks.search import bench_search, search_block

        res = bench_search(args.space, args.dataset, args.data_root, args.searchers, args.seeds, args.work,
                           args.processes, args.concurrency, args.max_fraction, args.time_scale)
        result = search_block(res, command)
        block = f"search:{args.space}:{args.dataset}"
    elif args.cmd == "warmstart":
        from mentor_ray.benchmarks.warmstart import bench_warmstart, warmstart_block

        res = bench_warmstart(args.spaces, args.dataset, args.data_root, args.budget, args.max_epochs,
                              args.overrides, args.best_known, args.work, args.seeds)
        result = warmstart_block(res, command)
        block = f"warmstart:{args.dataset}:{args.budget}:{','.join(args.spaces)}"
    elif args.cmd == "tune":
        res = bench_tune(args.dataset, args.data_root, args.trials, args.epochs, args.workers_per_trial,
                         args.overrides)
        result = tune_block(res, command, args.dataset)
        block = f"tune:{args.dataset}:{':'.join(map(str, args.workers_per_trial))}"
    elif args.cmd == "models":
        res = bench_models(args.dataset, args.data_root, args.variants, args.epochs, args.threads, args.overrides)
        result = models_block(res, command, args.dataset, args.overrides)
        block = f"models:{args.dataset}:{':'.join(sorted(args.overrides))}"
    elif args.cmd == "ray":
        res = bench_ray(args.dataset, args.data_root, args.variant, args.epochs, args.workers, args.cpus,
                        args.overrides, per_worker=args.cpus_per_worker, workers_first=args.workers_first,
                        repeats=args.repeats)
        result = ray_block(res, command, args.dataset, args.variant, args.cpus, args.overrides)
        cpus = str(args.cpus) if args.cpus_per_worker is None else f"{args.cpus_per_worker:g}each"
        first = (":workers-first" if args.workers_first else "") + (f":x{args.repeats}" if args.repeats > 1 else "")
        block = f"ray:{args.dataset}:{args.variant}:{cpus}{first}:{':'.join(sorted(args.overrides))}"
    else:
        res = bench_train(args.dataset, args.data_root, args.variant, args.epochs, args.overrides)
        result = train_block(res, command, args.dataset, args.variant, args.overrides)
        block = f"train:{args.dataset}:{args.variant}:{':'.join(sorted(args.overrides))}"
    print(block_text(result))  # plain text on the terminal; Markdown into the file
    if args.write:
        upsert_block(args.write, block, block_md(result))
        print(f"\n[bench] written to {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
