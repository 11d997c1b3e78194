"""One-call GPU check: CUDA against CPU, seconds per epoch and peak memory, a DDP step on NCCL, and MENTOR at
world size 1 against 2 on a node with 2+ GPUs (the split of Eq. 21: its speed-up and per-part step times).

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

It cannot hang: the parts that start a process group, (c) and (d), run in child processes under a watchdog
(:func:`run_ranks`) that keeps what they wrote and kills them if their teardown hangs (the gloo deadlock of
pytorch#56297 / #75097: ``Trainer.release_ddp``) or if they pass ``MENTOR_RAY_GPU_PART_TIMEOUT`` seconds
(default 1800); the report is rewritten after every part, so a run cut short keeps what it measured.
With ``--device cpu``, (d) runs the same code with gloo, each rank with half the cores.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

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


def parse_models(text: str) -> list[tuple[str, str | None]]:
    """``--variants``: comma-separated variants of the registry (``mentor`` is its paper's all scope,
    ``mentor:batch`` the batch scope), or ``table3`` for Table 3's models (the default)."""
    # the registry's variants (the config's VARIANTS without pydantic): ``bench gpu`` checks this flag before
    # use_local_wheels makes pydantic importable on a node that lacks it
    from mentor_ray.common.errors import ConfigError
    from mentor_ray.common.registry import VARIANT_MODELS as VARIANTS

    models: list[tuple[str, str | None]] = []
    for item in (t.strip() for t in text.split(",")):
        if item == "table3":
            models += [m for m in TIMED if m not in models]
            continue
        variant, _, scope = item.partition(":")
        if variant not in VARIANTS:
            raise ConfigError(f"--variants {text}: {item!r} is not a variant; allowed: table3, or "
                              f"{', '.join(VARIANTS)} (mentor:all, mentor:batch for MENTOR's InfoNCE scope)")
        if scope not in ("", "all", "batch") or (scope and not variant.startswith("mentor")):
            raise ConfigError(f"--variants {text}: {item!r}: a scope (:all, :batch) is MENTOR's only")
        model = (variant, scope or ("all" if variant == "mentor" else None))
        if model not in models:
            models.append(model)
    return models


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


def _timed_epochs(trainer, dev, warmup: int, epochs: int) -> tuple[list[float], list[float]]:
    """``warmup + epochs`` training epochs: the seconds of those after the warm-up (the device synchronised
    around each), and every epoch's mean loss."""
    seconds, losses = [], []
    for e in range(warmup + epochs):
        _sync(dev)
        t0 = time.perf_counter()
        out = trainer.train_epoch(e)
        _sync(dev)
        if e >= warmup:
            seconds.append(time.perf_counter() - t0)
        losses.append(out["loss"])
    return seconds, losses


def time_training(device: str, datasets: list[tuple[str, str | None]], epochs: int, warmup: int,
                  on_row: Callable[[dict], None] | None = None,
                  models: Sequence[tuple[str, str | None]] = TIMED) -> list[dict]:
    """(b): median seconds per training epoch after ``warmup`` epochs, evaluation seconds, peak memory, of each
    of ``models`` ((variant, InfoNCE scope or None); default Table 3's); ``on_row(row)`` after each model (the
    report is saved as it grows)."""
    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.datasets.graphs import build_graphs
    from mentor_ray.training.trainer import Trainer

    rows = []
    dev = torch.device(device)
    for name, root in datasets:
        log(f"(b) {name}: loading" + (" (generated on first use)" if name.startswith("synth-") else ""))
        ds = load_dataset(name, root)
        for variant, scope in models:
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
            seconds, losses = _timed_epochs(trainer, dev, warmup, epochs)
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
            if on_row:
                on_row(row)
            del trainer
    return rows


# --------------------------------------------------------------------------- child processes under a watchdog

PART_TIMEOUT_ENV = "MENTOR_RAY_GPU_PART_TIMEOUT"  # seconds one DDP run of (c) or (d) may take (default 1800)
TEARDOWN_GRACE_S = 30.0  # after its result is written, how long a child may take to exit before it is killed


def _part_timeout() -> float:
    return float(os.environ.get(PART_TIMEOUT_ENV, "1800"))


