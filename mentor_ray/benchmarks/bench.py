"""Benchmarks, written to ``docs/benchmarks.md`` with the command, the machine and the date.

``bench_graphs``, ``bench_train``, ``bench_ray`` and ``bench_tune`` measure, each step in a fresh
subprocess; the ``*_block`` functions make a result a :class:`~mentor_ray.report.render.Block` (its tables
typed frames, rendered by :mod:`mentor_ray.report.render`), the ``*_markdown`` functions that block as
Markdown, and :func:`upsert_block` replaces (or appends) it in the Markdown file. The ``bench`` command
(:mod:`mentor_ray.bench`) runs them, writes the Markdown and prints the block as plain text; how they
measure: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from mentor_ray.common.errors import MentorRayError
from mentor_ray.common.io import write_atomic
from mentor_ray.report.board import LOAD_NOTE, Column, Table
from mentor_ray.report.render import Block, Bullets, block_md


def machine() -> str:
    """One line describing this machine and the key library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        dgl = f"dgl {metadata.version('dgl')}"
    except metadata.PackageNotFoundError:
        dgl = "no DGL (built-in graph builder)"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, {dgl}"
    )


def _run_module(args: list[str], what: str) -> tuple[str, float]:
    """Run ``python -m <args>`` in a fresh process; (its stdout, wall seconds). A failure raises with
    ``what`` and the last line of its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MentorRayError(f"{what} failed: {tail}")
    return proc.stdout, wall


def _run_json(args: list[str]) -> tuple[dict, float]:
    """Run ``python -m <args>`` expecting one JSON line on stdout; (parsed, wall seconds)."""
    out, wall = _run_module(args, f"benchmark step 'python -m {' '.join(args)}'")
    return json.loads(out.strip().splitlines()[-1]), wall


def bench_graphs(dataset: str, data_root: Path | None, k: int, knn_norm: str, builder: str = "auto") -> dict:
    common = ["mentor_ray.graphs", "build", "--dataset", dataset, "--k", str(k), "--knn-norm", knn_norm, "--json",
              "--builder", builder]
    if data_root is not None:
        common += ["--data-root", str(data_root)]
    print(f"[bench] preparing {dataset} (generation / parse cache, not timed)", file=sys.stderr)
    _run_json(common)  # make sure the dataset exists and its parse is cached
    print(f"[bench] cold graph build of {dataset} (k={k}, {knn_norm})", file=sys.stderr)
    cold, cold_wall = _run_json(common + ["--no-cache"])
    print(f"[bench] second call (cache hit) of {dataset}", file=sys.stderr)
    warm, warm_wall = _run_json(common)
    if not warm["from_cache"]:
        raise MentorRayError("benchmark: the second graph build was not a cache hit")
    return {"cold": cold, "cold_wall": cold_wall, "warm": warm, "warm_wall": warm_wall}


def graphs_block(res: dict, command: str, dataset: str, k: int, knn_norm: str) -> Block:
    cold, warm = res["cold"], res["warm"]
    parts = ", ".join(f"{name} {sec:.1f}s" for name, sec in cold.get("build_seconds", {}).items())
    edges = ", ".join(f"{m} {n:,}" for m, n in cold["item_edges"].items())
    builder = cold.get("builder", "dgl")
    table = Table.of("bench-graphs", f"Graph build: {dataset}",
                     [Column("call"), Column("graph stage (s)", "number", 3), Column("process wall (s)", "number", 1),
                      Column("peak RSS (MB)", "number", 0, thousands=True)],
                     [[f"first (built by {builder}; {parts})", cold["graph_seconds"], res["cold_wall"],
                       cold["peak_rss_mb"]],
                      ["second (cache hit)", warm["graph_seconds"], res["warm_wall"], warm["peak_rss_mb"]]],
                     note="Process wall time includes Python start-up, imports and loading the dataset "
                          f"({cold['load_seconds']:.1f}s from the Parquet cache and .npy files). " + LOAD_NOTE)
    return Block(f"Graph build: {dataset} (k={k}, knn_norm={knn_norm}, {builder} builder)", [
        Bullets((f"Command: `{command}`", f"Machine: {machine()}", f"Date: {dt.date.today().isoformat()}",
                 f"Graphs: user-item {cold['ui_edges']:,} directed edges; kNN {edges}")),
        table])


def graphs_markdown(res: dict, command: str, dataset: str, k: int, knn_norm: str) -> str:
    return block_md(graphs_block(res, command, dataset, k, knn_norm))


def bench_train(dataset: str, data_root: Path | None, variant: str, epochs: int, overrides: list[str],
                threads: int | None = None, cold_graphs: bool = True) -> dict:
    """Graph build (cold, own process; unless not ``cold_graphs``) and ``epochs`` training epochs (own
    process, ``threads`` torch threads if given) of one setting."""
    import tempfile

    graphs_args = ["mentor_ray.graphs", "build", "--dataset", dataset, "--json", "--no-cache"]
    train_args = ["mentor_ray.train", "--dataset", dataset, "--variant", variant, "--max-epochs", str(epochs)]
    if data_root is not None:
        graphs_args += ["--data-root", str(data_root)]
        train_args += ["--data-root", str(data_root)]
    for o in overrides:  # the graph build must use the same k and normalisation as training
        key, _, value = o.partition("=")
        if key == "knn_k":
            graphs_args += ["--k", value]
        elif key == "knn_norm":
            graphs_args += ["--knn-norm", value]
    if threads:
        train_args += ["--threads", str(threads)]
    graphs = None
    if cold_graphs:
        print(f"[bench] cold graph build of {dataset}", file=sys.stderr)
        graphs, _ = _run_json(graphs_args)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        print(f"[bench] {epochs} epochs of {variant} on {dataset} {' '.join(overrides)}", file=sys.stderr)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", *train_args, "--summary", str(out), f"patience={epochs + 1}", *overrides],
            capture_output=True, text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise MentorRayError(f"benchmark training run failed: {tail}")
        summary = json.loads(out.read_text())
    return {"graphs": graphs, "summary": summary, "wall": wall}


def train_block(res: dict, command: str, dataset: str, variant: str, overrides: list[str]) -> Block:
    s, g = res["summary"], res["graphs"]
    settings = " ".join(overrides) or "paper defaults"
    table = Table.of("bench-train", f"Training: {dataset} / {variant}",
                     [Column("graph build (s)", "number", 1), Column("s / epoch (median after the first)", "number", 2),
                      Column("eval (s, one split)", "number", 2), Column("peak RSS (MB)", "number", 0, thousands=True),
                      Column("peak GPU (MB)", "number", 0, thousands=True), Column("epochs", "number"),
                      Column("valid R@20 after them", "number", 4)],
                     [[g["graph_seconds"] if g else None, s["seconds_per_epoch"], s["eval_seconds"], s["peak_rss_mb"],
                       s.get("peak_gpu_mb") or None, s["epochs_run"], s["valid"]["recall@20"]]], note=LOAD_NOTE)
    return Block(f"Training: {dataset} / {variant} ({settings})", [
        Bullets((f"Command: `{command}`", f"Machine: {machine()}",
                 f"Date: {dt.date.today().isoformat()}; device {s['device']}")), table])


def train_markdown(res: dict, command: str, dataset: str, variant: str, overrides: list[str]) -> str:
    return block_md(train_block(res, command, dataset, variant, overrides))


# The MENTOR paper's Table 3 (GPU; memory in GB, seconds per epoch) on the Amazon sets, for the ratios beside ours.
PAPER_TABLE3 = {
    "baby": {"mmgcn": (2.69, 4.03), "lattice": (4.53, 3.13), "freedom": (2.13, 2.45), "lgmrec": (2.41, 4.05),
             "mentor_fg": (2.30, 3.22), "mentor": (7.12, 6.07)},
    "sports": {"mmgcn": (3.91, 14.47), "lattice": (19.93, 10.99), "freedom": (3.34, 5.49), "lgmrec": (3.67, 8.24),
               "mentor_fg": (3.55, 7.26), "mentor": (8.44, 9.01)},
    "clothing": {"mmgcn": (4.24, 19.83), "lattice": (28.22, 18.78), "freedom": (4.15, 6.02),
                 "lgmrec": (4.81, 9.48), "mentor_fg": (4.48, 8.08), "mentor": (12.99, 11.39)},
}


def bench_models(dataset: str, data_root: Path | None, variants: list[str], epochs: int, threads: int,
                 overrides: list[str]) -> dict:
    """Table 3 on this machine: ``epochs`` epochs of every variant, one after another, each in its own process
    with ``threads`` torch threads; seconds per epoch (median after the first) and peak memory. A model that
    fails (out of memory, say) is a row with its error, and the others go on."""
    rows = []
    for variant in variants:
        try:
            res = bench_train(dataset, data_root, variant, epochs, overrides, threads=threads, cold_graphs=False)
        except MentorRayError as exc:
            rows.append({"variant": variant, "error": str(exc)})
            continue
        s = res["summary"]
        rows.append({"variant": variant, "seconds_per_epoch": s["seconds_per_epoch"], "peak_rss_mb": s["peak_rss_mb"],
                     "model_mb": s["peak_rss_mb"] - s["rss_start_mb"], "peak_gpu_mb": s.get("peak_gpu_mb"),
                     "epochs": s["epochs_run"], "device": s["device"], "wall": res["wall"]})
    return {"rows": rows, "threads": threads, "epochs": epochs}


def models_block(res: dict, command: str, dataset: str, overrides: list[str]) -> Block:
    """Table 3: each model's time and memory, and both as ratios to MENTOR's measured in the same run; beside
    them the paper's ratios where its Table 3 has the model (the Amazon set of the same shape)."""
    from mentor_ray.common.registry import display_name

    rows = {r["variant"]: r for r in res["rows"]}
    ref = rows.get("mentor") if "error" not in rows.get("mentor", {"error": 1}) else None
    paper = PAPER_TABLE3.get(dataset.removeprefix("synth-"), {})

    def ratio(r: dict, key: str) -> float | None:
        return r[key] / ref[key] if ref and ref[key] > 0 else None

    def paper_ratio(variant: str, i: int) -> float | None:
        return paper[variant][i] / paper["mentor"][i] if variant in paper else None

    failed = any("error" in r for r in rows.values())
    body = []
    for variant, r in rows.items():
        if "error" in r:
            body.append([display_name(variant), *[None] * 7, f"failed: {r['error'][:120]}"])
            continue
        body.append([display_name(variant), r["seconds_per_epoch"], ratio(r, "seconds_per_epoch"),
                     paper_ratio(variant, 1), r["peak_rss_mb"], r["model_mb"], ratio(r, "model_mb"),
                     paper_ratio(variant, 0), *([""] if failed else [])])
    columns = [Column("model"), Column("s / epoch", "number", 2), Column("x MENTOR", "number", 2),
               Column("paper x MENTOR", "number", 2), Column("peak RSS (MB)", "number", 0, thousands=True),
               Column("model's own (MB)", "number", 0, thousands=True), Column("memory x MENTOR", "number", 2),
               Column("paper memory x MENTOR", "number", 2), *([Column("error", wrap=True)] if failed else [])]
    table = Table.of("bench-models", f"Table 3 (efficiency): {dataset}", columns,
                     [row[:len(columns)] for row in body], note=LOAD_NOTE)
    return Block(
        f"Table 3 (efficiency): {dataset} ({' '.join(overrides) or 'each model at its published defaults'})", [
            Bullets((f"Command: `{command}`", f"Machine: {machine()}",
                     f"Date: {dt.date.today().isoformat()}; {res['epochs']} epochs per model, {res['threads']} torch "
                     "thread(s), one model at a time in its own process")),
            "Memory: peak RSS of the training process, and the model's own (peak RSS less the process before the "
            "model: interpreter, libraries, data). Ratios are to MENTOR in this run; the paper's are its Table 3's "
            "(GPU memory and time on the Amazon set of this shape).",
            table])


