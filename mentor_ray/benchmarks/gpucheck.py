"""One-call GPU check: CUDA against CPU, seconds per epoch and peak memory, and a DDP step on NCCL.

Made for a CUDA machine that has torch (>= 2.2) but no package index, no Ray and no DGL: it needs
only torch, numpy, pyarrow, pyyaml and pydantic, and reads pydantic (and its few dependencies) from
wheels placed beforehand in ``.whl/`` of the checkout when it is not installed::

    # here, on a machine with a package index (the wheels' versions: requirements/current.txt)
    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \\
        typing-extensions==4.16.0

Then, on the GPU node, from the checkout, ``python -m mentor_ray.bench gpu --out gpu-check/`` (more in
:mod:`mentor_ray.bench`) calls :func:`run_check`, which writes ``gpu_check.md`` and ``gpu_check.json``.
What it checks, its exit status and its expected wall time: ``docs/benchmarks.md`` (*GPU check*).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import statistics
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

REPO = Path(__file__).resolve().parents[2]
WHEELS = REPO / ".whl"
RTOL = 1e-4  # loss terms and gradients, device against CPU
METRIC_ATOL = 1e-6  # evaluation metrics: equal up to float summation order
DEFAULT_DATASETS = ("synth-baby", "synth-sports", "synth-clothing")
# (b) times MENTOR (both InfoNCE scopes), MENTOR_fg and the baselines of the paper's Table 3, plus LightGCN
TIMED = (("mentor", "all"), ("mentor", "batch"), ("mentor_fg", None), ("lightgcn", None), ("mmgcn", None),
         ("lattice", None), ("freedom", None), ("lgmrec", None))
# The paper's Table 3 (full MENTOR on the authors' GPU) and this project's targets for one H100/H200
PAPER_TABLE3 = {"synth-baby": (6.07, 7.12), "synth-clothing": (11.39, 12.99)}  # s / epoch, GB
TARGETS = {"synth-baby": (0.6, 2.0), "synth-clothing": (None, 4.0)}  # all scope: s / epoch, GB allocated


def use_local_wheels(module: str = "pydantic", wheels: Path = WHEELS) -> str | None:
    """Make ``module`` importable from ``wheels/*.whl`` when it is not installed; what was done, or None.

    The wheels are unpacked once into ``wheels/site`` (zip extraction: no pip, no index)."""
    import importlib

    try:
        importlib.import_module(module)
        return None
    except ImportError:
        pass
    found = sorted(wheels.glob("*.whl"))
    if not found:
        raise SystemExit(f"error: {module} is not installed and {wheels} holds no wheels; download them first "
                         "(the pip download command in mentor_ray/benchmarks/gpucheck.py's docstring)")
    site = wheels / "site"
    stamp = site / ".unpacked"
    names = "\n".join(w.name for w in found)
    if not stamp.exists() or stamp.read_text() != names:
        site.mkdir(parents=True, exist_ok=True)
        for w in found:
            with zipfile.ZipFile(w) as z:
                z.extractall(site)
        stamp.write_text(names)
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    importlib.import_module(module)
    return f"{module} from {len(found)} wheels in {wheels}"


_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[gpu-check {time.perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- (a) agreement


class RandomTape:
    """Records the random tensors a run draws (perturbation noise, dropout masks) and replays them.

    CPU and CUDA generators give different numbers for the same seed; replaying the CPU run's draws
    on the device makes the two runs compute the same function, so any difference is arithmetic.
    """

    def __init__(self) -> None:
        self.draws: list[Any] = []
        self.replaying = False
        self.pos = 0
        self._uniform: Callable | None = None

    def replay(self) -> None:
        self.replaying, self.pos = True, 0

    def _next(self, make: Callable[[], Any]):
        if self.replaying:
            value = self.draws[self.pos]
            self.pos += 1
            return value
        value = make()
        self.draws.append(value)
        return value

    def uniform(self, *shape: int, device="cpu"):
        u = self._next(lambda: self._uniform(*shape, device="cpu").clone())
        if tuple(u.shape) != tuple(shape):
            raise RuntimeError("gpu check: replayed random draws are out of step with the recorded run")
        return u.to(device).clone()  # callers scale it in place

    def dropout(self, x, p: float = 0.5, training: bool = True, inplace: bool = False):
        if not training or p == 0:
            return x
        keep = self._next(lambda: torch.rand(tuple(x.shape)) >= p)
        return x * keep.to(x.device, x.dtype) / (1 - p)

    @contextlib.contextmanager
    def installed(self) -> Iterator["RandomTape"]:
        """The model's noise and the losses' dropout draw from this tape inside the block."""
        import torch.nn.functional as F

        from mentor_ray.model import losses, ops

        tape = self

        class _F:  # torch.nn.functional, with dropout from the tape
            def __getattr__(self, name):
                return tape.dropout if name == "dropout" else getattr(F, name)

        self._uniform, original_f = ops.uniform, losses.F
        ops.uniform, losses.F = self.uniform, _F()
        try:
            yield self
        finally:
            ops.uniform, losses.F = self._uniform, original_f


def _config(variant: str, scope: str | None, device: str, dataset: str, data_root: str | None, **extra):
    from mentor_ray.common.config import make_config

    # the config names a device type; the trainer gets the torch.device itself (cuda:N)
    overrides = [f"device={device.split(':')[0]}", *(f"{k}={v}" for k, v in extra.items())]
    if scope:
        overrides.append(f"infonce_scope={scope}")
    return make_config(flags={"dataset": dataset, "data_root": data_root, "variant": variant}, overrides=overrides)


def _label(variant: str, scope: str | None) -> str:
    return f"{variant} ({scope} scope)" if scope else variant


def _one_step(trainer, part, tape: RandomTape) -> tuple[dict[str, float], dict[str, Any]]:
    """Loss terms and parameter gradients (float64 on the CPU) of one batch, randomness from ``tape``."""
    from mentor_ray.model import Batch

    trainer.model.train()
    trainer.optimizer.zero_grad(set_to_none=True)
    batch = Batch(*(torch.from_numpy(a).to(trainer.device) for a in part))
    with tape.installed():
        loss, terms = trainer.model.loss(batch)
    loss.backward()
    grads = {n: p.grad.detach().double().cpu() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return {**terms, "loss": float(loss.detach())}, grads


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b != 0 else abs(a)


def check_agreement(device: str, dataset: str = "synth-tiny") -> list[dict[str, Any]]:
    """(a): one batch's loss terms and gradients, and the evaluation, on ``device`` against the CPU."""
    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.datasets.graphs import build_graphs
    from mentor_ray.training.trainer import Trainer

    ds = load_dataset(dataset)
    rows = []
    for variant, scope in (("mentor", "all"), ("mentor", "batch"), ("lightgcn", None)):
        label = _label(variant, scope)
        log(f"(a) {label}: one batch on cpu and on {device}")
        cfg_cpu = _config(variant, scope, "cpu", dataset, None)
        cfg_dev = _config(variant, scope, device, dataset, None)
        graphs = build_graphs(ds, k=cfg_cpu.knn_k, knn_norm=cfg_cpu.knn_norm)
        ref = Trainer(cfg_cpu, ds, device=torch.device("cpu"), graphs=graphs)
        dev = Trainer(cfg_dev, ds, device=torch.device(device), graphs=graphs)
        part = ref.sampler.batches(0, cfg_cpu.batch_size)[0]
        tape = RandomTape()
        torch.manual_seed(cfg_cpu.seed)
        terms_ref, grads_ref = _one_step(ref, part, tape)
        tape.replay()
        terms_dev, grads_dev = _one_step(dev, part, tape)
        term_err = {k: _rel(terms_dev[k], v) for k, v in terms_ref.items()}
        grad_err = {}
        for name, g in grads_ref.items():
            h = grads_dev.get(name)
            norm = float(g.norm())
            grad_err[name] = float("inf") if h is None else (float((h - g).norm()) / norm if norm else float(h.norm()))
        missing = sorted(set(grads_dev) - set(grads_ref))
        # evaluation: the CPU model after one epoch, copied to the device
        ref.train_epoch(0)
        dev.model.load_state_dict(ref.model.state_dict())
        metric_err = {}
        metrics = {}
        for split in ("valid", "test"):
            a, b = ref.evaluate(split), dev.evaluate(split)
            metrics[split] = {"cpu": a, device: b}
            metric_err.update({f"{split} {k}": abs(b[k] - a[k]) for k in a})
        worst_term = max(term_err.values())
        worst_grad = max(grad_err.values()) if grad_err else 0.0
        worst_metric = max(metric_err.values())
        ok = worst_term <= RTOL and worst_grad <= RTOL and worst_metric <= METRIC_ATOL and not missing
        rows.append({
            "model": label, "terms": sorted(terms_ref), "term_rel_err": term_err, "grad_rel_err": grad_err,
            "params_with_grad": len(grads_ref), "grads_only_on_device": missing,
            "worst_term_rel_err": worst_term, "worst_grad_rel_err": worst_grad,
            "worst_metric_abs_err": worst_metric, "metrics": metrics, "ok": ok,
        })
        log(f"(a) {label}: terms {worst_term:.2e}, gradients {worst_grad:.2e}, metrics {worst_metric:.2e} "
            f"-> {'ok' if ok else 'FAILED'}")
        del ref, dev
    return rows


# --------------------------------------------------------------------------- (b) timings


def _peak_memory(device) -> dict[str, float | None]:
    from mentor_ray.training.trainer import peak_memory_mb

    if device.type == "cuda":
        return {"peak_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                "peak_reserved_mb": torch.cuda.max_memory_reserved(device) / 2**20, "peak_rss_mb": None}
    return {"peak_allocated_mb": None, "peak_reserved_mb": None, "peak_rss_mb": peak_memory_mb(device)}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(device: str, datasets: list[tuple[str, str | None]], epochs: int, warmup: int) -> list[dict]:
    """(b): median seconds per training epoch after ``warmup`` epochs, evaluation seconds, peak memory."""
    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.datasets.graphs import build_graphs
    from mentor_ray.training.trainer import Trainer

    rows = []
    dev = torch.device(device)
    for name, root in datasets:
        log(f"(b) {name}: loading" + (" (generated on first use)" if name.startswith("synth-") else ""))
        ds = load_dataset(name, root)
        for variant, scope in TIMED:
            label = _label(variant, scope)
            cfg = _config(variant, scope, device, name, root, patience=epochs + warmup + 1)
            t0 = time.perf_counter()
            graphs = build_graphs(ds, k=cfg.knn_k, knn_norm=cfg.knn_norm)
            graph_s = time.perf_counter() - t0
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
            trainer = Trainer(cfg, ds, device=dev, graphs=graphs)
            seconds, losses = [], []
            for e in range(warmup + epochs):
                _sync(dev)
                t0 = time.perf_counter()
                out = trainer.train_epoch(e)
                _sync(dev)
                if e >= warmup:
                    seconds.append(time.perf_counter() - t0)
                losses.append(out["loss"])
            t0 = time.perf_counter()
            valid = trainer.evaluate("valid")
            _sync(dev)
            eval_s = time.perf_counter() - t0
            row = {"dataset": name, "model": label, "users": ds.n_users, "items": ds.n_items,
                   "train_interactions": len(ds.train), "batches_per_epoch": -(-len(ds.train) // cfg.batch_size),
                   "warmup_epochs": warmup, "timed_epochs": epochs,
                   "seconds_per_epoch": statistics.median(seconds), "epoch_seconds": seconds,
                   "eval_seconds": eval_s, "graph_seconds": graph_s, "graph_builder": graphs.builder,
                   "losses": losses, "valid_recall@20": valid["recall@20"], **_peak_memory(dev)}
            mem = row["peak_allocated_mb"] if dev.type == "cuda" else row["peak_rss_mb"]
            log(f"(b) {name} / {label}: {row['seconds_per_epoch']:.3f} s/epoch, peak {mem:,.0f} MB")
            rows.append(row)
            del trainer
    return rows


# --------------------------------------------------------------------------- (c) DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_ddp(device: str, dataset: str = "synth-tiny") -> dict[str, Any]:
    """(c): one training epoch through DDP (world size 1; NCCL on CUDA, gloo on CPU) against none."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.datasets.graphs import build_graphs
    from mentor_ray.training.trainer import Trainer

    dev = torch.device(device)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    log(f"(c) DDP, world size 1, backend {backend}")
    ds = load_dataset(dataset)
    cfg = _config("mentor", "batch", device, dataset, None)
    graphs = build_graphs(ds, k=cfg.knn_k, knn_norm=cfg.knn_norm)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        plain = Trainer(cfg, ds, device=dev, graphs=graphs)
        wrapped = Trainer(cfg, ds, device=dev, graphs=graphs)
        ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
        wrapped.step = DistributedDataParallel(wrapped.step, device_ids=ids, broadcast_buffers=False)
        a, b = plain.train_epoch(0), wrapped.train_epoch(0)
        reduced = torch.ones(4, device=wrapped.comm_device)
        dist.all_reduce(reduced)
        with torch.no_grad():
            param_err = max(float((p - q).abs().max() / q.abs().max().clamp_min(1e-30))
                            for p, q in zip(wrapped.model.parameters(), plain.model.parameters()))
    finally:
        dist.destroy_process_group()
    loss_err = _rel(b["loss"], a["loss"])
    ok = loss_err <= RTOL and param_err <= RTOL and reduced.tolist() == [1.0] * 4
    log(f"(c) epoch loss {b['loss']:.6f} with DDP, {a['loss']:.6f} without; parameters {param_err:.2e} "
        f"-> {'ok' if ok else 'FAILED'}")
    return {"backend": backend, "world_size": 1, "loss_ddp": b["loss"], "loss_plain": a["loss"],
            "loss_rel_err": loss_err, "param_rel_err": param_err, "ok": ok}


# --------------------------------------------------------------------------- report


def environment(device: str) -> dict[str, Any]:
    import platform

    import numpy
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "numpy": numpy.__version__, "gpu": gpu, "device": device, "cpu_cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d")}


def report_block(report: dict[str, Any]):
    """The report as a :class:`~mentor_ray.report.render.Block`: its three parts' tables (rendered as Markdown
    and plain text, which need no pandas)."""
    from mentor_ray.report.board import LOAD_NOTE, Column, Table
    from mentor_ray.report.render import Block, Bullets, Heading

    env = report["environment"]
    agreement = Table.of("gpu-agreement", f"{env['device']} against CPU", [
        Column("model"), Column("loss terms", wrap=True), Column("worst term error", "sci", 1),
        Column("worst gradient error", "sci", 1), Column("worst metric difference", "sci", 1), Column("ok")],
        [[r["model"], ", ".join(r["terms"]), r["worst_term_rel_err"], r["worst_grad_rel_err"],
          r["worst_metric_abs_err"], "yes" if r["ok"] else "NO"] for r in report["agreement"]])
    timings = Table.of("gpu-timings", "Seconds per training epoch and peak memory", [
        Column("dataset"), Column("users", "number", thousands=True), Column("items", "number", thousands=True),
        Column("model"), Column("s / epoch", "number", 3), Column("eval (s)", "number", 2),
        *(Column(f"peak {what} (MB)", "number", 0, thousands=True) for what in ("allocated", "reserved", "RSS"))],
        [[r["dataset"], r["users"], r["items"], r["model"], r["seconds_per_epoch"], r["eval_seconds"],
          r["peak_allocated_mb"], r["peak_reserved_mb"], r["peak_rss_mb"]] for r in report["timings"]], note=LOAD_NOTE)
    items: list = [
        Bullets((f"Command: `{report['command']}`",
                 f"Device: {env['gpu'] or 'CPU'} ({env['device']}); {env['cpu_cores']} CPU cores; Python "
                 f"{env['python']}, torch {env['torch']} (CUDA {env['cuda'] or '-'}), numpy {env['numpy']}",
                 f"Date: {env['date']}; wall {report['wall_seconds']:.0f} s")),
        Heading(f"(a) {env['device']} against CPU, synth-tiny, seed 0, one batch (tolerance {RTOL:g} relative)"),
        agreement,
        Heading(f"(b) Seconds per training epoch (median of {report['epochs']} after {report['warmup']} warm-up) "
                "and peak memory"),
        timings,
    ]
    if env["gpu"]:
        rows = []
        for r in report["timings"]:
            if r["model"] != "mentor (all scope)" or r["dataset"] not in PAPER_TABLE3:
                continue
            paper_s, paper_gb = PAPER_TABLE3[r["dataset"]]
            gb = r["peak_allocated_mb"] / 1024
            t_s, t_gb = TARGETS[r["dataset"]]
            met = (t_s is None or r["seconds_per_epoch"] <= t_s) and gb <= t_gb
            want = " and ".join(([f"<= {t_s} s"] if t_s else []) + [f"<= {t_gb} GB"])
            rows.append([r["dataset"], paper_s, paper_gb, r["seconds_per_epoch"], gb,
                         f"{want}: {'met' if met else 'NOT met'}"])
        items += ["Against the paper's Table 3 (full MENTOR on the authors' GPU) and this project's targets "
                  "(all scope, peak allocated):",
                  Table.of("gpu-paper", "Against the paper's Table 3", [
                      Column("dataset"), Column("paper s / epoch", "number", 2), Column("paper GB", "number", 2),
                      Column("ours s / epoch", "number", 3), Column("ours GB", "number", 2), Column("target")], rows)]
    d = report["ddp"]
    items += [Heading(f"(c) DDP, world size 1, {d['backend']}"),
              f"One epoch of `mentor` (batch scope) on synth-tiny through `DistributedDataParallel`: loss "
              f"{d['loss_ddp']:.6f} against {d['loss_plain']:.6f} without (relative {d['loss_rel_err']:.1e}); "
              f"parameters after the epoch differ by {d['param_rel_err']:.1e} relative; "
              f"{'ok' if d['ok'] else 'FAILED'}."]
    return Block(f"GPU check: {env['gpu']}" if env["gpu"] else "GPU check, run on the CPU", items)


def markdown(report: dict[str, Any]) -> str:
    from mentor_ray.report.render import block_md

    return block_md(report_block(report)) + "\n"


def run_check(out: Path, device: str, datasets: list[str], tiktok: Path | None, epochs: int, warmup: int,
              command: str, write: Path | None = None) -> int:
    """All three parts; writes ``gpu_check.md`` and ``gpu_check.json`` into ``out``; 0 if (a) and (c) hold."""
    from mentor_ray.common.errors import ConfigError

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False); "
                          "run on a GPU node, or pass --device cpu")
    if epochs < 1 or warmup < 0:
        raise ConfigError(f"--epochs {epochs} --warmup {warmup}: need at least 1 timed epoch and 0 or more warm-up")
    if tiktok is not None and not (tiktok / "tiktok" / "tiktok.inter").exists():
        raise ConfigError(f"--tiktok {tiktok}: no tiktok/tiktok.inter under it; give the folder holding tiktok/")
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log(f"device {device}; torch {torch.__version__}")
    agreement = check_agreement(device)
    sets = [(d, None) for d in datasets] + ([("tiktok", str(tiktok))] if tiktok is not None else [])
    timings = time_training(device, sets, epochs, warmup)
    ddp = check_ddp(device)
    report = {"command": command, "environment": environment(device), "epochs": epochs, "warmup": warmup,
              "agreement": agreement, "timings": timings, "ddp": ddp, "wall_seconds": time.perf_counter() - t0}
    report["ok"] = all(r["ok"] for r in agreement) and ddp["ok"]
    from mentor_ray.common.io import write_json_atomic

    write_json_atomic(out / "gpu_check.json", report)
    from mentor_ray.report.render import block_md, block_text

    block = report_block(report)
    md = block_md(block) + "\n"
    (out / "gpu_check.md").write_text(md)
    print(block_text(block))  # the terminal gets plain text, no Markdown
    if write is not None:
        from mentor_ray.benchmarks.bench import upsert_block

        upsert_block(write, f"gpu:{device.split(':')[0]}", md.rstrip("\n"))
        log(f"written to {write}")
    verdict = "all checks hold" if report["ok"] else "A CHECK FAILED"
    log(f"written {out / 'gpu_check.md'} and {out / 'gpu_check.json'}; {verdict}")
    return 0 if report["ok"] else 1
