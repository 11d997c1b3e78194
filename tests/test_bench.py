"""Benchmark plumbing: Markdown blocks are replaced in place, never duplicated."""

import pytest

from mentor_ray.benchmarks.bench import upsert_block


def test_upsert_appends_then_replaces(tmp_path):
    md = tmp_path / "b.md"
    md.write_text("# Benchmarks\n\nintro\n")
    upsert_block(md, "graphs:x", "first")
    upsert_block(md, "other", "kept")
    upsert_block(md, "graphs:x", "second")
    text = md.read_text()
    assert text.count("<!-- bench:graphs:x -->") == 1 and "second" in text and "first" not in text
    assert "kept" in text and text.startswith("# Benchmarks\n\nintro")
    assert text.index("second") < text.index("kept")  # replaced in place, not moved to the end


def test_ddp_traffic_is_every_trainable_parameter_in_float32():
    from mentor_ray.benchmarks.bench import gradient_bytes
    from mentor_ray.datasets.dataset import load_dataset

    ds = load_dataset("synth-tiny")
    params, nbytes = gradient_bytes("synth-tiny", None, "lightgcn", ["embedding_dim=8"])
    assert params == (ds.n_users + ds.n_items) * 8  # LightGCN: the ID embeddings only
    assert nbytes == 4 * params


def test_gloo_allreduce_timing_runs_between_two_processes():
    from mentor_ray.benchmarks.bench import allreduce_seconds

    assert 0 < allreduce_seconds(10_000, reps=3) < 10


# --------------------------------------------------------------------------- the benchmark tables


def sample_results() -> dict:
    """A result of every benchmark, shaped as its ``bench_*`` function returns it (made up, nothing measured)."""
    nan = float("nan")
    summary = {"device": "cpu", "seconds_per_epoch": 1.234, "eval_seconds": 0.41, "peak_rss_mb": 1234.0,
               "peak_gpu_mb": None, "rss_start_mb": 1000.0, "epochs_run": 3, "valid": {"recall@20": 0.05123},
               "config": {"dataset": "synth-tiny", "data_root": None, "batch_size": 256}}
    return {
        "graphs": {"cold": {"build_seconds": {"ui": 0.12, "knn": 0.5}, "item_edges": {"v": 4000, "t": 4000},
                            "builder": "torch", "ui_edges": 10_000, "graph_seconds": 0.623, "peak_rss_mb": 812.0,
                            "load_seconds": 0.2},
                   "cold_wall": 3.25, "warm": {"graph_seconds": 0.004, "peak_rss_mb": 700.0}, "warm_wall": 2.1},
        "train": {"summary": summary, "graphs": {"graph_seconds": 0.6}, "wall": 10.0},
        "models": {"rows": [{"variant": "lightgcn", "seconds_per_epoch": 0.5, "peak_rss_mb": 900.0, "model_mb": 50.0,
                             "peak_gpu_mb": None, "epochs": 3, "device": "cpu", "wall": 9.0},
                            {"variant": "lattice", "error": "benchmark training run failed: MemoryError"},
                            {"variant": "mentor", "seconds_per_epoch": 2.0, "peak_rss_mb": 1500.0, "model_mb": 400.0,
                             "peak_gpu_mb": None, "epochs": 3, "device": "cpu", "wall": 20.0}],
                   "threads": 1, "epochs": 3},
        "ray": {"runs": [{"workers": 1, "summary": summary, "wall": 30.0},
                         {"workers": 2, "summary": {**summary, "seconds_per_epoch": 0.8}, "wall": 25.0,
                          "cpu": {"workers_cores": 1.81, "other_cores": 0.17, "seconds": 20.0}}],
                "params": 12_345, "grad_bytes": 49_380, "allreduce_s": 0.0012},
        "tune": {"rows": [{"workers": 1, "trials": 3, "first": 5.0, "gap": 1.2, "run": 3.0, "epoch": 0.5,
                           "wall": 20.0},
                          {"workers": 2, "trials": 3, "first": 9.0, "gap": nan, "run": 4.0, "epoch": 0.7,
                           "wall": 31.0}], "epochs": 1},
        "search": {"grid": {"points": 8, "epochs": 80, "seconds": 100.0, "epochs_per_point": 10, "best": 0.1,
                            "best_point": {"dropout": 0.3}}, "seeds": [0, 1], "max_fraction": 0.5, "concurrency": 2,
                   "processes": 1, "machine": "test (2 CPUs)", "date": "2026-01-01", "space": "smoke",
                   "dataset": "synth-tiny",
                   "rows": [{"searcher": "grid", "target_met": 0, "reach_fraction": [nan, nan],
                             **{f"best@{f:g}": [0.09, nan] for f in (0.05, 0.1, 0.25, 0.5)},
                             **{f"seconds@{f:g}": [10.0, 12.0] for f in (0.05, 0.1, 0.25, 0.5)}},
                            {"searcher": "tpe+asha", "target_met": 2, "reach_fraction": [0.08, 0.06],
                             **{f"best@{f:g}": [0.099, 0.1] for f in (0.05, 0.1, 0.25, 0.5)},
                             **{f"seconds@{f:g}": [10.0, 11.0] for f in (0.05, 0.1, 0.25, 0.5)}}]},
        "faults": {"rows": [{"case": "worker", "identical": True, "duplicated": 0, "missing": 0, "extra": 0,
                             "left_before": 2, "left_after": 0, "runs": 18, "reference_runs": 18, "wall": 120.0,
                             "note": "resumed from epoch 2"},
                            {"case": "two-drivers", "identical": False, "duplicated": 1, "missing": 0, "extra": 0,
                             "left_before": 0, "left_after": 0, "runs": 19, "reference_runs": 18, "wall": 60.0,
                             "note": ""}]},
        "warmstart": {"dataset": "tiktok", "budget": 150, "max_epochs": 100, "work": "w", "overrides": {},
                      "seeds": [0, 1],
                      "rows": [{"space": "lightgcn_grid", "model": "lightgcn", "mode": mode, "seed": seed,
                                "trials": 4, "epochs": 149, "best": best, "known": 0.11, "share": best / 0.11,
                                "point": {"lr": 0.005}, "first": {"lr": 0.001}}
                               for mode, seed, best in (("warm", 0, 0.1), ("cold", 0, 0.1), ("warm", 1, 0.108),
                                                        ("cold", 1, 0.09))]},
    }