def models_markdown(res: dict, command: str, dataset: str, overrides: list[str]) -> str:
    """Table 3 as Markdown (:func:`models_block`)."""
    return block_md(models_block(res, command, dataset, overrides))


def gradient_bytes(dataset: str, data_root: Path | None, variant: str, overrides: list[str]) -> tuple[int, int]:
    """(trainable parameters, bytes DDP all-reduces per step): every parameter gets a dense gradient,
    since MENTOR and LightGCN propagate over the whole graph in every step."""
    from mentor_ray.common.config import make_config
    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.model import build_model

    root = str(data_root) if data_root else None
    cfg = make_config(flags={"dataset": dataset, "data_root": root, "variant": variant},
                      overrides=overrides)
    model = build_model(cfg, load_dataset(cfg.dataset, cfg.data_root))
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return n, 4 * n


def _allreduce_worker(rank: int, world: int, init_file: str, numel: int, reps: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    buf = torch.ones(numel)
    times = []
    for _ in range(reps + 1):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        Path(out).write_text(json.dumps(times[1:]))
    dist.barrier()
    os._exit(0)  # skip process-group teardown (torch 2.2 gloo can deadlock in it at exit)


def allreduce_seconds(numel: int, world: int = 2, reps: int = 10) -> float:
    """Median seconds of one gloo all-reduce of ``numel`` float32 between ``world`` local processes."""
    import statistics
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "times.json")
        mp.spawn(_allreduce_worker, args=(world, os.path.join(d, "pg"), numel, reps, out), nprocs=world, join=True)
        return statistics.median(json.loads(Path(out).read_text()))


