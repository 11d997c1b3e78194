"""tools/device_finals.sh: a point's final runs over seeds in-process (a GPU node without Ray), each under a
deadline, whole summaries only in $OUT, then into a store with `results add`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "device_finals.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def _run(out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OUT": str(out), "HOME": str(out.parent)}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_each_seed_leaves_a_whole_summary_that_results_add_stores(tmp_path):
    out = tmp_path / "out"
    proc = _run(out, "synth-tiny", "-", "mf_bpr", "0,1", "1", "200", "device=cpu", "patience=20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 of 2 seeds finished" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["mf_bpr-runs.log", "mf_bpr-s0.json", "mf_bpr-s1.json"]
    for seed in (0, 1):
        summary = json.loads((out / f"mf_bpr-s{seed}.json").read_text())
        assert summary["seed"] == seed and summary["config"]["patience"] == 20 and summary["test"]
    store = tmp_path / "store"
    add = subprocess.run([sys.executable, "-m", "mentor_ray.results", "add", "--results", str(store), "--role",
                          "final", *map(str, sorted(out.glob("*.json")))], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert add.returncode == 0, add.stderr
    assert len(list(store.glob("final-synth-tiny-mf_bpr-*.parquet"))) == 2


def test_a_run_over_its_deadline_leaves_no_summary_and_the_script_fails(tmp_path):
    out = tmp_path / "out"
    proc = _run(out, "synth-tiny", "-", "mf_bpr", "0", "1000", "1", "device=cpu")
    assert proc.returncode != 0
    assert "seed 0: exit 124" in proc.stdout and "0 of 1 seeds finished" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["mf_bpr-runs.log"]  # no summary, not half of one


def test_bad_arguments_are_one_line_and_exit_2(tmp_path):
    proc = _run(tmp_path / "out", "synth-tiny", "-")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("usage: tools/device_finals.sh")