def _child(fn: Callable, rank: int, world: int, result: str, args: tuple) -> None:
    """A child process of :func:`run_ranks`: ``fn(rank, world, result, *args)``; a failure's traceback goes to
    ``result + ".error.<rank>"``. It ends with ``os._exit``: nothing runs at interpreter exit, where freeing a
    leftover DDP reducer could still deadlock (``Trainer.release_ddp``)."""
    import traceback

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # local ranks: gloo on loopback (no hostname lookup)
    code = 1
    try:
        fn(rank, world, result, *args)
        code = 0
    except BaseException:  # noqa: BLE001 - reported to the parent through the file
        Path(f"{result}.error.{rank}").write_text(traceback.format_exc())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _read_result(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_ranks(fn: Callable, world: int, result: Path, args: tuple = (), timeout: float | None = None,
              grace: float = TEARDOWN_GRACE_S) -> dict[str, Any]:
    """Run ``fn(rank, world, result, *args)`` in ``world`` spawned processes under a watchdog; what came back.

    ``fn``'s rank 0 writes its findings to ``result`` (JSON, whole, as they grow) and sets ``"done": true``
    at the end of the measured work, before tearing the process group down. The watchdog never waits
    forever: once ``done`` is there, the children get ``grace`` seconds to exit, and after ``timeout``
    seconds in all they are killed. Either way the findings written so far are returned, with ``"watchdog"``
    saying what happened: ``exited``, ``killed after its result (teardown hung)``, ``timed out`` or ``failed``
    (with the first error's last line)."""
    import multiprocessing

    timeout = _part_timeout() if timeout is None else timeout
    rendezvous = Path(f"{result}.pg")  # the process group's file store: a stale one would mislead a new group
    for old in [result, rendezvous, *result.parent.glob(result.name + ".error.*")]:
        old.unlink(missing_ok=True)
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked; a fresh interpreter per rank
    # daemonic: a parent that stops (Ctrl-C, an error) takes them along instead of waiting for them at exit
    procs = [ctx.Process(target=_child, args=(fn, r, world, str(result), args), daemon=True) for r in range(world)]
    t0 = time.monotonic()
    done_at, status = None, "exited"
    try:
        for proc in procs:
            proc.start()
        while any(proc.is_alive() for proc in procs):
            now = time.monotonic()
            found = _read_result(result)
            if done_at is None and found and found.get("done"):
                done_at = now
            if done_at is not None and now - done_at > grace:
                status = "killed after its result (teardown hung)"
                break
            if now - t0 > timeout:
                status = "timed out"
                break
            if any(proc.exitcode not in (None, 0) for proc in procs):
                status = "failed"  # a rank died: the others may wait for it in a collective forever
                break
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        for proc in procs:
            if proc.pid is not None:
                proc.join(10)
    rendezvous.unlink(missing_ok=True)
    errors = sorted(result.parent.glob(result.name + ".error.*"))
    found = _read_result(result) or {}
    if errors or (status == "exited" and any(proc.exitcode != 0 for proc in procs)):
        status = "failed"
    if errors:
        last = errors[0].read_text().strip().splitlines() or ["no traceback"]
        found["error"] = last[-1]
    if status == "timed out" or (status == "failed" and "error" not in found):
        found.setdefault("error", f"{status} after {time.monotonic() - t0:.0f} s (exit codes "
                                  f"{[proc.exitcode for proc in procs]})")
    found["watchdog"] = status
    found["wall_seconds"] = time.monotonic() - t0
    if status not in ("exited", "killed after its result (teardown hung)") or not found.get("done"):
        log(f"watchdog: {fn.__name__} at world size {world}: {status}" + (f": {found.get('error')}"
                                                                        if found.get("error") else ""))
    elif status != "exited":
        log(f"watchdog: {fn.__name__} at world size {world}: {status}; its result is kept")
    return found


def _init_group(rank: int, world: int, result: str, device: str) -> torch.device:
    """This rank's device and its process group: NCCL on CUDA (rank r on GPU r), gloo on the CPU."""
    import torch.distributed as dist

    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", rank)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"file://{result}.pg", rank=rank, world_size=world)
    return dev


def _teardown(*trainers) -> None:
    """The order that cannot deadlock: every DDP wrapper released (``Trainer.release_ddp``: barrier, freed,
    collected, barrier), then the process group destroyed."""
    import torch.distributed as dist

    for trainer in trainers:
        trainer.release_ddp()
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _write(result: str, value: dict[str, Any]) -> None:
    from mentor_ray.common.io import write_json_atomic

    write_json_atomic(Path(result), value)


# --------------------------------------------------------------------------- (c) DDP


def _ddp_rank(rank: int, world: int, result: str, device: str, dataset: str) -> None:
    """(c) in its child process: one epoch with and without DDP at world size 1."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.datasets.graphs import build_graphs
    from mentor_ray.training.trainer import Trainer

    dev = _init_group(rank, world, result, device)
    ds = load_dataset(dataset)
    cfg = _config("mentor", "batch", str(dev), dataset, None)
    graphs = build_graphs(ds, k=cfg.knn_k, knn_norm=cfg.knn_norm)
    plain = Trainer(cfg, ds, device=dev, graphs=graphs)
    wrapped = Trainer(cfg, ds, device=dev, graphs=graphs)
    ids = [dev.index] if dev.type == "cuda" else None
    wrapped.step = DistributedDataParallel(wrapped.step, device_ids=ids, broadcast_buffers=False)
    a, b = plain.train_epoch(0), wrapped.train_epoch(0)
    reduced = torch.ones(4, device=wrapped.comm_device)
    dist.all_reduce(reduced)
    with torch.no_grad():
        param_err = max(float((p - q).abs().max() / q.abs().max().clamp_min(1e-30))
                        for p, q in zip(wrapped.model.parameters(), plain.model.parameters()))
    loss_err = _rel(b["loss"], a["loss"])
    ok = loss_err <= RTOL and param_err <= RTOL and reduced.tolist() == [1.0] * 4
    _write(result, {"backend": dist.get_backend(), "world_size": world, "loss_ddp": b["loss"],
                    "loss_plain": a["loss"], "loss_rel_err": loss_err, "param_rel_err": param_err, "ok": ok,
                    "done": True})
    _teardown(wrapped, plain)


def check_ddp(device: str, work: Path, dataset: str = "synth-tiny") -> dict[str, Any]:
    """(c): one training epoch through DDP (world size 1; NCCL on CUDA, gloo on CPU) against none, in a child
    process under the watchdog (:func:`run_ranks`)."""
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    log(f"(c) DDP, world size 1, backend {backend} (a child process)")
    found = run_ranks(_ddp_rank, 1, work / "ddp.json", (device, dataset))
    out = {"backend": backend, "world_size": 1, "loss_ddp": float("nan"), "loss_plain": float("nan"),
           "loss_rel_err": float("nan"), "param_rel_err": float("nan"), "ok": False, **found}
    out["ok"] = bool(out["ok"]) and "error" not in found
    log(f"(c) epoch loss {out['loss_ddp']:.6f} with DDP, {out['loss_plain']:.6f} without; parameters "
        f"{out['param_rel_err']:.2e} -> {'ok' if out['ok'] else 'FAILED'}")
    return out


# --------------------------------------------------------------------------- (d) world size 1 against 2

SCALING_WORLDS = (1, 2)
SCALING_SCOPES = ("all", "batch")


def _scaling_rank(rank: int, world: int, result: str, device: str, dataset: str, root: str | None, epochs: int,
                  warmup: int, threads: int) -> None:
    """(d) in its child processes: MENTOR at both InfoNCE scopes, ``warmup`` + ``epochs`` epochs timed, then
    one epoch with the per-part step timer. Rank 0 writes after each scope."""
    import statistics

    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.datasets.graphs import build_graphs
    from mentor_ray.training.trainer import STEP_TIMER_ENV, Trainer

    os.environ[STEP_TIMER_ENV] = "1"  # the DDP comm hook that times the all-reduce; epochs below untimed but one
    torch.set_num_threads(threads)
    dev = _init_group(rank, world, result, device) if world > 1 else (
        torch.device("cuda", 0) if torch.device(device).type == "cuda" else torch.device("cpu"))
    ds = load_dataset(dataset, root)
    found: dict[str, Any] = {"dataset": dataset, "world_size": world, "threads": threads, "scopes": {}}
    trainers = []
    for scope in SCALING_SCOPES:
        cfg = _config("mentor", scope, str(dev), dataset, root, patience=epochs + warmup + 2)
        graphs = build_graphs(ds, k=cfg.knn_k, knn_norm=cfg.knn_norm)
        trainer = Trainer(cfg, ds, rank=rank, world_size=world, device=dev, graphs=graphs)
        trainer.progress_seconds = None
        trainer.step_timer = False
        seconds, losses = _timed_epochs(trainer, dev, warmup, epochs)
        trainer.step_timer = True  # one more epoch, its steps timed part by part
        trainer.train_epoch(warmup + epochs)
        found["scopes"][scope] = {"seconds_per_epoch": statistics.median(seconds), "epoch_seconds": seconds,
                                  "losses": losses, "step_parts": trainer.step_parts[-1],
                                  "batches_per_epoch": -(-len(ds.train) // cfg.batch_size)}
        if rank == 0:
            _write(result, found)
        trainers.append(trainer)
    if rank == 0:
        _write(result, {**found, "done": True})
    if world > 1:
        _teardown(*trainers)


def check_scaling(device: str, datasets: list[tuple[str, str | None]], epochs: int, warmup: int,
                  work: Path) -> dict[str, Any]:
    """(d): MENTOR's seconds per epoch at world size 1 and 2 (NCCL, one GPU per rank; on the CPU gloo, each
    rank with half the cores), both InfoNCE scopes, the speed-up, the per-part step times, and the first
    epoch's loss at world size 2 against 1 (the split of Eq. 21 keeps the single-process maths). Needs 2 GPUs
    on CUDA; skipped with a note otherwise."""
    from mentor_ray.datasets.dataset import load_dataset
    from mentor_ray.datasets.graphs import build_graphs

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.device_count() < 2:
        note = f"skipped: {torch.cuda.device_count()} GPU visible, world size 2 needs 2"
        log(f"(d) {note}")
        return {"skipped": note, "rows": []}
    backend = "nccl" if dev.type == "cuda" else "gloo"
    threads = 1 if dev.type == "cuda" else max(1, (os.cpu_count() or 2) // 2)
    rows, ok = [], True
    for name, root in datasets:
        ds = load_dataset(name, root)  # generated and graphs cached here, before the children read them
        build_graphs(ds, k=_config("mentor", "all", "cpu", name, root).knn_k)
        runs = {}
        for world in SCALING_WORLDS:
            log(f"(d) {name}: mentor, both scopes, world size {world} ({backend})")
            runs[world] = run_ranks(_scaling_rank, world, work / f"scaling-{name}-{world}.json",
                                    (device, name, root, epochs, warmup, threads))
        for scope in SCALING_SCOPES:
            one, two = (runs[w].get("scopes", {}).get(scope) for w in SCALING_WORLDS)
            row = {"dataset": name, "model": _label("mentor", scope), "users": ds.n_users, "items": ds.n_items,
                   "world1": one, "world2": two,
                   "error": runs[1].get("error") or runs[2].get("error"),
                   "watchdog": {w: runs[w]["watchdog"] for w in SCALING_WORLDS}}
            if one and two:
                row["speedup"] = one["seconds_per_epoch"] / two["seconds_per_epoch"]
                row["loss_rel_err"] = _rel(two["losses"][0], one["losses"][0])
                # the batch scope's InfoNCE contrasts each rank's part of the batch: not the single-process loss
                row["ok"] = row["loss_rel_err"] <= RTOL if scope == "all" else True
                log(f"(d) {name} / {row['model']}: {one['seconds_per_epoch']:.3f} s/epoch at world size 1, "
                    f"{two['seconds_per_epoch']:.3f} at 2 (x{row['speedup']:.2f}); first epoch's loss "
                    f"{row['loss_rel_err']:.1e} relative -> {'ok' if row['ok'] else 'FAILED'}")
            else:
                row["ok"] = False
                log(f"(d) {name} / {row['model']}: FAILED ({row['error']})")
            ok = ok and row["ok"]
            rows.append(row)
    return {"backend": backend, "threads_per_rank": threads, "rows": rows, "ok": ok}


# --------------------------------------------------------------------------- report


def environment(device: str) -> dict[str, Any]:
    import platform

    import numpy
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "numpy": numpy.__version__, "gpu": gpu, "device": device, "cpu_cores": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d")}


def _scaling_items(scaling: dict[str, Any]) -> list:
    """(d) as report items: the speed-up table and the per-part table, or the note that it was skipped."""
    from mentor_ray.model.ops import STEP_PARTS, replicated_share
    from mentor_ray.report.board import Column, Table

    if scaling.get("skipped"):
        return [f"{scaling['skipped']}."]
    rows, parts = [], []
    for r in scaling["rows"]:
        one, two = r.get("world1"), r.get("world2")
        verdict = "yes" if r["ok"] else f"NO ({r.get('error') or 'loss differs'})"
        if r["ok"] and "all scope" not in r["model"]:
            verdict = "not compared"
        rows.append([r["dataset"], r["model"], one and one["seconds_per_epoch"], two and two["seconds_per_epoch"],
                     r.get("speedup"), r.get("loss_rel_err"), verdict])
        for world, found in ((1, one), (2, two)):
            if not found:
                continue
            step = found["step_parts"]
            parts.append([r["dataset"], r["model"], world, *(1000 * step.get(k, 0.0) for k in STEP_PARTS),
                          1000 * sum(step.values()), replicated_share(step)])
    items: list = [
        "Each rank holds half of every global batch and, with InfoNCE over all users and items, half of Eq. 21's "
        "rows; the first epoch's loss at world size 2 must be that of world size 1 (1e-4 relative). The batch "
        "scope's InfoNCE contrasts each rank's own part of the batch, so its loss is not compared.",
        Table.of("gpu-scaling", "MENTOR at world size 1 and 2", [
            Column("dataset"), Column("model"), Column("s / epoch, world 1", "number", 3),
            Column("s / epoch, world 2", "number", 3), Column("speed-up", "number", 2),
            Column("first epoch's loss, 2 against 1", "sci", 1), Column("ok")], rows),
        "Per step, ms, rank 0, one epoch timed part by part after the timed ones (exclusive times; `forward` is "
        "the loss besides MENTOR's marked parts; `backward` excludes the gradient all-reduce, which is waited "
        "for and timed apart). Replicated: propagation and backward (the feature MLPs' and the propagation's "
        "transposes run on every rank in full).",
        Table.of("gpu-parts", "Per-part step times", [
            Column("dataset"), Column("model"), Column("world", "number"),
            *(Column(k, "number", 2) for k in STEP_PARTS), Column("step", "number", 2),
            Column("replicated share", "number", 2)], parts),
    ]
    return items


def report_block(report: dict[str, Any]):
    """The report as a :class:`~mentor_ray.report.render.Block`: its parts' tables (rendered as Markdown and
    plain text, which need no pandas). A report cut short (``complete`` false) shows the parts it has."""
    from mentor_ray.report.board import LOAD_NOTE, Column, Table
    from mentor_ray.report.render import Block, Bullets, Heading

    env = report["environment"]
    items: list = [
        Bullets((f"Command: `{report['command']}`",
                 f"Device: {env['gpu'] or 'CPU'} ({env['device']}); {env['cpu_cores']} CPU cores; Python "
                 f"{env['python']}, torch {env['torch']} (CUDA {env['cuda'] or '-'}), numpy {env['numpy']}",
                 f"Date: {env['date']}; wall {report['wall_seconds']:.0f} s")),
    ]
    if not report.get("complete", True):
        items.append("Incomplete: the parts below are those that had finished when this was written.")
    if "agreement" in report:
        agreement = Table.of("gpu-agreement", f"{env['device']} against CPU", [
            Column("model"), Column("loss terms", wrap=True), Column("worst term error", "sci", 1),
            Column("worst gradient error", "sci", 1), Column("worst metric difference", "sci", 1), Column("ok")],
            [[r["model"], ", ".join(r["terms"]), r["worst_term_rel_err"], r["worst_grad_rel_err"],
              r["worst_metric_abs_err"], "yes" if r["ok"] else "NO"] for r in report["agreement"]])
        items += [Heading(f"(a) {env['device']} against CPU, synth-tiny, seed 0, one batch (tolerance {RTOL:g} "
                          "relative)"), agreement]
    if report.get("timings"):
        timings = Table.of("gpu-timings", "Seconds per training epoch and peak memory", [
            Column("dataset"), Column("users", "number", thousands=True), Column("items", "number", thousands=True),
            Column("model"), Column("s / epoch", "number", 3), Column("eval (s)", "number", 2),
            *(Column(f"peak {what} (MB)", "number", 0, thousands=True) for what in ("allocated", "reserved", "RSS"))],
            [[r["dataset"], r["users"], r["items"], r["model"], r["seconds_per_epoch"], r["eval_seconds"],
              r["peak_allocated_mb"], r["peak_reserved_mb"], r["peak_rss_mb"]] for r in report["timings"]],
            note=LOAD_NOTE)
        items += [Heading(f"(b) Seconds per training epoch (median of {report['epochs']} after {report['warmup']} "
                          "warm-up) and peak memory"), timings]
    if env["gpu"] and report.get("timings"):
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
    if "ddp" in report:
        d = report["ddp"]
        items.append(Heading(f"(c) DDP, world size 1, {d['backend']}"))
        if d.get("error"):
            items.append(f"FAILED: {d['error']} (watchdog: {d.get('watchdog', '-')}).")
        else:
            items.append(
                f"One epoch of `mentor` (batch scope) on synth-tiny through `DistributedDataParallel`: loss "
                f"{d['loss_ddp']:.6f} against {d['loss_plain']:.6f} without (relative {d['loss_rel_err']:.1e}); "
                f"parameters after the epoch differ by {d['param_rel_err']:.1e} relative; "
                f"{'ok' if d['ok'] else 'FAILED'}.")
    if "scaling" in report:
        sc = report["scaling"]
        backend = sc.get("backend", "nccl")
        items.append(Heading(f"(d) MENTOR at world size 1 and 2, {backend} (Eq. 21 split across the ranks)"))
        items += _scaling_items(sc)
    return Block(f"GPU check: {env['gpu']}" if env["gpu"] else "GPU check, run on the CPU", items)


def markdown(report: dict[str, Any]) -> str:
    from mentor_ray.report.render import block_md

    return block_md(report_block(report)) + "\n"


def _save(out: Path, report: dict[str, Any]) -> None:
    """``gpu_check.json`` and ``gpu_check.md`` of what has finished so far (rewritten after every part)."""
    from mentor_ray.common.io import write_atomic, write_json_atomic

    write_json_atomic(out / "gpu_check.json", report)
    write_atomic(out / "gpu_check.md", markdown(report))


def run_check(out: Path, device: str, datasets: list[str], tiktok: Path | None, epochs: int, warmup: int,
              command: str, write: Path | None = None, models: Sequence[tuple[str, str | None]] = TIMED) -> int:
    """All four parts; writes ``gpu_check.md`` and ``gpu_check.json`` into ``out`` after each of them, so that
    a run cut short keeps what it measured; 0 if (a), (c) and (d) hold."""
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
    work = out / ".work"  # the children's result files and rendezvous files
    work.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    log(f"device {device}; torch {torch.__version__}")
    report: dict[str, Any] = {"command": command, "environment": environment(device), "epochs": epochs,
                              "warmup": warmup, "complete": False}

    def save(**parts: Any) -> None:
        report.update(parts, wall_seconds=time.perf_counter() - t0)
        _save(out, report)

    save(agreement=check_agreement(device))
    sets = [(d, None) for d in datasets] + ([("tiktok", str(tiktok))] if tiktok is not None else [])
    timings: list[dict] = []

    def timed(row: dict) -> None:
        timings.append(row)
        save(timings=timings)

    time_training(device, sets, epochs, warmup, on_row=timed, models=models)
    save(timings=timings, ddp=check_ddp(device, work))
    save(scaling=check_scaling(device, sets, epochs, warmup, work))
    report["ok"] = (all(r["ok"] for r in report["agreement"]) and report["ddp"]["ok"]
                    and report["scaling"].get("ok", True))
    save(complete=True)
    from mentor_ray.report.render import block_text

    block = report_block(report)
    print(block_text(block))  # the terminal gets plain text, no Markdown
    if write is not None:
        from mentor_ray.benchmarks.bench import upsert_block

        upsert_block(write, f"gpu:{device.split(':')[0]}", markdown(report).rstrip("\n"))
        log(f"written to {write}")
    verdict = "all checks hold" if report["ok"] else "A CHECK FAILED"
    log(f"written {out / 'gpu_check.md'} and {out / 'gpu_check.json'}; {verdict}")
    return 0 if report["ok"] else 1