def thread_counters(pid: int) -> dict[str, tuple[int, int]]:
    """Each thread of process ``pid``: (ns on a CPU, ns runnable waiting for one) so far, the kernel's
    ``/proc/<pid>/task/<tid>/schedstat`` (Linux); empty where the process ended or the kernel keeps none."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    counters = {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run, wait = (int(v) for v in f.read().split()[:2])
        except (OSError, ValueError):  # ended meanwhile, or no schedstat in this kernel
            continue
        counters[tid] = (run, wait)
    return counters


class TreeCPU:
    """CPU time of a process and all its descendants while it runs, split by role: Ray Train's worker actors
    (``ray::RayTrainWorker...``, where the training step runs) and everything else of the run (the driver, Ray's
    controller actor, raylet, GCS, dashboard and its agents, log monitor). On a machine with as many cores as
    workers, the second share is taken from the workers: it is what a 2-worker run loses to Ray itself, which
    a GPU node with cores to spare does not (docs/benchmarks.md, *One run on more devices*).

    :meth:`follow` samples every ``every`` seconds until the process ends; :meth:`shares` averages the cores
    each role used over the sampled intervals in which the workers were training (together at least half a
    core each), so that Ray's start and the data loading do not count.

    With ``nice`` set, the rest of the run is lowered to that nice level once every worker actor is up
    (:meth:`_renice`): on as many cores as workers, Ray's own processes then take CPU from a worker only when
    it waits, as on a GPU node where they run on host cores the devices do not use. ``worker_nice`` keeps the
    nice levels the worker actors were seen at.

    Each worker's training thread (its busiest thread in an interval) is also followed through the kernel's
    per-thread counters (``/proc/<pid>/task/<tid>/schedstat``, Linux): the share of its time it ran, waited
    runnable for a core (preempted: the cores were busy with something else) and slept (blocked: the other
    rank at an all-reduce, a lock). Where the kernel does not keep them, those shares are None."""

    def __init__(self, pid: int, workers: int, every: float = 1.0, nice: int | None = None) -> None:
        self.pid, self.workers, self.every, self.nice = pid, workers, every, nice
        self.reniced: set[int] = set()  # pids set to ``nice``: the rest of the run, once every worker is up
        self.worker_nice: set[int] = set()
        self.last: dict[int, float] = {}  # pid -> its CPU seconds at the last sample
        self.total = {True: 0.0, False: 0.0}  # CPU seconds so far, of the workers (True) and of the rest
        # (time, workers' CPU s, others' CPU s, training threads' s on a CPU, their s waiting for one), cumulative
        self.samples: list[tuple[float, float, float, float, float]] = []
        self.thread_last: dict[tuple[int, str], tuple[int, int]] = {}  # (pid, tid) -> (ns on a CPU, ns waiting)
        self.thread_total = [0.0, 0.0]

    @staticmethod
    def _is_worker(title: str) -> bool:
        return title.startswith("ray::") and "TrainWorker" in title

    def sample(self) -> None:
        """Each process's CPU time since the previous sample, added to the role it has now: a pooled Ray
        process becomes a worker actor (``ray::IDLE`` first), so a role is a property of an interval."""
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:  # ended meanwhile: the last sample stands
            return
        others = []
        n_workers = 0
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    title = " ".join(p.cmdline()) or p.name()  # the name alone is cut to 15 characters
                    worker = self._is_worker(title)
                    if worker:
                        self.worker_nice.add(p.nice())
            except psutil.Error:
                continue
            now = t.user + t.system
            self.total[worker] += now - self.last.get(p.pid, 0.0)
            self.last[p.pid] = now
            n_workers += worker
            if not worker:
                others.append(p)
            elif (busiest := self._training_thread(p.pid)) is not None:
                self.thread_total[0] += busiest[0]
                self.thread_total[1] += busiest[1]
        self.samples.append((time.perf_counter(), self.total[True], self.total[False], *self.thread_total))
        if self.nice is not None and n_workers >= self.workers:
            self._renice(others)

    def _training_thread(self, pid: int) -> tuple[float, float] | None:
        """(seconds on a CPU, seconds waiting runnable for one) since the previous sample of worker ``pid``'s
        busiest thread in that interval, its training thread; None at a thread's first sample, or where the
        kernel keeps no per-thread counters."""
        busiest = None
        for tid, (run, wait) in thread_counters(pid).items():
            before = self.thread_last.get((pid, tid))
            self.thread_last[(pid, tid)] = (run, wait)
            if before is not None and (busiest is None or run - before[0] > busiest[0]):
                busiest = (run - before[0], wait - before[1])
        return None if busiest is None else (busiest[0] / 1e9, busiest[1] / 1e9)

    def _renice(self, others: list) -> None:
        """Lower the priority of the run's processes that are not worker actors, once every worker is up.

        Not before: a process started by a lowered raylet inherits its priority, and an unprivileged process
        cannot raise it again, so a worker actor started after this would run lowered too. A Ray pool process
        still idle now does not become a worker of this run (all of them are up). Every thread of a process
        is lowered: on Linux a nice level belongs to a thread (``setpriority`` on a pid changes its main thread
        alone), and raylet, GCS and the Python workers do their work on other threads; a thread started later
        inherits the level of the one that starts it."""
        import psutil

        for p in others:
            if p.pid not in self.reniced:
                with contextlib.suppress(psutil.Error, OSError):  # ended meanwhile, or not ours to change
                    for thread in p.threads():
                        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                            os.setpriority(os.PRIO_PROCESS, thread.id, self.nice)
                    self.reniced.add(p.pid)

    def follow(self, proc: subprocess.Popen) -> None:
        while proc.poll() is None:
            self.sample()
            time.sleep(self.every)

    def shares(self) -> dict[str, float | None] | None:
        """Cores used by the workers and by the rest, and the shares of the training threads' time on a CPU,
        waiting for one and asleep, averaged over the intervals in which the workers trained; None when no
        interval qualifies (the thread shares None without per-thread counters)."""
        span = work = other = ran = waited = 0.0
        for (t0, w0, o0, r0, q0), (t1, w1, o1, r1, q1) in zip(self.samples, self.samples[1:]):
            if t1 > t0 and (w1 - w0) / (t1 - t0) >= 0.5 * self.workers:
                span, work, other = span + t1 - t0, work + w1 - w0, other + o1 - o0
                ran, waited = ran + r1 - r0, waited + q1 - q0
        if not span:
            return None
        threads = span * self.workers
        counted = ran > 0  # no per-thread counters: nothing to say
        return {"workers_cores": work / span, "other_cores": other / span, "seconds": span,
                "thread_running": ran / threads if counted else None,
                "thread_waiting": waited / threads if counted else None,
                "thread_asleep": max(0.0, 1 - (ran + waited) / threads) if counted else None}


WORKERS_FIRST_NICE = 19  # ``--workers-first``: the rest of a run, once its workers are up


def bench_ray(dataset: str, data_root: Path | None, variant: str, epochs: int, workers: list[int], cpus: int,
              overrides: list[str], per_worker: float | None = None, workers_first: bool = False,
              repeats: int = 1) -> dict:
    """Ray Train runs of ``epochs`` epochs with each worker count, ``cpus`` CPUs shared among the workers;
    the sequence of worker counts ``repeats`` times, interleaved (1, 2, 1, 2, ...), so that each repeat's
    speed-up compares runs minutes apart and :func:`ray_block` reports their median and range.

    ``workers_first``: the worker actors at nice 0 instead of Ray's 15 (``RAY_worker_niceness``, read by the
    local raylet the run starts) and everything else of the run at nice 19 once the workers are up
    (:class:`TreeCPU`). Ray starts its worker processes lowered so that raylet, GCS and the driver come
    first; on as many cores as workers that hands each wake-up of theirs a worker's core at once, where a
    GPU node would run them on host cores its devices do not use.

    With ``MENTOR_RAY_STEP_TIMER=1`` in the environment the workers also time their steps part by part
    (:class:`mentor_ray.model.ops.StepTimer`; the gradient all-reduce is then waited for inside the backward
    pass, so that it can be timed), and :func:`ray_block` adds the per-part table."""
    import tempfile

    runs = []
    for rep, n in ((rep, n) for rep in range(repeats) for n in workers):
        each = per_worker or cpus / n  # per_worker: one worker stands for one device (its own threads)
        args = ["mentor_ray.train", "--dataset", dataset, "--variant", variant, "--max-epochs", str(epochs),
                "--workers", str(n), "--cpus-per-worker", f"{each:g}"]
        if data_root is not None:
            args += ["--data-root", str(data_root)]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "summary.json"
            print(f"[bench] Ray Train: {n} worker(s) x {each:g} CPU, {epochs} epochs of {variant} on {dataset}"
                  + (f" (repeat {rep + 1} of {repeats})" if repeats > 1 else ""), file=sys.stderr)
            t0 = time.perf_counter()
            err = Path(tmp) / "stderr"  # a file, not a pipe: nothing reads it while TreeCPU follows the run
            with open(err, "w") as sink:
                env = {**os.environ, "RAY_worker_niceness": "0"} if workers_first else None
                proc = subprocess.Popen(
                    [sys.executable, "-m", *args, "--storage", str(Path(tmp) / "runs"), "--summary", str(out),
                     f"patience={epochs + 1}", *overrides],
                    stdout=subprocess.DEVNULL, stderr=sink, env=env,
                )
                cpu = TreeCPU(proc.pid, workers=n, nice=WORKERS_FIRST_NICE if workers_first else None)
                cpu.follow(proc)
            wall = time.perf_counter() - t0
            stderr = err.read_text()
            if proc.returncode != 0:
                tail = (stderr.strip().splitlines() or ["no output"])[-1]
                raise MentorRayError(f"benchmark Ray Train run ({n} workers) failed: {tail}")
            runs.append({"workers": n, "repeat": rep, "cpus_each": each, "summary": json.loads(out.read_text()),
                         "wall": wall,
                         "cpu": cpu.shares(), "reniced": len(cpu.reniced), "worker_nice": sorted(cpu.worker_nice)})
    params, grad_bytes = gradient_bytes(dataset, data_root, variant, overrides)
    print(f"[bench] gloo all-reduce of {grad_bytes / 2**20:.1f} MiB between 2 local processes", file=sys.stderr)
    return {"runs": runs, "params": params, "grad_bytes": grad_bytes, "allreduce_s": allreduce_seconds(params),
            "workers_first": workers_first}


def ray_block(res: dict, command: str, dataset: str, variant: str, cpus: int, overrides: list[str]) -> Block:
    from mentor_ray.datasets.dataset import load_dataset

    first = res["runs"][0]["summary"]
    cfg = first["config"]
    n_train = len(load_dataset(cfg["dataset"], cfg["data_root"]).train)
    steps = -(-n_train // cfg["batch_size"])
    groups = by_workers(res["runs"])
    repeats = max(len(g) for g in groups.values())
    base_runs = groups[res["runs"][0]["workers"]]
    rows = []
    for n, group in groups.items():
        secs = [r["summary"]["seconds_per_epoch"] for r in group]
        ratios = [b["summary"]["seconds_per_epoch"] / r["summary"]["seconds_per_epoch"]
                  for b, r in zip(base_runs, group) if r["summary"]["seconds_per_epoch"]]
        sec = statistics.median(secs)
        cpu = [r.get("cpu") or {} for r in group]
        rows.append([n, group[0].get("cpus_each", cpus / n), sec, 1000 * sec / steps,
                     statistics.median(ratios) if ratios else None,
                     statistics.median(r["summary"]["eval_seconds"] for r in group),
                     statistics.median(r["wall"] for r in group), group[0]["summary"]["epochs_run"],
                     group[0]["summary"]["valid"]["recall@20"],
                     max((g for r in group if (g := metric_gap(r["summary"], first)) is not None), default=None),
                     *(_median_or_none([c.get(k) for c in cpu]) for k in CPU_KEYS),
                     *((", ".join(f"{x:.2f}" for x in ratios),) if repeats > 1 else ())])
    table = Table.of("bench-ray", f"Ray Train: {dataset} / {variant}",
                     [Column("workers", "number"), Column("CPUs each", "number", 2),
                      Column("s / epoch (median after the first)", "number", 2), Column("ms / step", "number", 0),
                      Column(f"speed-up over {res['runs'][0]['workers']} worker(s)", "number", 2),
                      Column("eval (s)", "number", 2), Column("process wall (s, incl. Ray start)", "number", 0),
                      Column("epochs", "number"), Column("valid R@20", "number", 4),
                      Column(f"max |Δ metric| vs {res['runs'][0]['workers']} worker(s)", "sci", 1),
                      Column("cores used: workers", "number", 2), Column("cores used: Ray, driver", "number", 2),
                      Column("training thread: waiting for a core", "number", 3),
                      Column("training thread: asleep", "number", 3),
                      *((Column("speed-up, each repeat", "text"),) if repeats > 1 else ())],
                     rows, note=LOAD_NOTE + " " + GAP_NOTE + " " + CPU_NOTE
                     + (f" {repeats} repeats, interleaved: {REPEAT_NOTE}" if repeats > 1 else ""))
    items = [
        Bullets((f"Command: `{command}`", f"Machine: {machine()}",
                 f"Date: {dt.date.today().isoformat()}; {steps} steps per epoch (global batch {cfg['batch_size']}); "
                 "gloo on CPU",
                 f"Per step, DDP all-reduces the dense gradient of {res['params']:,} parameters = "
                 f"{res['grad_bytes'] / 2**20:.1f} MiB; one gloo all-reduce of that size between 2 local processes "
                 f"takes {1000 * res['allreduce_s']:.1f} ms here.",
                 *((workers_first_text(res["runs"]),) if res.get("workers_first") else ()))),
        table]
    parts = step_parts_table(res["runs"], f"Ray Train per-part step times: {dataset} / {variant}")
    if parts is not None:
        items += ["Per step, ms, on rank 0 (`MENTOR_RAY_STEP_TIMER=1`: each part exclusive of the parts inside it, "
                  "the median over the epochs after the first; `forward` is the loss besides MENTOR's marked parts, "
                  "`backward` excludes the gradient all-reduce, which is then waited for and timed apart). "
                  "Replicated on every worker: propagation and backward.", parts]
    each = {r.get("cpus_each") for r in res["runs"]}
    cpu_text = f"{cpus} CPUs" if len(each) > 1 or None in each else f"{each.pop():g} CPU per worker"
    if res.get("workers_first"):
        cpu_text += ", workers first"
    return Block(f"Ray Train: {dataset} / {variant} ({' '.join(overrides) or 'paper defaults'}), {cpu_text}", items)


def workers_first_text(runs: list[dict]) -> str:
    """The ``--workers-first`` bullet: the nice levels the runs' workers were seen at, and how many of the other
    processes were lowered."""
    seen = sorted({level for r in runs for level in r.get("worker_nice", [])})
    return (f"Workers first: the worker actors at nice {', '.join(map(str, seen)) or '?'} (Ray's default is 15), "
            f"every thread of the run's other processes (driver, raylet, GCS, dashboard, Train's controller and "
            f"actors) at nice {WORKERS_FIRST_NICE} once the workers were up "
            f"({', '.join(str(r.get('reniced', 0)) for r in runs)} processes in the rows' runs): one worker with "
            "one thread stands for one device, and Ray's own processes for the host cores a GPU node leaves them.")


GAP_NOTE = ("max |Δ metric|: the largest absolute difference, over every validation and test metric (Recall and "
            "NDCG at 10 and 20, at the best validation epoch), from the first row's run; the runs replay the same "
            "noise and split Eq. 21 exactly (tests/test_sharded_infonce.py), so it is float rounding of the "
            "all-reduce alone.")


CPU_KEYS = ("workers_cores", "other_cores", "thread_waiting", "thread_asleep")
CPU_NOTE = ("Cores used: CPU seconds per second of the run's process tree while its workers trained (sampled each "
            "second), by Ray Train's worker actors and by everything else of the run (the driver, Ray's controller "
            "actor, raylet, GCS, dashboard, log monitor); with as many workers as cores the second is taken from the "
            "first. Training thread: each worker's busiest thread over the same intervals (the kernel's per-thread "
            "counters, mean over workers): the share of its time it was runnable but waiting for a core (the cores "
            "busy with other work) and asleep (blocked: its peer at an all-reduce, a lock, I/O); the rest it ran.")


def metric_gap(summary: dict, first: dict) -> float | None:
    """The largest absolute difference between two runs' validation and test metrics (the keys both have)."""
    gaps = [abs(float(summary[split][key]) - float(first[split][key]))
            for split in ("valid", "test") if summary.get(split) and first.get(split)
            for key in summary[split] if key in first[split]]
    return max(gaps) if gaps else None


