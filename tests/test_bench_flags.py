"""``bench``: every flag of every command is checked in the parent, before any step starts.

The steps run as child commands that check their own flags, but only once the benchmark is under way and in
their own words (``--max-epochs`` for ``--epochs``). These tests walk the parser itself, so a flag added later is
held to the same rule: it has ``choices`` or a checked type (:class:`mentor_ray.bench.Flag`), and a value out of
range, unknown or unusable is one ``error:`` line naming that flag, exit 2, with no step run and nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mentor_ray import bench, cli
from mentor_ray.bench import DataRoot, Dataset, Flag, Names, Number, OutDir, OutFile, Override, Parsed
from tests.conftest import REPO

PARSER = bench.build_parser()
COMMANDS: dict[str, argparse.ArgumentParser] = next(
    a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0 and not isinstance(action, argparse._HelpAction)


def _flag(action: argparse.Action) -> str:
    return max(action.option_strings, key=len, default=action.dest)


def _bad_values(action: argparse.Action) -> list[str]:
    """Values the action must refuse, from what it declares (TMP: the test's folder)."""
    t = action.type
    if action.choices is not None or isinstance(t, (Names, Parsed, Dataset)):
        return ["nope"]
    if isinstance(t, Number):
        out = [] if t.low is None else [t.low if t.strict else t.low - 1]
        out += [] if t.high is None else [t.high + 1]
        return [str(v) for v in out] + (["nan", "inf"] if t.kind is float else [])
    if isinstance(t, Override):
        return ["nope=1"]
    if isinstance(t, DataRoot):
        return ["TMP/missing"]
    if isinstance(t, OutDir):
        return ["TMP/afile"]  # a file where a folder is written
    if isinstance(t, OutFile):
        return ["TMP"]  # a folder where a file is written
    return []  # an unchecked flag: test_every_flag_has_choices_or_a_checked_type names it


def _baseline(command: str, tested: argparse.Action) -> list[str]:
    """What a command needs besides the flag under test: a preset for every --dataset, a folder for --out."""
    argv = [command]
    for a in COMMANDS[command]._actions:
        if a is tested or not a.option_strings:
            continue
        if isinstance(a.type, Dataset):
            argv += [_flag(a), "synth-tiny"]
        elif a.required:
            assert isinstance(a.type, OutDir), (command, _flag(a))
            argv += [_flag(a), "TMP/out"]
    return argv


CASES = [(command, _flag(a), bad) for command, parser in COMMANDS.items() for a in parser._actions
         if _takes_value(a) for bad in _bad_values(a)]


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Every way a benchmark starts work refuses, and says so: the steps' processes, the benchmark functions,
    a preset's generation, a graph build. Runs in an empty folder (the --work defaults are relative)."""
    from mentor_ray.benchmarks import faults, gpucheck, search, warmstart
    from mentor_ray.datasets import graphs, synthetic

    ran: list[tuple[str, tuple]] = []  # (what started, its positional arguments)

    def refuse(name):
        def run(*args, **kwargs):
            ran.append((name, args))
            raise RuntimeError(f"{name} ran")
        return run

    monkeypatch.setattr(subprocess, "Popen", refuse("a child process"))
    for module, names in ((bench, ("bench_graphs", "bench_train", "bench_models", "bench_ray", "bench_tune")),
                          (faults, ("bench_faults",)), (search, ("bench_search",)),
                          (warmstart, ("bench_warmstart",)), (gpucheck, ("run_check",)),
                          (synthetic, ("ensure_preset",)), (graphs, ("build_graphs",))):
        for name in names:
            monkeypatch.setattr(module, name, refuse(name))
    # use_local_wheels is allowed: bench gpu calls it first (the GPU node lacks pydantic), and where pydantic is
    # installed, as here, it returns at once
    monkeypatch.setenv("MENTOR_RAY_CACHE", str(tmp_path / "cache"))
    (tmp_path / "afile").write_text("x")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return ran


def _run(argv: list[str], tmp: Path) -> tuple[int, list[str]]:
    argv = [a.replace("TMP", str(tmp)) for a in argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(["bench", *argv])
        except SystemExit as exc:  # argparse's own line: an unknown choice, a word that is no number
            rc = exc.code
    return rc, [ln for ln in err.getvalue().splitlines() if ln.strip()]


def _files(tmp: Path) -> set[Path]:
    return set(tmp.rglob("*"))


def test_every_flag_has_choices_or_a_checked_type():
    for command, parser in COMMANDS.items():
        for a in parser._actions:
            if _takes_value(a):
                assert a.choices is not None or isinstance(a.type, Flag), f"bench {command} {_flag(a)}: unchecked"
    assert len(CASES) > 60  # every command's flags, not a few


@pytest.mark.parametrize("command, flag, bad", CASES, ids=[f"{c} {f} {b}" for c, f, b in CASES])
def test_a_bad_flag_is_one_line_naming_it_before_any_work(command, flag, bad, no_work, tmp_path):
    tested = next(a for a in COMMANDS[command]._actions if _flag(a) == flag)
    argv = _baseline(command, tested) + ([flag, bad] if tested.option_strings else [bad])
    before = _files(tmp_path)
    rc, lines = _run(argv, tmp_path)
    assert rc == 2, (rc, lines)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    named = re.escape(flag) if tested.option_strings else "override"
    assert re.search(rf"(?<![\w-]){named}(?![\w-])", lines[0]), lines[0]
    assert not no_work, no_work
    assert _files(tmp_path) == before  # nothing written, not even a cache folder


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "error: --epochs 0: out of range; allowed: at least 1"),
    (["train", "--epochs", "-1"], "error: --epochs -1: out of range; allowed: at least 1"),
    (["train", "--variant", "nope", "--epochs", "2"], "argument --variant: invalid choice: 'nope'"),
    (["graphs", "--k", "5", "--knn-norm", "foo"], "argument --knn-norm: invalid choice: 'foo' (choose from 'row'"),
    (["graphs", "--k", "-1"], "error: --k -1: out of range; allowed: at least 1"),
    (["train", "--epochs", "2", "--write", "TMP/store"], "error: --write TMP/store: is a directory; give a file path"),
    (["ray", "--workers", "1,0"], "error: --workers 1,0: 0 is out of range; allowed: at least 1 each"),
    (["models", "--variants", "mentor,nope"], "error: --variants mentor,nope: unknown 'nope'; allowed: all, or"),
    (["tune", "seed=3"], "error: override seed=...: seed is set by the benchmark's flags"),
    (["train", "max_epochs=5"], "error: override max_epochs=...: max_epochs is set by the benchmark's flags"),
])
def test_the_probes_cases_name_the_users_flag(argv, message, no_work, tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "data").mkdir()  # a data root without synth-tiny: the preset, as in the probe
    rc, lines = _run([argv[0], "--dataset", "synth-tiny", "--data-root", "TMP/data", *argv[1:]], tmp_path)
    assert rc == 2 and len(lines) == 1, lines
    assert message.replace("TMP", str(tmp_path)) in lines[0], lines[0]
    assert "--max-epochs" not in lines[0] and "python -m mentor_ray.train" not in lines[0]
    assert not no_work