def sample_blocks() -> dict:
    """Every benchmark's block (:mod:`mentor_ray.report.render`), from :func:`sample_results`."""
    from mentor_ray.benchmarks import bench, faults, search, warmstart

    res = sample_results()
    return {
        "warmstart": warmstart.warmstart_block(res["warmstart"], "cmd"),
        "graphs": bench.graphs_block(res["graphs"], "cmd", "synth-tiny", 10, "row"),
        "train": bench.train_block(res["train"], "cmd", "synth-tiny", "mentor", []),
        "models": bench.models_block(res["models"], "cmd", "synth-baby", []),
        "ray": bench.ray_block(res["ray"], "cmd", "synth-tiny", "mentor", 2, []),
        "tune": bench.tune_block(res["tune"], "cmd", "synth-tiny"),
        "search": search.search_block(res["search"], "cmd"),
        "faults": faults.faults_block(res["faults"], "cmd"),
    }


def test_every_benchmark_table_is_typed_and_rendered_by_the_one_renderer():
    from mentor_ray.benchmarks import bench, faults, search
    from mentor_ray.report import render

    blocks, res = sample_blocks(), sample_results()
    for name, block in blocks.items():
        md, text = render.block_md(block), render.block_text(block)
        assert md.startswith("### ") and not md.startswith("### #") and block.tables(), name
        for table in block.tables():
            align = "|" + "|".join("---:" if c.right else ":---" for c in table.columns) + "|"
            assert align in md, name  # numbers right-aligned, text left
            assert any(c.right for c in table.columns), name
        for markup in ("**", "`", "<u>", "\\*", "|---"):
            assert markup not in text, (name, markup)
    assert bench.models_markdown(res["models"], "cmd", "synth-baby", []) == render.block_md(blocks["models"])
    assert search.search_markdown(res["search"], "cmd") == render.block_md(blocks["search"])
    assert faults.faults_markdown(res["faults"], "cmd") == render.block_md(blocks["faults"])


def test_benchmark_time_tables_say_that_times_move_with_the_machines_load():
    for name in ("graphs", "train", "models", "ray", "tune", "search"):
        table = sample_blocks()[name].tables()[0]
        assert "vary with what else runs on it (up to 3x" in table.note and "ratios measured in one run" in table.note


def test_table3_gives_ratios_to_mentor_and_the_papers_and_a_failed_model_its_error():
    from mentor_ray.report import render

    text = "\n".join(line for line in render.block_md(sample_blocks()["models"]).splitlines() if line.startswith("| "))
    # LightGCN: 0.5 / 2.0 s and 50 / 400 MB of MENTOR's; the paper's Table 3 has no LightGCN (a dash)
    assert "| LightGCN | 0.50 | 0.25 | – | 900 | 50 | 0.12 | – |  |" in text
    assert "| MENTOR | 2.00 | 1.00 | 1.00 | 1,500 | 400 | 1.00 | 1.00 |  |" in text
    assert "| LATTICE | – | – | – | – | – | – | – | failed: benchmark training run failed: MemoryError |" in text


