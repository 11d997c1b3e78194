"""``import mentor_ray`` and the single-process training path need neither ray, dgl nor optuna.

The path is data -> graphs (from the cache, or the built-in builder) -> model -> trainer -> metrics.
Each check runs in a fresh interpreter whose import system refuses those three packages, so a
stray top-level import anywhere on the path fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

BLOCKED = ("ray", "dgl", "optuna")

PRELUDE = textwrap.dedent(
    f"""
    import importlib.abc, sys
    BLOCKED = {BLOCKED!r}

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"import of {{name}} refused by test_lean_imports")
            return None

    sys.meta_path.insert(0, Refuse())
    """
)


def run_blocked(code: str, cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MENTOR_RAY_CACHE": cache, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_the_blocker_blocks(tmp_path):
    proc = subprocess.run([sys.executable, "-c", PRELUDE + "import ray"], capture_output=True, text=True)
    assert proc.returncode != 0 and "refused by test_lean_imports" in proc.stderr


def test_import_mentor_ray_is_lean(tmp_path):
    proc = run_blocked(
        """
        import mentor_ray
        import mentor_ray.common.config, mentor_ray.datasets.dataset, mentor_ray.datasets.graphs
        import mentor_ray.datasets.synthetic, mentor_ray.model.mentor, mentor_ray.model.losses
        import mentor_ray.training.metrics, mentor_ray.training.trainer, mentor_ray.report.results
        import mentor_ray.benchmarks.bench, mentor_ray.data, mentor_ray.graphs, mentor_ray.train
        import mentor_ray.synthetic, mentor_ray.results, mentor_ray.bench
        print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
        """,
        str(tmp_path),
    )
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("variant", ["mentor", "lightgcn", "mf_bpr", "most_pop"])
def test_single_process_training_is_lean(tmp_path, variant):
    # first run: no cached graphs, so they are built (by the built-in builder: DGL is refused);
    # second run: the graphs come from the cache
    for expect in ("built by torch", "cache hit (built by torch)"):
        proc = run_blocked(
            f"""
            from mentor_ray.training import trainer as train
            from mentor_ray import train as train_cmd
            rc = train_cmd.main(["--dataset", "synth-tiny", "--variant", "{variant}", "--max-epochs", "2",
                             "--summary", r"{tmp_path / 'summary.json'}"])
            assert rc == 0
            print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
            """,
            str(tmp_path / "cache"),
        )
        assert proc.stdout.strip().splitlines()[-1] == "[]"
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert summary["epochs_run"] == (2 if variant != "most_pop" else 0)
        if variant in ("mentor", "lightgcn"):
            assert f"graphs {expect}" in proc.stderr, proc.stderr[-2000:]
            assert summary["graph_builder"] == "torch"
        else:
            assert summary["graph_builder"] is None