def test_a_missing_data_root_and_a_dataset_it_lacks_are_refused(no_work, tmp_path):
    rc, lines = _run(["train", "--dataset", "synth-tiny", "--data-root", "TMP/nope"], tmp_path)
    assert rc == 2 and lines == [f"error: --data-root {tmp_path}/nope: no such directory; give the folder holding "
                                 "the dataset folders"]
    (tmp_path / "data" / "empty").mkdir(parents=True)
    rc, lines = _run(["graphs", "--dataset", "empty", "--data-root", "TMP/data"], tmp_path)
    assert rc == 2 and len(lines) == 1 and "--dataset empty: " in lines[0] and "empty.inter" in lines[0], lines
    rc, lines = _run(["graphs", "--dataset", "tiktok", "--data-root", "TMP/data"], tmp_path)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: --dataset tiktok: no directory"), lines
    assert not no_work


@pytest.mark.parametrize("argv, reached, expect", [
    (["graphs", "--dataset", "synth-tiny"], "bench_graphs", ("synth-tiny", None, 40, "row", "auto")),
    (["ray", "--dataset", "synth-tiny", "--workers", "1,2,4", "knn_k=5"], "bench_ray",
     ("synth-tiny", None, "mentor", 3, [1, 2, 4], 2, ["knn_k=5"])),
    (["tune", "--dataset", "synth-tiny", "--workers-per-trial", "2"], "bench_tune",
     ("synth-tiny", None, 6, 1, [2], [])),
    (["faults"], "bench_faults", (["worker", "train-driver", "sweep-search", "sweep-final", "sweep-ablation",
                                   "sweep-leaderboard", "two-drivers"],)),
])
def test_good_flags_reach_the_benchmark_parsed(argv, reached, expect, no_work, tmp_path):
    """The checks refuse nothing the benchmarks take, and hand them the parsed values (``all`` as its names)."""
    rc, lines = _run(argv, tmp_path)
    assert rc == 1 and f"{reached} ran" in lines[-1], lines  # refused by the fixture: an internal error
    assert no_work == [(reached, expect)]


def test_every_commands_defaults_pass_the_checks(no_work, tmp_path):
    for command in COMMANDS:
        no_work.clear()
        args = PARSER.parse_args([a.replace("TMP", str(tmp_path)) for a in _baseline(command, None)])
        bench.check_args(PARSER, args)
        if command == "models":
            assert "mentor" in args.variants and "mentor_fg" in args.variants and "all" not in args.variants
        if command == "search":
            assert args.seeds == [0, 1, 2] and args.searchers[0].kind == "grid"
        if command == "gpu":
            assert args.datasets == ["synth-baby", "synth-sports", "synth-clothing"]
            assert ("mentor", "all") in args.variants
    assert not no_work


def test_from_the_shell_the_error_comes_first_and_alone(tmp_path):
    """The probe's case end to end: no ``[bench]`` progress line, no step's command line, no graph build."""
    env = {**os.environ, "MENTOR_RAY_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "mentor_ray.bench", "train", "--dataset", "synth-tiny", "--epochs",
                           "0"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: --epochs 0: out of range; allowed: at least 1"], proc.stderr
    assert not (tmp_path / "cache").exists()  # neither the preset generated nor a graph built
