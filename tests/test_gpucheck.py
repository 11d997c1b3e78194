"""The one-call GPU check (mentor_ray/gpucheck.py) on the CPU, so that it cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

from mentor_ray.benchmarks import gpucheck
from mentor_ray.model import ops
from tests.conftest import REPO


@pytest.mark.slow  # four parts, two of them spawning 2 ranks: ~100 s on the shared 2 cores
def test_gpu_check_runs_on_cpu_and_writes_its_report(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MENTOR_RAY_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "mentor_ray.bench", "gpu", "--out", str(out), "--device", "cpu",
         "--datasets", "synth-tiny", "--epochs", "1", "--warmup", "1"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] and report["environment"]["device"] == "cpu"
    assert [r["model"] for r in report["agreement"]] == ["mentor (all scope)", "mentor (batch scope)", "lightgcn"]
    mentor = report["agreement"][0]
    assert {"bpr", "reg", "align", "mask_f", "perturb_g", "loss"} <= set(mentor["terms"])
    assert mentor["params_with_grad"] > 0 and mentor["worst_grad_rel_err"] <= 1e-4
    assert [(r["dataset"], r["model"]) for r in report["timings"]] == [
        ("synth-tiny", gpucheck._label(v, scope)) for v, scope in gpucheck.TIMED]
    assert {"lattice", "freedom", "mmgcn", "lgmrec"} <= {r["model"] for r in report["timings"]}  # Table 3's
    assert all(r["seconds_per_epoch"] > 0 and r["peak_rss_mb"] > 0 and len(r["epoch_seconds"]) == 1
               for r in report["timings"])
    assert report["ddp"]["ok"] and report["ddp"]["backend"] == "gloo" and report["ddp"]["watchdog"] == "exited"
    # (d): the world size 2 path with gloo on the CPU, as NCCL runs it on two GPUs
    scaling = report["scaling"]
    assert scaling["ok"] and scaling["backend"] == "gloo" and report["complete"]
    assert [r["model"] for r in scaling["rows"]] == ["mentor (all scope)", "mentor (batch scope)"]
    for r in scaling["rows"]:
        assert r["speedup"] > 0 and r["watchdog"] == {"1": "exited", "2": "exited"}, r
        assert {"propagation", "batch terms", "backward", "optimizer"} <= set(r["world1"]["step_parts"])
        assert "all-reduce" in r["world2"]["step_parts"] and "all-reduce" not in r["world1"]["step_parts"]
    assert scaling["rows"][0]["loss_rel_err"] <= 1e-4 and "infonce" in scaling["rows"][0]["world2"]["step_parts"]
    md = (out / "gpu_check.md").read_text()
    assert "#### (a)" in md and "#### (b)" in md and "#### (c)" in md and "| synth-tiny | 60 |" in md
    assert "#### (d)" in md and "| synth-tiny | mentor (all scope) |" in md
    assert "|:---|---:|---:|:---|---:|" in md  # dataset, users, items, model, s / epoch: text left, numbers right
    assert "#### (a)" in proc.stdout and "|" not in proc.stdout and "`" not in proc.stdout  # plain text printed


def test_random_tape_replays_the_recorded_draws():
    tape = gpucheck.RandomTape()
    x = torch.ones(50, 8)
    with tape.installed():
        a = ops.uniform(50, 8)
        da = torch.nn.functional.dropout  # untouched: only the losses' module is redirected
        from mentor_ray.model import losses

        ma = losses.F.dropout(x, p=0.5, training=True)
    tape.replay()
    with tape.installed():
        b = ops.uniform(50, 8)
        mb = losses.F.dropout(x, p=0.5, training=True)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert set(ma.unique().tolist()) <= {0.0, 2.0} and 0 < int((ma == 0).sum()) < 400
    assert ops.uniform is not tape.uniform and da is torch.nn.functional.dropout  # restored


def test_agreement_check_fails_when_the_runs_draw_different_noise(monkeypatch):
    """Without the replay the device run draws its own noise: MENTOR's terms differ, LightGCN's do not."""
    monkeypatch.setattr(gpucheck.RandomTape, "replay", lambda self: None)
    monkeypatch.setattr(gpucheck.RandomTape, "_next", lambda self, make: make())
    rows = {r["model"]: r for r in gpucheck.check_agreement("cpu")}
    assert not rows["mentor (all scope)"]["ok"] and rows["mentor (all scope)"]["worst_term_rel_err"] > 1e-4
    assert rows["lightgcn"]["ok"]


def test_local_wheels_are_unpacked_and_imported(tmp_path, monkeypatch):
    wheels = tmp_path / ".whl"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "mentor_fake_pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("mentor_fake_pkg/__init__.py", "VALUE = 42\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert gpucheck.use_local_wheels("mentor_fake_pkg", wheels) == f"mentor_fake_pkg from 1 wheels in {wheels}"
    import mentor_fake_pkg

    assert mentor_fake_pkg.VALUE == 42 and (wheels / "site" / ".unpacked").exists()
    assert gpucheck.use_local_wheels("mentor_fake_pkg", wheels) is None  # importable now: nothing to do
    with pytest.raises(SystemExit, match="holds no wheels"):
        gpucheck.use_local_wheels("mentor_missing_pkg", tmp_path / "empty")
    sys.modules.pop("mentor_fake_pkg", None)


def test_cuda_requested_without_a_gpu_is_a_one_line_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    proc = subprocess.run([sys.executable, "-m", "mentor_ray.bench", "gpu", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --device cuda: torch sees no CUDA device")


def _h200_report() -> dict:
    row = lambda ds, model, s, mb: {"dataset": ds, "model": model, "users": 1, "items": 1, "seconds_per_epoch": s,  # noqa: E731
                                    "eval_seconds": 0.1, "peak_allocated_mb": mb, "peak_reserved_mb": mb,
                                    "peak_rss_mb": None}
    report = {
        "command": "python -m mentor_ray.bench gpu --out x", "wall_seconds": 60, "epochs": 3, "warmup": 1,
        "environment": {"gpu": "NVIDIA H200", "device": "cuda:0", "cpu_cores": 16, "python": "3.12",
                        "torch": "2.11", "cuda": "13.0", "numpy": "2.3", "date": "2026-11-30"},
        "agreement": [], "ddp": {"backend": "nccl", "loss_ddp": 1.0, "loss_plain": 1.0, "loss_rel_err": 0.0,
                                  "param_rel_err": 0.0, "ok": True},
        "timings": [row("synth-baby", "mentor (all scope)", 0.5, 1500), row("synth-baby", "lightgcn", 0.1, 100),
                    row("synth-clothing", "mentor (all scope)", 2.0, 5000)],
    }
    return report


def test_report_compares_with_the_papers_table3_on_a_gpu():
    md = gpucheck.markdown(_h200_report())
    assert "### GPU check: NVIDIA H200" in md
    assert "| synth-baby | 6.07 | 7.12 | 0.500 | 1.46 | <= 0.6 s and <= 2.0 GB: met |" in md
    assert "| synth-clothing | 11.39 | 12.99 | 2.000 | 4.88 | <= 4.0 GB: NOT met |" in md


def test_a_numbered_cuda_device_gives_a_cuda_config():
    cfg = gpucheck._config("mentor", "all", "cuda:0", "synth-tiny", None, patience=5)
    assert (cfg.device, cfg.infonce_scope, cfg.patience) == ("cuda", "all", 5)


def test_the_report_renders_without_pandas(tmp_path):
    """The GPU node has torch, numpy, pyarrow, pyyaml and pydantic only: the report's tables (Markdown, and plain
    text for the terminal) are rendered by the one renderer without pandas."""
    code = f"""
