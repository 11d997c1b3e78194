"""The opt-in per-part step timer (ops.StepTimer): nothing when off, exclusive part times when on, the same
numbers either way, and what `bench ray` prints from it."""

from __future__ import annotations

import time

from mentor_ray.model import ops


def test_marks_are_a_shared_no_op_while_no_timer_runs():
    assert ops.part("propagation") is ops.part("infonce") is ops._OFF
    with ops.part("anything"):
        pass


def test_nested_parts_are_timed_exclusively():
    with ops.step_timer() as timer:
        for _ in range(2):
            with ops.part("outer"):
                time.sleep(0.02)
                with ops.part("inner"):
                    time.sleep(0.05)
    assert ops.part("x") is ops._OFF  # uninstalled on leaving
    assert timer.calls == {"outer": 2, "inner": 2}
    assert 0.09 <= timer.seconds["inner"] < 0.5
    assert 0.03 <= timer.seconds["outer"] < timer.seconds["inner"]  # the inner sleeps are not counted twice
    assert ops.replicated_share({"propagation": 1.0, "backward": 1.0, "infonce": 2.0}) == 0.5
    assert ops.replicated_share({}) == 0.0


def _fit(monkeypatch, timed: bool):
    from mentor_ray.common.config import make_config
    from mentor_ray.training.trainer import STEP_TIMER_ENV, Trainer

    if timed:
        monkeypatch.setenv(STEP_TIMER_ENV, "1")
    else:
        monkeypatch.delenv(STEP_TIMER_ENV, raising=False)
    cfg = make_config(flags={"dataset": "synth-tiny", "variant": "mentor"},
                      overrides=["embedding_dim=8", "max_epochs=2", "batch_size=256"])
    trainer = Trainer(cfg)
    return trainer, trainer.fit()


def test_the_trainer_times_mentors_parts_on_request_and_trains_the_same(monkeypatch):
    plain, summary = _fit(monkeypatch, timed=False)
    assert "step_parts" not in summary and plain.step_parts == []
    timed, timed_summary = _fit(monkeypatch, timed=True)
    parts = timed_summary["step_parts"]
    assert set(parts) == {"propagation", "batch terms", "align, mask", "infonce", "forward", "backward", "optimizer"}
    assert set(parts) <= set(ops.STEP_PARTS) and all(v >= 0 for v in parts.values())
    assert len(timed.step_parts) == 2  # one record per epoch; the summary's is the median after the first
    assert [h["train"]["loss"] for h in timed.history] == [h["train"]["loss"] for h in plain.history]
    assert timed_summary["valid"] == summary["valid"]


def test_bench_ray_prints_the_parts_when_the_runs_have_them():
    from mentor_ray.benchmarks import bench
    from mentor_ray.report import render
    from tests.test_bench import sample_results

    res = sample_results()["ray"]
    md = render.block_md(bench.ray_block(res, "cmd", "synth-tiny", "mentor", 2, []))
    assert "speed-up over 1 worker(s)" in md and "per-part" not in md.lower()
    assert "| 2 | 1.00 | 0.80 |" in md and "| 1.54 |" in md  # 1.234 s against 0.8 s per epoch
    for run, infonce in zip(res["runs"], (0.02, 0.01)):
        run["summary"] = {**run["summary"], "step_parts": {"propagation": 0.01, "infonce": infonce, "backward": 0.01,
                                                           "optimizer": 0.0}}
    md = render.block_md(bench.ray_block(res, "cmd", "synth-tiny", "mentor", 2, []))
    assert "Per step, ms, on rank 0 (`MENTOR_RAY_STEP_TIMER=1`" in md
    assert "| 1 | 10.0 | 20.0 | 0.0 | 0.0 | 0.0 | 10.0 | 0.0 | 0.0 | 40.0 | 0.50 |" in md
    assert "| 2 | 10.0 | 10.0 | 0.0 | 0.0 | 0.0 | 10.0 | 0.0 | 0.0 | 30.0 | 0.67 |" in md


def test_bench_ray_shows_how_far_each_runs_metrics_are_from_the_first():
    """#29's check that N workers give the single worker's metrics (to 1e-6): the largest gap over every valid and
    test metric, against the first row's run, in its own column."""
    from mentor_ray.benchmarks import bench
    from mentor_ray.report import render
    from tests.test_bench import sample_results

    res = sample_results()["ray"]
    one, two = (r["summary"] for r in res["runs"])
    one["test"] = {"recall@20": 0.3, "ndcg@10": 0.2}
    two["valid"] = {**one["valid"], "recall@20": one["valid"]["recall@20"] + 3e-7}
    two["test"] = {**one["test"], "ndcg@10": 0.2 - 2e-6}
    assert bench.metric_gap(one, one) == 0.0
    assert abs(bench.metric_gap(two, one) - 2e-6) < 1e-12
    md = render.block_md(bench.ray_block(res, "cmd", "synth-tiny", "mentor", 2, []))
    assert "max |Δ metric| vs 1 worker(s)" in md.replace("\\|", "|")
    assert "2.0e-06" in md


def test_bench_ray_repeats_report_medians_and_each_repeats_own_speed_up():
    """--repeats: the worker counts run interleaved; a row's times and step parts are the medians over its
    repeats, its speed-up the median of the repeats' own ratios (1.25/0.8, 1.5/1.0, 1.2/0.75 -> 1.56, 1.5,
    1.6), each listed; one repeat keeps the block as it was."""
    from mentor_ray.benchmarks import bench
    from mentor_ray.report import render
    from tests.test_bench import sample_results

    res = sample_results()["ray"]
    one, two = res["runs"]
    runs = []
    for rep, (s1, s2, inf1) in enumerate(((1.25, 0.8, 0.02), (1.5, 1.0, 0.04), (1.2, 0.75, 0.03))):
        for run, sec, infonce in ((one, s1, inf1), (two, s2, inf1 / 2)):
            parts = {"propagation": 0.01, "infonce": infonce, "backward": 0.01, "optimizer": 0.0}
            runs.append({**run, "repeat": rep, "summary": {**run["summary"], "seconds_per_epoch": sec,
                                                           "step_parts": parts}})
    md = render.block_md(bench.ray_block({**res, "runs": runs}, "cmd", "synth-tiny", "mentor", 2, []))
    assert "| 1 | 2.00 | 1.25 |" in md and "| 2 | 1.00 | 0.80 |" in md  # median seconds per epoch
    assert "| 1.56 | " in md and "| 1.56, 1.50, 1.60 |" in md and "3 repeats, interleaved" in md
    assert "| 1 | 10.0 | 30.0 | 0.0 | 0.0 | 0.0 | 10.0 | 0.0 | 0.0 | 50.0 | 0.40 |" in md  # median InfoNCE 30 ms
    single = render.block_md(bench.ray_block(res, "cmd", "synth-tiny", "mentor", 2, []))
    assert "each repeat" not in single and "interleaved" not in single
