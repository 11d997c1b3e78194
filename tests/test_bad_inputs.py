"""Bad input, command by command: each case is one ``error:`` line on stderr, exit 2, and nothing left
behind in the folders it names. None of them starts Ray (the cases that need a Ray cluster, a missing GPU
among them, are in ``test_tune.py``).

``python tests/test_bad_inputs.py`` prints the table (case, exit code, message) for a closing note.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from mentor_ray import cli

BAD_ROWS = [(0, 0, 1, 0, 7), (0, 1, 1, 0, 0), (1, 1, 1, 0, 2)]  # x_label 7


def _world(tmp: Path) -> dict[str, str]:
    """Files and folders the cases refer to, by placeholder."""
    from tests.conftest import write_dataset

    data = tmp / "data"
    write_dataset(data, "bad", rows=BAD_ROWS)
    write_dataset(data, "nohead", header="user\titem\trating\ttimestamp\tx_label")
    write_dataset(data, "plain", features={})
    write_dataset(data, "wide", rows=[(0, 9, 1, 0, 0), (0, 1, 1, 0, 1), (1, 2, 1, 0, 2)], n_items=6)
    (tmp / "empty").mkdir()
    (tmp / "afile").write_text("")
    (tmp / "store").mkdir()
    (tmp / "diffmm").mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'pwned'}",))

    for name in ("trnMat.pkl", "valMat.pkl", "tstMat.pkl"):
        (tmp / "diffmm" / name).write_bytes(pickle.dumps(Evil()))
    (tmp / "space.yaml").write_text("name: x\nsearch:\n  dropout: []\n")
    (tmp / "space2.yaml").write_text("name: x2\nsearch:\n  dropout: [0.1, 0.2]\nfixed:\n  dropout: 0.3\n")
    (tmp / "preset.yaml").write_text("lr: 0.001\n")
    (tmp / "preset_inf.yaml").write_text("max_epochs: .inf\n")
    # #24: a second root, so that the datasets of DATA stay the four listed above
    data2 = tmp / "data2"
    write_dataset(data2, "escape")
    (data2 / "escape" / "dataset.yaml").write_text("inter_file: /etc/passwd\n")
    os.mkfifo(write_dataset(data2, "pipe") / "audio_feat.npy")
    write_dataset(data2, "novalid", rows=[(0, 0, 1, 0, 0), (0, 1, 1, 0, 2)])
    write_dataset(data2, "huge", rows=[(0, 0, 1, 0, 0), (0, 1, 1, 0, 1), (10**18, 2, 1, 0, 2)])
    diffmm2 = tmp / "diffmm2"
    diffmm2.mkdir()
    for name in ("trnMat.pkl", "valMat.pkl", "tstMat.pkl"):
        m = scipy.sparse.csr_matrix(np.eye(3))
        m.indices = np.array([0, 1, 7], dtype=m.indices.dtype)  # item 7 of 3: unpickling skips scipy's checks
        (diffmm2 / name).write_bytes(pickle.dumps(m))
    return {"DATA2": str(data2), "DIFFMM2": str(diffmm2),
            "DATA": str(data), "TMP": str(tmp), "FILE": str(tmp / "afile"), "EMPTY": str(tmp / "empty"),
            "OUT": str(tmp / "out"), "STORE": str(tmp / "store"), "DIFFMM": str(tmp / "diffmm"),
            "SPACE": str(tmp / "space.yaml"), "RO": "/proc/1/forbidden", "SPACE2": str(tmp / "space2.yaml"),
            "PRESET": str(tmp / "preset.yaml"), "PRESET_INF": str(tmp / "preset_inf.yaml")}


T = ["train", "--dataset", "synth-tiny"]
S = ["tune", "--dataset", "synth-tiny", "--space", "smoke", "--results", "OUT/r", "--storage", "OUT/s"]
CASES = [
    # (case, argv, what the one line must say)
    ("unknown command", ["nope"], r"mentor-ray nope: no such command; commands: data, "),
    ("data: unknown dataset, no root", ["data", "info", "--dataset", "nope"], r"--dataset nope: not a synthetic"),
    ("data: unknown dataset under a root", ["data", "info", "--dataset", "nope", "--data-root", "DATA"],
     r"no directory .*datasets under .*: bad, nohead, plain, wide"),
    ("data: x_label 7", ["data", "info", "--dataset", "bad", "--data-root", "DATA"], r"bad\.inter.*x_label"),
    ("data: header without userID", ["data", "info", "--dataset", "nohead", "--data-root", "DATA"],
     r"nohead\.inter.*userID"),
    ("data: itemID beyond the feature rows", ["data", "info", "--dataset", "wide", "--data-root", "DATA"],
     r"wide\.inter: itemID 9 .* >= 6"),
    ("data: a path as dataset name", ["data", "info", "--dataset", "../etc"], r"--dataset '\.\./etc': not allowed"),
    ("data: --dataset missing", ["data", "info"], r"required: --dataset"),
    ("data: inter_file outside the dataset", ["data", "info", "--dataset", "escape", "--data-root", "DATA2"],
     r"dataset\.yaml: inter_file = '/etc/passwd': leads outside the dataset directory"),
    ("data: a FIFO as feature file", ["data", "info", "--dataset", "pipe", "--data-root", "DATA2"],
     r"audio_feat\.npy: is a named pipe \(FIFO\)"),
    ("data: an empty valid split", ["data", "info", "--dataset", "novalid", "--data-root", "DATA2"],
     r"novalid\.inter: the valid split is empty"),
    ("data: a user id of 10**18", ["data", "info", "--dataset", "huge", "--data-root", "DATA2"],
     r"huge\.inter: column userID = 1000000000000000000 at line 4; ids index tables sized by the largest id"),
    ("convert: indices out of range", ["data", "convert-diffmm", "DIFFMM2", "OUT", "--name", "tt"],
     r"trnMat\.pkl: not a valid sparse matrix"),
    ("convert: pickles that run code", ["data", "convert-diffmm", "DIFFMM", "OUT", "--name", "tt"],
     r"trnMat\.pkl: unreadable pickle .*refusing to load (posix|os)\.system"),
    ("convert: missing source", ["data", "convert-diffmm", "EMPTY", "OUT", "--name", "tt"], r"trnMat\.pkl: missing"),
    ("convert: a path as --name", ["data", "convert-diffmm", "DIFFMM", "OUT", "--name", "../x"],
     r"--name '\.\./x': not allowed"),
    ("synthetic: unknown preset", ["synthetic", "generate", "synth-nope", "--out", "OUT"], r"synth-nope"),
    ("train: --workers 0", [*T, "--workers", "0"], r"--workers 0: must be at least 1"),
    ("train: --max-epochs 0", [*T, "--max-epochs", "0"], r"--max-epochs 0: must be at least 1"),
    ("train: --seed -1", [*T, "--seed", "-1"], r"argument --seed: '-1': must be a whole number from 0 to 4,294,9"),
    ("train: seed=-1", [*T, "seed=-1"], r"override: seed = -1 is not allowed .*at least 0"),
    ("train: --cpus-per-worker -1", [*T, "--cpus-per-worker", "-1"], r"--cpus-per-worker -1: must be greater"),
    ("train: --gpus-per-worker -1", [*T, "--gpus-per-worker", "-1"], r"--gpus-per-worker -1: must be at least 0"),
    ("train: --max-failures -5", [*T, "--max-failures", "-5"], r"--max-failures -5: must be at least 0"),
    ("train: --storage is a file", [*T, "--storage", "FILE"], r"--storage .*afile: is a file, not a directory"),
    ("train: --storage not writable", [*T, "--storage", "RO"], r"--storage /proc/1/forbidden: .*not writable"),
    ("train: --summary is a directory", [*T, "--summary", "EMPTY"], r"--summary .*empty: is a directory"),
    ("train: --summary not writable", [*T, "--summary", "RO/s.json"], r"--summary .*: its folder .*not writable"),
    ("train: --run-name leaves --storage", [*T, "--run-name", "../../x", "--storage", "OUT"],
     r"--run-name '\.\./\.\./x': not allowed"),
    ("train: dataset=../x", [*T, "dataset=../x"], r"override: dataset = '\.\./x' is not allowed"),
    ("train: --variant nope", [*T, "--variant", "nope"], r"argument --variant: invalid choice: 'nope'"),
    ("train: --max-epochs abc", [*T, "--max-epochs", "abc"], r"argument --max-epochs: invalid int value"),
    ("train: unknown key", [*T, "learning_rate=0.1"], r"unknown key 'learning_rate'"),
    ("train: not key=value", [*T, "lr"], r"override 'lr': expected key=value"),
    ("train: lr=-1", [*T, "lr=-1"], r"override: lr = -1 is not allowed .*greater than 0"),
    ("train: lr=1e30 diverges", [*T, "--max-epochs", "2", "lr=1e30"], r"epoch \d+: training diverged"),
    ("train: --summary onto a device", [*T, "--summary", "/dev/null"], r"--summary /dev/null: is not a regular file"),
    ("train: lr=inf", [*T, "lr=inf"], r"override: lr = inf is not allowed \(float\); allowed: a finite number"),
    ("train: batch_size=true", [*T, "batch_size=true"], r"override: batch_size = True is not allowed \(int\)"),
    ("train: seed=2**64", [*T, "seed=18446744073709551616"], r"seed = 18446744073709551616 is not allowed .*at most"),
    ("train: knn_norm=bad", [*T, "knn_norm=bad"], r"knn_norm = 'bad' is not allowed"),
    ("train: --preset nope", [*T, "--preset", "nope"], r"nope"),
    ("train: MENTOR without features", ["train", "--dataset", "plain", "--data-root", "DATA"],
     r"variant mentor \(MENTOR\) needs item feature files; dataset plain has none"),
    ("train: device=cuda without CUDA", [*T, "device=cuda"], r"CUDA"),
    ("tune: --num-samples 0", [*S, "--num-samples", "0"], r"--num-samples 0: must be at least 1"),
    ("tune: --seeds 0", [*S, "--seeds", "0"], r"--seeds 0: must be at least 1"),
    ("tune: --seed -1", [*S, "--seed", "-1"], r"argument --seed: '-1': must be a whole number from 0"),
    ("tune: --max-epochs 0", [*S, "--max-epochs", "0"], r"--max-epochs 0: must be at least 1"),
    ("tune: --max-concurrent -1", [*S, "--max-concurrent", "-1"], r"--max-concurrent -1: must be at least 0"),
    ("tune: --grace-period 0", [*S, "--grace-period", "0"], r"--grace-period 0: must be at least 1"),
    ("tune: --cpus-per-trial -1", [*S, "--cpus-per-trial", "-1"], r"--cpus-per-trial -1: must be greater than 0"),
    ("tune: --gpus-per-trial -1", [*S, "--gpus-per-trial", "-1"], r"--gpus-per-trial -1: must be at least 0"),
    ("tune: --workers-per-trial 0", [*S, "--workers-per-trial", "0"], r"--workers-per-trial 0: must be at least 1"),
    ("tune: --results is a file", [*S, "--results", "FILE"], r"--results .*afile: is a file, not a directory"),
    ("tune: --results not writable", [*S, "--results", "RO"], r"--results /proc/1/forbidden: .*not writable"),
    ("tune: --storage is a file", [*S, "--storage", "FILE"], r"--storage .*afile: is a file"),
    ("tune: --space nope", [*S, "--space", "nope"], r"--space nope"),
    ("tune: a space with an empty axis", [*S, "--space", "SPACE"], r"space\.yaml"),
    ("tune: --dataset all, no --data-root", ["tune", "--dataset", "all", "--results", "OUT/r"],
     r"--dataset all: no datasets without --data-root .*--dataset synth-all"),
    ("tune: --dataset all, an empty root", ["tune", "--dataset", "all", "--data-root", "EMPTY", "--results", "OUT/r"],
     r"--dataset all: no datasets under --data-root .*empty"),
    ("tune: a malformed dataset", ["tune", "--dataset", "bad", "--data-root", "DATA", "--results", "OUT/r"],
     r"bad\.inter.*x_label"),
    ("tune: every dataset bad", ["tune", "--dataset", "bad,plain", "--data-root", "DATA", "--results", "OUT/r"],
     r"every dataset of the sweep failed its checks \(bad, plain\)"),
    ("tune: override of a searched key", [*S, "tau=0.3"], r"override tau=\.\.\.: tau is searched by the space"),
    ("tune: override of a sweep flag", [*S, "seed=3"], r"override seed=\.\.\.: seed is a flag of the sweep"),
    ("tune: --ablation with a baseline space", [*S, "--space", "lightgcn_grid", "--ablation"],
     r"--ablation: the space lightgcn_grid searches lightgcn"),
    ("tune: --dataset ../x", ["tune", "--dataset", "../x", "--results", "OUT/r"], r"dataset = '\.\./x' is not allowed"),
    ("leaderboard: no store", ["leaderboard", "--results", "EMPTY/nope", "--out", "OUT/b"], r"nope"),
    ("results: no store", ["results", "show", "--results", "EMPTY/nope"], r"--results .*nope: no such directory"),
    ("spaces: unknown space", ["spaces", "show", "nope"], r"nope"),
    ("bench: unknown fault case", ["bench", "faults", "--cases", "nope"], r"--cases nope: unknown"),
    ("bench search: unknown searcher", ["bench", "search", "--searchers", "tpe,hyperband", "--work", "OUT/w"],
     r"--searchers 'hyperband': expected grid, random or tpe"),
    ("bench search: grace without ASHA", ["bench", "search", "--searchers", "tpe:grace=3", "--work", "OUT/w"],
     r"grace and reduction with \+asha"),
    ("bench search: budget above the grid", ["bench", "search", "--max-fraction", "2", "--work", "OUT/w"],
     r"--max-fraction 2.0: a share of the grid's epochs; allowed: above 0, at most 1"),
    ("bench search: a space that searches nothing", ["bench", "search", "--space", "paper_best", "--work", "OUT/w"],
     r"--space paper_best: the search benchmark needs a MENTOR space that searches something"),
    ("graphs: unknown dataset", ["graphs", "build", "--dataset", "nope"], r"--dataset nope"),
    # 2026-12-07 probe: outputs aimed at inputs, checked late or not at all (one path rule: io.check_path_roles)
    ("train: --summary over the dataset's .inter", ["train", "--dataset", "plain", "--data-root", "DATA",
                                                    "--summary", "DATA/plain/plain.inter"],
     r"--summary .*plain\.inter: is inside dataset plain's folder .*which this command reads"),
    ("train: --summary over its --preset", [*T, "--preset", "PRESET", "--summary", "PRESET"],
     r"--summary .*preset\.yaml: is also --preset"),
    ("train: --storage in the dataset", ["train", "--dataset", "plain", "--data-root", "DATA", "--storage",
                                         "DATA/plain/runs"], r"--storage .*runs: is inside dataset plain's folder"),
    ("tune: --results = --storage", [*S[:5], "--results", "OUT/x", "--storage", "OUT/x"],
     r"--results .*x and --storage .*x: the same path"),
    ("tune: --storage inside --results", [*S[:5], "--results", "OUT/x", "--storage", "OUT/x/s"],
     r"--storage .*s: is inside --results"),
    ("tune: --leaderboard = --data-root", [*S, "--data-root", "DATA", "--leaderboard", "DATA"],
     r"--leaderboard .*data: is also --data-root"),
    ("tune: --warm-start-from missing", [*S, "--warm-start-from", "EMPTY/nope"],
     r"--warm-start-from .*nope: no such folder"),
    ("tune: --warm-start-from a file", [*S, "--warm-start-from", "FILE"],
     r"--warm-start-from .*afile: is not a folder"),
    ("tune: --optuna-storage ftp", [*S, "--optuna-storage", "ftp://x/y"], r"ftp is not a database Optuna keeps"),
    ("tune: --optuna-storage in memory", [*S, "--optuna-storage", "sqlite://"], r"an in-memory database is lost"),
    ("tune: --baselines ''", [*S, "--baselines", ""], r"--baselines '': names no model"),
    ("tune: a key searched and fixed", [*S, "--space", "SPACE2"], r"space2\.yaml: fixed\.dropout: also under search"),
    ("leaderboard: --out in the store", ["leaderboard", "--results", "STORE", "--out", "STORE/b"],
     r"--out .*b: is inside --results"),
    ("convert: dst is its src", ["data", "convert-diffmm", "DIFFMM", "TMP", "--name", "diffmm"],
     r"dst .*diffmm: is also src"),
    ("data: a --data-root that is not there", ["data", "info", "--dataset", "synth-tiny", "--data-root", "EMPTY/x"],
     r"--data-root .*x: no such directory; .*synth-tiny is a synthetic preset"),
    ("train: data_root= a file", [*T, "data_root=FILE"], r"--data-root .*afile: is not a directory"),
    ("train: a preset's bad value under a flag", [*T, "--preset", "PRESET_INF", "--max-epochs", "1"],
     r"preset_inf\.yaml: max_epochs = inf is not allowed"),
    ("train: --preset a directory", [*T, "--preset", "EMPTY"], r"--preset .*empty: is a directory"),
    ("synthetic: --out a file", ["synthetic", "generate", "synth-tiny", "--out", "FILE"],
     r"--out .*afile: is a file, not a directory"),
    ("bench: --write over the dataset's .inter", ["bench", "train", "--dataset", "plain", "--data-root", "DATA",
                                                  "--variant", "lightgcn", "--write", "DATA/plain/plain.inter"],
     r"--write .*plain\.inter: is inside dataset plain's folder"),
    ("tune: --dataset with an empty item", ["tune", "--dataset", "synth-tiny,", "--results", "OUT/r"],
     r"--dataset 'synth-tiny,': an empty name in the list"),
    ("synthetic: --seed 2**64", ["synthetic", "generate", "synth-tiny", "--out", "OUT", "--seed", str(2**64)],
     r"argument --seed: '18446744073709551616': must be a whole number"),
]


def _argv(argv: list[str], world: dict[str, str]) -> list[str]:
    return [re.sub("|".join(map(re.escape, sorted(world, key=len, reverse=True))), lambda m: world[m.group(0)], a)
            for a in argv]


def _snapshot(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*")}


def run_case(argv: list[str], tmp: Path) -> tuple[int, list[str], set[str]]:
    """(exit code, stderr lines, paths created under ``tmp``) of ``mentor-ray <argv>``, in-process."""
    world = _world(tmp)
    before = _snapshot(tmp)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = cli.main(_argv(argv, world))
        except SystemExit as exc:  # argparse
            rc = exc.code
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip() and not re.match(r"^\d\d:\d\d:\d\d [IW] ", ln)]
    return rc, lines, _snapshot(tmp) - before


@pytest.mark.parametrize("case, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, argv, message, tmp_path, monkeypatch):
    monkeypatch.setenv("MENTOR_RAY_CACHE", str(tmp_path.parent / "cache"))  # caches are not "left behind"
    ray = sys.modules.get("ray")
    rc, lines, created = run_case(argv, tmp_path)
    assert rc == 2, (rc, lines)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert not created, created
    assert not (tmp_path / "pwned").exists()
    if ray is not None:
        assert not ray.is_initialized()  # refused before Ray started


def test_the_table_holds_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


if __name__ == "__main__":  # the table for a closing note
    import tempfile

    print("| case | exit | message |\n|---|---:|---|")
    for case, argv, _ in CASES:
        with tempfile.TemporaryDirectory() as d:
            rc, lines, created = run_case(argv, Path(d))
        text = " / ".join(lines).replace("|", "\\|").replace(d, "TMP")
        print(f"| {case} | {rc} | `{text}`{' (left: ' + ', '.join(sorted(created)) + ')' if created else ''} |")