def test_search_cells_count_the_seeds_without_a_value():
    from mentor_ray.report import render

    md = render.block_md(sample_blocks()["search"])
    assert "| grid | 0.0900 ± 0.0000 (1 none) |" in md
    assert "| 0 / 2 | > 50% |" in md and "| 2 / 2 | 7% |" in md  # tpe+asha: median of 8% and 6%


def test_warm_start_seeds_are_summed_up_per_space_and_start():
    """With several searcher seeds, a second table: per space and start, the mean and lowest share of the best
    known and how many seeds reach 97% (0.108 / 0.11 = 98.2% does, 0.1 / 0.11 = 90.9% does not)."""
    from mentor_ray.report import render

    md = render.block_md(sample_blocks()["warmstart"])
    assert "| lightgcn_grid | warm | 2 | 94.5% | 90.9% | 1 |" in md
    assert "| lightgcn_grid | cold | 2 | 86.4% | 81.8% | 0 |" in md
    assert "| lightgcn_grid | warm | 1 | 4 | 149 | 0.1080 | 0.1100 | 98.2% | yes |" in md
    assert "--seed {0,1}" in md


def test_tree_cpu_counts_only_the_intervals_in_which_the_workers_trained():
    """Cores by role over the sampled intervals where the workers used at least half a core each: Ray's start
    (workers idle) does not count; an exited process's last reading stays in the totals."""
    from mentor_ray.benchmarks.bench import TreeCPU

    cpu = TreeCPU(pid=0, workers=2)
    # (time, workers' cumulative CPU s, others' cumulative CPU s, training threads' s on a CPU and waiting for
    # one): 10 s of start-up, then 20 s of training
    cpu.samples = [(0.0, 0.0, 0.0, 0.0, 0.0), (10.0, 0.5, 8.0, 0.4, 0.0), (20.0, 18.5, 9.0, 17.4, 1.6),
                   (30.0, 36.5, 10.0, 35.4, 3.2)]
    got = cpu.shares()
    assert got == pytest.approx({"workers_cores": 1.8, "other_cores": 0.1, "seconds": 20.0, "thread_running": 0.875,
                                 "thread_waiting": 0.08, "thread_asleep": 0.045})
    assert TreeCPU(pid=0, workers=2).shares() is None  # nothing sampled
    cpu.samples = [(t, w, o, 0.0, 0.0) for t, w, o, _, _ in cpu.samples]  # no per-thread counters
    assert cpu.shares()["thread_waiting"] is None and cpu.shares()["thread_asleep"] is None