import builtins, importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pandas", "jinja2"):
            raise ImportError("refused: " + name)
sys.meta_path.insert(0, Refuse())
from mentor_ray.benchmarks import gpucheck
from mentor_ray.report import render
report = json.loads({json.dumps(json.dumps(_h200_report()))})
md, text = gpucheck.markdown(report), render.block_text(gpucheck.report_block(report))
assert "| synth-baby | 6.07 | 7.12 | 0.500 | 1.46 | <= 0.6 s and <= 2.0 GB: met |" in md, md
assert "<= 0.6 s and <= 2.0 GB: met" in text and "|" not in text, text
assert not [m for m in sys.modules if m.split(".")[0] in ("pandas", "jinja2")]
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_variants_name_the_models_part_b_times():
    """--variants: Table 3's by default, any registry variant besides (MMSSL's and DiffMM's cost on a node is
    what a --paper sweep's plan needs), MENTOR's scope after a colon; a name that is no variant is one line."""
    from mentor_ray.common.errors import ConfigError

    assert gpucheck.parse_models("table3") == list(gpucheck.TIMED)
    assert gpucheck.parse_models("table3,mmssl,diffmm") == [*gpucheck.TIMED, ("mmssl", None), ("diffmm", None)]
    assert gpucheck.parse_models("mentor,mentor:batch,mentor") == [("mentor", "all"), ("mentor", "batch")]
    for bad, said in (("mmsl", "'mmsl' is not a variant"), ("lightgcn:batch", "MENTOR's only"),
                      ("mentor:half", "MENTOR's only"), ("", "'' is not a variant")):
        with pytest.raises(ConfigError, match=said):
            gpucheck.parse_models(bad)


def test_part_b_times_the_models_asked():
    rows = gpucheck.time_training("cpu", [("synth-tiny", None)], epochs=1, warmup=0,
                                  models=gpucheck.parse_models("mmssl,diffmm"))
    assert [r["model"] for r in rows] == ["mmssl", "diffmm"] and all(r["seconds_per_epoch"] > 0 for r in rows)


def test_bench_gpu_unpacks_pydantic_before_anything_imports_it(tmp_path):
    """The GPU node has no pydantic: `bench gpu` makes it importable from .whl/ (use_local_wheels) before its
    parser and flag checks import the registries that need it. Simulated: pydantic refused until the (patched)
    unpacking lifts the refusal; the check itself (run_check) is patched to return."""
    code = f"""
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pydantic":
            raise ImportError("refused: " + name)
refuse = Refuse()
sys.meta_path.insert(0, refuse)
from mentor_ray import bench
from mentor_ray.benchmarks import gpucheck
def unpack(*a, **k):
    sys.meta_path.remove(refuse)
    return "pydantic from 5 wheels in .whl"
gpucheck.use_local_wheels = unpack
gpucheck.run_check = lambda *a, **k: 0
print("rc", bench.main(["gpu", "--out", {str(tmp_path / 'gc')!r}, "--datasets", "synth-tiny", "--epochs", "1",
                        "--variants", "mentor,mmssl"]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0 and "rc 0" in out.stdout, out.stderr[-2000:]