def by_workers(runs: list[dict]) -> dict[int, list[dict]]:
    """The runs of each worker count, in the order they ran (one per repeat)."""
    groups: dict[int, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["workers"], []).append(r)
    return groups


def _median_or_none(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


REPEAT_NOTE = ("each row's times and shares are the medians over its repeats, its speed-up the median of the "
               "repeats' own ratios (each repeat's runs minutes apart), listed in the last column.")


def step_parts_table(runs: list[dict], title: str) -> Table | None:
    """Per worker count, each timed part's ms per step (the median over repeats), the step and the replicated
    share; None when no run's summary has ``step_parts`` (the timer was off)."""
    from mentor_ray.model.ops import STEP_PARTS, replicated_share

    rows = []
    for n, group in by_workers(runs).items():
        timed = [r["summary"]["step_parts"] for r in group if r["summary"].get("step_parts")]
        if timed:
            step = {k: statistics.median(t.get(k, 0.0) for t in timed) for k in {k for t in timed for k in t}}
            rows.append([n, *(1000 * step.get(k, 0.0) for k in STEP_PARTS), 1000 * sum(step.values()),
                         replicated_share(step)])
    if not rows:
        return None
    return Table.of("bench-ray-parts", title, [Column("workers", "number"),
                                               *(Column(k, "number", 1) for k in STEP_PARTS),
                                               Column("step", "number", 1), Column("replicated share", "number", 2)],
                    rows)


def ray_markdown(res: dict, command: str, dataset: str, variant: str, cpus: int, overrides: list[str]) -> str:
    return block_md(ray_block(res, command, dataset, variant, cpus, overrides))


def bench_tune(dataset: str, data_root: Path | None, trials: int, epochs: int, workers: list[int],
               overrides: list[str]) -> dict:
    """Per-trial start-up cost of a sweep: ``trials`` runs of ``epochs`` epochs, one at a time, through
    ``python -m mentor_ray.tune`` (its final phase: a space that searches nothing, ``trials`` seeds).

    A run's own time (``wall_seconds``: trainer construction, epochs, evaluations) starts at its
    ``started_at``; the gap from one run's end to the next run's start is what Tune and Ray add per trial
    (scheduling, actor start or reuse, fetching the inputs; a Ray Train worker group for DDP trials).
    """
    import statistics
    import tempfile

    from mentor_ray.report import results

    out = []
    for w in workers:
        with tempfile.TemporaryDirectory() as tmp:
            space = Path(tmp) / "bench.yaml"
            space.write_text("name: bench\ndescription: per-trial overhead\nfixed: {}\n")
            args = ["mentor_ray.tune", "--dataset", dataset, "--space", str(space), "--seeds", str(trials),
                    "--max-epochs", str(epochs), "--max-concurrent", "1", "--workers-per-trial", str(w),
                    "--cpus-per-trial", "1" if w > 1 else "2", "--results", f"{tmp}/r", "--storage", f"{tmp}/s",
                    "--leaderboard", "none", f"patience={epochs + 1}", *overrides]
            if data_root is not None:
                args[3:3] = ["--data-root", str(data_root)]
            print(f"[bench] Tune: {trials} trials of {epochs} epoch(s), {w} worker(s) per trial, on {dataset}",
                  file=sys.stderr)
            t0 = time.time()
            _, wall = _run_module(args, f"benchmark sweep ({w} workers per trial)")
            runs = results.read_results(f"{tmp}/r").to_pandas().drop_duplicates("run_id").sort_values("started_at")
        starts = [t.timestamp() for t in runs.started_at]
        ends = [s + d for s, d in zip(starts, runs.wall_seconds)]
        gaps = [b - a for a, b in zip(ends[:-1], starts[1:])]
        out.append({"workers": w, "trials": len(runs), "wall": wall, "first": starts[0] - t0,
                    "gap": statistics.median(gaps) if gaps else float("nan"),
                    "run": statistics.median(runs.wall_seconds), "epoch": statistics.median(runs.seconds_per_epoch)})
    return {"rows": out, "epochs": epochs}


def tune_block(res: dict, command: str, dataset: str) -> Block:
    rows = [[r["workers"], r["trials"], r["first"], r["gap"], r["run"], r["epoch"], r["wall"]] for r in res["rows"]]
    table = Table.of("bench-tune", f"Sweep start-up per trial: {dataset}",
                     [Column("workers per trial", "number"), Column("trials", "number"),
                      Column("first trial starts after (s, incl. Ray start, data, graphs)", "number", 1),
                      Column("start-up per further trial (s, median)", "number", 1),
                      Column("run (s, median)", "number", 1), Column("s / epoch", "number", 2),
                      Column("sweep wall (s)", "number", 0)], rows, note=LOAD_NOTE)
    return Block(f"Sweep start-up per trial: {dataset}", [
        Bullets((f"Command: `{command}`", f"Machine: {machine()}",
                 f"Date: {dt.date.today().isoformat()}; trials one at a time, {res['epochs']} epoch(s) each")),
        table])


def tune_markdown(res: dict, command: str, dataset: str) -> str:
    return block_md(tune_block(res, command, dataset))


def upsert_block(path: Path, block_id: str, body: str) -> None:
    """Replace the block ``block_id`` in the Markdown file ``path``, or append it."""
    start, end = f"<!-- bench:{block_id} -->", f"<!-- /bench:{block_id} -->"
    block = f"{start}\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    write_atomic(path, text)