def test_tree_cpu_follows_a_process_tree_by_role(tmp_path):
    """A real tree: a parent and its child burning CPU, counted as the rest (neither is a worker actor)."""
    import subprocess
    import sys
    import textwrap

    from mentor_ray.benchmarks.bench import TreeCPU

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass\n"
    script = tmp_path / "tree.py"
    script.write_text(textwrap.dedent(f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", {burn!r}], executable=sys.executable)
        {burn.replace(chr(10), chr(10) + "        ")}
        child.wait()
    """))
    proc = subprocess.Popen([sys.executable, str(script)])
    cpu = TreeCPU(proc.pid, workers=1, every=0.1)
    cpu.follow(proc)
    assert proc.returncode == 0
    assert len(cpu.last) == 2  # the parent and its child
    assert cpu.total[True] == 0.0  # neither is titled ray::...TrainWorker
    assert cpu.total[False] > 2.0  # both burned 1.5 s (the last sample may miss the end)
    assert TreeCPU._is_worker("ray::RayTrainWorker.run_train_fn()") and not TreeCPU._is_worker("ray::IDLE")


def test_tree_cpu_gives_a_process_that_becomes_a_worker_its_later_intervals_only(monkeypatch):
    """A pooled Ray process (``ray::IDLE``) turned into a worker actor: its CPU before the change stays with the
    rest, after it goes to the workers; neither total ever falls."""
    import types

    import psutil

    from mentor_ray.benchmarks.bench import TreeCPU

    readings = iter([("ray::IDLE", 1.0), ("ray::RayTrainWorker.run()", 3.0), ("ray::RayTrainWorker.run()", 6.0)])

    class Fake:
        pid = 7

        def __init__(self, pid):
            self.title, self.cpu = next(readings)

        def children(self, recursive):
            return []

        def oneshot(self):
            import contextlib
            return contextlib.nullcontext()

        def cpu_times(self):
            return types.SimpleNamespace(user=self.cpu, system=0.0)

        def cmdline(self):
            return [self.title]

        def nice(self):
            return 15

    monkeypatch.setattr(psutil, "Process", Fake)
    cpu = TreeCPU(pid=7, workers=1)
    for _ in range(3):
        cpu.sample()
    assert [s[1:3] for s in cpu.samples] == [(0.0, 1.0), (2.0, 1.0), (5.0, 1.0)]


def test_tree_cpu_lowers_the_rest_of_the_run_only_once_every_worker_is_up(monkeypatch):
    """``nice``: nothing is lowered while fewer worker actors than asked exist (a process a lowered raylet
    starts would inherit it, and could not be raised back); then every thread of every other process is, once
    each, and the workers never."""
    import contextlib
    import os
    import types

    import psutil

    from mentor_ray.benchmarks.bench import TreeCPU

    titles = {1: "python -m mentor_ray.train", 2: "raylet", 3: "ray::IDLE", 4: "ray::IDLE"}
    lowered: list[tuple[int, int]] = []

    class Fake:
        def __init__(self, pid):
            self.pid = pid

        def children(self, recursive):
            return [Fake(pid) for pid in titles if pid != 1]

        def oneshot(self):
            return contextlib.nullcontext()

        def cpu_times(self):
            return types.SimpleNamespace(user=1.0, system=0.0)

        def cmdline(self):
            return [titles[self.pid]]

        def threads(self):
            return [types.SimpleNamespace(id=self.pid * 10 + k) for k in range(2)]

        def nice(self):
            return 0

    monkeypatch.setattr(psutil, "Process", Fake)
    monkeypatch.setattr(os, "setpriority", lambda which, tid, level: lowered.append((tid // 10, level)))
    cpu = TreeCPU(pid=1, workers=2, nice=19)
    cpu.sample()
    assert lowered == []  # no worker yet
    titles[3] = "ray::RayTrainWorker.__init__"
    cpu.sample()
    assert lowered == []  # one of two
    titles[4] = "ray::RayTrainWorker.__init__"
    titles[5] = "ray::TrainController"
    cpu.sample()
    assert sorted(lowered) == [(1, 19), (1, 19), (2, 19), (2, 19), (5, 19), (5, 19)]  # each thread
    cpu.sample()
    assert len(lowered) == 6 and cpu.reniced == {1, 2, 5}  # once each
    assert cpu.worker_nice == {0}
    assert TreeCPU(pid=1, workers=2).nice is None  # off unless asked


def test_tree_cpu_lowers_every_thread_of_a_real_child(tmp_path):
    """On a real tree each thread of the lowered process runs at the level asked (a nice level is a thread's:
    lowering the pid alone would leave its other threads as they were); workers=0: lowered at once."""
    import os
    import subprocess
    import sys

    import psutil

    from mentor_ray.benchmarks.bench import TreeCPU

    code = ("import threading, time; threading.Thread(target=time.sleep, args=(30,)).start(); "
            "print(1, flush=True); time.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"1"  # its second thread is up
        cpu = TreeCPU(proc.pid, workers=0, nice=7)
        cpu.sample()
        threads = psutil.Process(proc.pid).threads()
        assert len(threads) >= 2
        want = max(7, os.getpriority(os.PRIO_PROCESS, 0))
        assert [os.getpriority(os.PRIO_PROCESS, t.id) for t in threads] == [want] * len(threads)
        assert cpu.reniced == {proc.pid}
    finally:
        proc.kill()
        proc.wait()


def test_workers_first_bullet_names_the_levels_the_workers_ran_at():
    from mentor_ray.benchmarks.bench import workers_first_text

    text = workers_first_text([{"worker_nice": [0], "reniced": 26}, {"worker_nice": [0], "reniced": 25}])
    assert "worker actors at nice 0 (Ray's default is 15)" in text and "nice 19" in text and "(26, 25 " in text
    assert "at nice 0, 15 " in workers_first_text([{"worker_nice": [0, 15]}])  # a worker Ray lowered shows


def test_tree_cpu_follows_the_busiest_thread_of_a_worker(tmp_path):
    """The training-thread shares come from the kernel's counters of the process's busiest thread: a process
    with a spinning thread and a sleeping one is counted by the spinning one (it ran, it never slept long)."""
    import os
    import subprocess
    import sys

    from mentor_ray.benchmarks.bench import TreeCPU

    if not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat"):
        pytest.skip("no per-thread scheduler counters (/proc/<pid>/task/<tid>/schedstat) on this system")
    code = ("import threading, time\n"
            "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
            "t = time.process_time()\n"
            "while time.process_time() - t < 3: pass\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        cpu = TreeCPU(proc.pid, workers=1, every=0.2)
        cpu._is_worker = staticmethod(lambda title: True)  # stands for a worker actor
        cpu.follow(proc)
    finally:
        proc.kill()
        proc.wait()
    got = cpu.shares()
    assert got is not None and got["thread_running"] > 0.2, got  # the sleeping thread would be ~0
    assert got["thread_running"] + got["thread_waiting"] + got["thread_asleep"] == pytest.approx(1.0, abs=0.05)
