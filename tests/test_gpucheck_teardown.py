"""The GPU check never hangs: its DDP parts run in child processes under a watchdog, each part's findings are
written as it ends, and the process group is torn down in an order that cannot deadlock (Trainer.release_ddp).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mentor_ray.benchmarks import gpucheck


def _write(result: str, value: dict) -> None:
    from mentor_ray.common.io import write_json_atomic

    write_json_atomic(Path(result), value)


def _hangs_after_its_result(rank: int, world: int, result: str) -> None:
    _write(result, {"measured": 42, "done": True})
    time.sleep(3600)  # a teardown that never returns


def _hangs_before_its_result(rank: int, world: int, result: str) -> None:
    _write(result, {"measured": 1})  # a first part, then nothing
    time.sleep(3600)


def _raises(rank: int, world: int, result: str) -> None:
    if rank == 1:
        raise RuntimeError("rank 1 broke")
    time.sleep(3600)  # rank 0 would wait for rank 1 in a collective


def _trains_and_tears_down(rank: int, world: int, result: str) -> None:
    """Two gloo ranks train MENTOR for an epoch through DDP, then the ordered teardown, as (d) does."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mentor_ray.common.config import make_config
    from mentor_ray.training.trainer import Trainer

    dist.init_process_group("gloo", init_method=f"file://{result}.pg", rank=rank, world_size=world)
    cfg = make_config(flags={"dataset": "synth-tiny", "variant": "mentor"}, overrides=["embedding_dim=8"])
    trainer = Trainer(cfg, rank=rank, world_size=world)
    out = trainer.train_epoch(0)
    assert isinstance(trainer.step, DistributedDataParallel)
    trainer.release_ddp()
    assert not isinstance(trainer.step, DistributedDataParallel)
    trainer.release_ddp()  # a second call: nothing left to release
    if rank == 0:
        _write(result, {"loss": out["loss"], "done": True})
    gpucheck._teardown(trainer)
    assert not dist.is_initialized()


def test_a_teardown_that_hangs_after_the_result_is_killed_and_the_result_kept(tmp_path):
    t0 = time.monotonic()
    found = gpucheck.run_ranks(_hangs_after_its_result, 1, tmp_path / "r.json", grace=1.0, timeout=120)
    assert found["measured"] == 42 and found["watchdog"] == "killed after its result (teardown hung)"
    assert "error" not in found and time.monotonic() - t0 < 60


@pytest.mark.slow  # waits out its 15 s timeout
def test_a_part_that_hangs_is_timed_out_with_what_it_wrote(tmp_path):
    found = gpucheck.run_ranks(_hangs_before_its_result, 1, tmp_path / "r.json", timeout=15)
    assert found["watchdog"] == "timed out" and found["measured"] == 1 and "timed out after" in found["error"]


def test_a_rank_that_fails_ends_the_part_with_its_error(tmp_path):
    found = gpucheck.run_ranks(_raises, 2, tmp_path / "r.json", timeout=120)
    assert found["watchdog"] == "failed" and found["error"] == "RuntimeError: rank 1 broke"
    assert not list(tmp_path.glob("*.pg"))  # the rendezvous file is gone: a re-run starts a fresh group


@pytest.mark.slow  # two processes training MENTOR: ~20 s on 2 cores
def test_ddp_ranks_release_and_destroy_in_order_and_exit(tmp_path):
    from mentor_ray.datasets.dataset import load_dataset

    load_dataset("synth-tiny")  # generated once, before the ranks read it
    found = gpucheck.run_ranks(_trains_and_tears_down, 2, tmp_path / "r.json", timeout=300)
    assert found["watchdog"] == "exited" and found["done"] and found["loss"] > 0, found


def test_a_report_cut_short_renders_what_it_has(tmp_path):
    report = {"command": "cmd", "wall_seconds": 3.0, "epochs": 1, "warmup": 0, "complete": False,
              "environment": {"gpu": None, "device": "cpu", "cpu_cores": 2, "python": "3.11", "torch": "2.2",
                              "cuda": None, "numpy": "1.26", "date": "2026-12-06"},
              "agreement": [{"model": "lightgcn", "terms": ["bpr"], "worst_term_rel_err": 0.0,
                             "worst_grad_rel_err": 0.0, "worst_metric_abs_err": 0.0, "ok": True}]}
    gpucheck._save(tmp_path, report)
    md = (tmp_path / "gpu_check.md").read_text()
    assert "Incomplete" in md and "#### (a)" in md and "#### (b)" not in md and "#### (c)" not in md
    assert json.loads((tmp_path / "gpu_check.json").read_text())["complete"] is False
    report.update(complete=True, ddp={"backend": "gloo", "error": "timed out after 1800 s", "watchdog": "timed out",
                                      "ok": False},
                  scaling={"skipped": "skipped: 1 GPU visible, world size 2 needs 2", "rows": []})
    md = gpucheck.markdown(report)
    assert "FAILED: timed out after 1800 s (watchdog: timed out)." in md
    assert "skipped: 1 GPU visible, world size 2 needs 2." in md and "Incomplete" not in md


def test_the_check_writes_each_part_as_it_ends(tmp_path, monkeypatch):
    """A check stopped in (c) has written (a) and (b) already."""
    from mentor_ray.common.errors import MentorRayError

    monkeypatch.setattr(gpucheck, "check_agreement", lambda device: [])
    monkeypatch.setattr(gpucheck, "time_training", lambda device, sets, epochs, warmup, on_row, models: on_row(
        {"dataset": "synth-tiny", "model": "lightgcn", "users": 60, "items": 40, "seconds_per_epoch": 0.1,
         "eval_seconds": 0.0, "peak_allocated_mb": None, "peak_reserved_mb": None, "peak_rss_mb": 1.0}))

    def stop(*a, **k):
        raise MentorRayError("stopped in (c)")

    monkeypatch.setattr(gpucheck, "check_ddp", stop)
    with pytest.raises(MentorRayError):
        gpucheck.run_check(tmp_path, "cpu", ["synth-tiny"], None, 1, 0, "cmd")
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["complete"] is False and report["timings"][0]["model"] == "lightgcn" and "ddp" not in report
    assert "#### (b)" in (tmp_path / "gpu_check.md").read_text()


def test_fewer_than_two_gpus_skip_the_world_size_comparison_with_a_note(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    found = gpucheck.check_scaling("cuda:0", [("synth-tiny", None)], 1, 0, tmp_path)
    assert found == {"skipped": "skipped: 1 GPU visible, world size 2 needs 2", "rows": []}

