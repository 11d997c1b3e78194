"""Kernels of the models: sparse propagation with precomputed transposes, block normalisation, fast
uniform noise, and a CPU thread pool for independent InfoNCE blocks, each checked against plain torch
(``tests/test_model.py``); the degree-sensitive edge pruning of FREEDOM and LayerGCN, checked against
MMRec (``tests/test_parity_freedom.py``, ``tests/test_parity_layergcn.py``); and the opt-in per-part
timer of a training step (:func:`part`, :func:`step_timer`)."""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import numpy as np
import torch


def spmm(adj: torch.Tensor, x: torch.Tensor, adj_t: torch.Tensor | None = None) -> torch.Tensor:
    """Sparse (CSR) ``adj @ x``, differentiable in ``x``; the backward uses the precomputed
    transpose ``adj_t`` instead of transposing ``adj`` on every call (torch's default)."""
    if adj_t is None or not (torch.is_grad_enabled() and x.requires_grad):
        return torch.sparse.mm(adj, x)
    return _SpMM.apply(adj, adj_t, x)


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj, adj_t, x):
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad):
        return None, None, torch.sparse.mm(ctx.adj_t, grad)


def uniform(*shape: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """U[0,1) float32 of ``shape``. On CUDA torch's generator. On CPU raw PCG64 bits from numpy
    (faster than torch's CPU generator; ``docs/benchmarks.md``) made floats by setting the exponent
    bits (23 random mantissa bits), seeded from torch's generator so ``torch.manual_seed`` keeps runs
    repeatable."""
    if torch.device(device).type != "cpu":
        return torch.rand(shape, device=device)

    n = int(np.prod(shape))
    seed = int(torch.randint(0, 2**62, (1,)))
    raw = np.random.PCG64(seed).random_raw((n + 1) // 2).view(np.int32)[:n]
    bits = torch.from_numpy(raw).view(shape)
    return bits.bitwise_and_(0x007FFFFF).bitwise_or_(0x3F800000).view(torch.float32).sub_(1.0)


def pad_rows_cols(adj: torch.Tensor, offset: int) -> torch.Tensor:
    """An (n, n) CSR matrix as the bottom-right block of an (offset + n) square CSR matrix."""
    crow = torch.cat([torch.zeros(offset, dtype=adj.crow_indices().dtype), adj.crow_indices()])
    size = offset + adj.shape[0]
    return torch.sparse_csr_tensor(crow, adj.col_indices() + offset, adj.values(), size=(size, size),
                                   check_invariants=False)  # built from a valid CSR


def propagate_blocks(x: torch.Tensor, adj: torch.Tensor, adj_t: torch.Tensor, n_layers: int, d: int):
    """sum_{l=0..L} A^l x (Eq. 1-3) for side-by-side blocks, returned as one tensor per d-wide block.

    One sparse matmul per layer serves every block; the backward applies the precomputed transpose
    to the re-assembled gradient. Returning separate blocks spares autograd the zero-filled
    full-width gradient buffers that column slices of one stacked tensor would cost.
    """
    return _PropagateBlocks.apply(x, adj, adj_t, n_layers, d)


class _PropagateBlocks(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, adj, adj_t, n_layers, d):
        ctx.adj_t, ctx.n_layers, ctx.shape = adj_t, n_layers, x.shape
        return tuple(b.contiguous() for b in power_sum(adj, x, n_layers).split(d, dim=1))

    @staticmethod
    def backward(ctx, *grads):
        n, width = ctx.shape
        ref = next(gb for gb in grads if gb is not None)
        g = torch.cat([gb if gb is not None else ref.new_zeros(n, width // len(grads)) for gb in grads], 1)
        return power_sum(ctx.adj_t, g, ctx.n_layers), None, None, None, None


def power_sum(adj: torch.Tensor, x: torch.Tensor, n_layers: int) -> torch.Tensor:
    """x + A x + ... + A^L x, accumulated in place."""
    if n_layers == 0:
        return x.clone()
    h = torch.sparse.mm(adj, x)
    total = x + h
    for _ in range(n_layers - 1):
        h = torch.sparse.mm(adj, h)
        total.add_(h)
    return total


def block_normalize(x: torch.Tensor, d: int) -> torch.Tensor:
    """Each node's d-wide blocks scaled to unit L2 norm (norms clamped at 1e-12), with a fused backward."""
    return _BlockNormalize.apply(x, d)


class _BlockNormalize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, d):
        blocks = x.view(x.shape[0], -1, d)
        inv = blocks.norm(dim=2, keepdim=True).clamp_min_(1e-12).reciprocal_()  # (N, k, 1)
        y = blocks * inv
        ctx.save_for_backward(y, inv)
        return y.view_as(x)

    @staticmethod
    def backward(ctx, g):
        y, inv = ctx.saved_tensors
        gb = g.view_as(y)
        # d(x/|x|) = (g - y (y . g)) / |x|
        return (gb - y * (y * gb).sum(dim=2, keepdim=True)).mul_(inv).view_as(g), None


PARALLEL_INFONCE_MIN_ROWS = 4096

# Rows per block of the chunked InfoNCE when ``infonce_chunk`` is 0. On the CPU a block is (all rows, chunk):
# at 512 one TikTok block is 19 MB, two side by side (two InfoNCE threads, or two DDP ranks) overflow a 32 MB L3,
# and 128 was 13-15% faster for one process at 2 threads and ~1.9x (not 1.5x) at 2 ranks on synth-baby's shape
# (docs/benchmarks.md, "Findings behind defaults (speed)", 2026-12-07). GPUs keep 512 until `bench gpu` says more.
INFONCE_CHUNK = {"cpu": 128}
INFONCE_CHUNK_OTHER = 512


def infonce_chunk(setting: int, device: torch.device) -> int:
    """Rows per InfoNCE block: ``setting``, or for 0 the device's default (:data:`INFONCE_CHUNK`)."""
    return setting or INFONCE_CHUNK.get(device.type, INFONCE_CHUNK_OTHER)


def parallel_cpu(fn, items: list, workers: int) -> list:
    """``[fn(x) for x in items]`` on ``workers`` threads with one intra-op thread each, largest first.

    The InfoNCE blocks are (N, chunk) matrix products with a short inner dimension (d = 64), on
    which two single-threaded GEMMs side by side beat one two-threaded GEMM. torch releases the GIL
    inside its kernels, and the chunked InfoNCE does its heavy work in its forward, so the threads
    overlap. The intra-op thread count is restored afterwards.
    """
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    before = torch.get_num_threads()

    def run(x):
        torch.set_num_threads(1)
        return fn(x)

    order = sorted(range(len(items)), key=lambda k: -items[k][0].shape[0])  # longest first
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {k: pool.submit(run, items[k]) for k in order}
            return [futures[k].result() for k in range(len(items))]
    finally:
        torch.set_num_threads(before)


# Degree-sensitive edge pruning (MMRec's pre_epoch_processing), shared by FREEDOM and LayerGCN, whose MMRec
# code has it alike.

_DEGREE_EPS = 1e-7  # MMRec adds it to every degree before the inverse square root (freedom.py _normalize_adj_m)


def register_edges(model: torch.nn.Module, train_users, train_items) -> None:
    """The training interactions, the edges that pruning samples from, as ``model``'s buffers ``edge_users``,
    ``edge_items`` and ``edge_weight`` (each edge's sampling weight, :func:`edge_values` over all of them).
    Buffers, so that ``.to(device)`` moves them; not persistent: they are data, not state. ``model`` has
    ``n_users`` and ``n_items``."""
    users = torch.as_tensor(train_users, dtype=torch.long)
    items = torch.as_tensor(train_items, dtype=torch.long)
    model.register_buffer("edge_users", users, persistent=False)
    model.register_buffer("edge_items", items, persistent=False)
    model.register_buffer("edge_weight", edge_values(users, items, model.n_users, model.n_items), persistent=False)


def n_kept(n_edges: int, dropout: float) -> int:
    """How many of ``n_edges`` training edges an epoch keeps: ``floor(n_edges (1 - dropout))``, at least one
    (MMRec's ``torch.multinomial`` fails on zero samples)."""
    return max(1, int(n_edges * (1.0 - dropout)))


def edge_values(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """Per edge ``(d_u + 1e-7)^-1/2 (d_i + 1e-7)^-1/2``, degrees counted over the given edges, in float32 as
    MMRec's ``_normalize_adj_m`` (so that the same seed draws the same edges as MMRec)."""
    du = torch.bincount(users, minlength=n_users).float() + _DEGREE_EPS
    di = torch.bincount(items, minlength=n_items).float() + _DEGREE_EPS
    return du.pow(-0.5)[users] * di.pow(-0.5)[items]


def pruned_graph(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """The (N, N) CSR user-item graph of the given (kept) edges, users first, both directions, each valued
    by :func:`edge_values` over these edges (MMRec's ``pre_epoch_processing``). Symmetric."""
    w = edge_values(users, items, n_users, n_items)
    i = items + n_users
    n = n_users + n_items
    idx = torch.stack([torch.cat([users, i]), torch.cat([i, users])])
    adj = torch.sparse_coo_tensor(idx, torch.cat([w, w]), (n, n), check_invariants=False).coalesce()
    return adj.to_sparse_csr()


# --------------------------------------------------------------------------- per-part step timer (opt-in)


class StepTimer:
    """Wall-clock seconds of the named parts of training steps, each EXCLUSIVE of the parts nested in it.

    The trainer marks ``forward`` (the loss), ``backward`` and ``optimizer``; MENTOR's loss marks
    ``propagation`` (feature MLPs, Eq. 1-3, 6, 7 and the views' noise: replicated on every rank),
    ``batch terms`` (BPR, L2), ``align, mask`` (Eq. 8-17) and ``infonce`` (Eq. 21); the DDP comm hook
    :func:`timed_allreduce_hook` marks ``all-reduce`` inside ``backward``. So ``forward`` is what the loss
    costs besides MENTOR's parts, ``backward`` the backward pass without the gradient all-reduce. On CUDA
    every boundary synchronises the device (the numbers are the kernels' time, and the step is slower).
    """

    def __init__(self, device: torch.device | str | None = None):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._cuda = device is not None and torch.device(device).type == "cuda"
        self._stack: list[list] = []  # [start, seconds of the parts nested in it]

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        self._sync()
        frame = [time.perf_counter(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._sync()
            elapsed = time.perf_counter() - frame[0]
            self._stack.pop()
            if self._stack:
                self._stack[-1][1] += elapsed
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed - frame[1]
            self.calls[name] = self.calls.get(name, 0) + 1


# The parts, in the order of a step; "propagation" and "backward" (mostly the transposes of the feature MLPs and
# of the propagation) run in full on every DDP rank, the others are divided among the ranks (or are the
# all-reduce and the optimiser step).
STEP_PARTS = ("propagation", "infonce", "align, mask", "batch terms", "forward", "backward", "all-reduce",
              "optimizer")
REPLICATED_PARTS = ("propagation", "backward")


def replicated_share(seconds: dict[str, float]) -> float:
    """The share of a timed step spent in :data:`REPLICATED_PARTS` (0 for an empty record)."""
    total = sum(seconds.values())
    return sum(seconds.get(k, 0.0) for k in REPLICATED_PARTS) / total if total > 0 else 0.0


_TIMER: StepTimer | None = None
_OFF = contextlib.nullcontext()  # reusable: what part() hands out while no timer runs


def part(name: str):
    """``with part(name):`` times the block into the running :class:`StepTimer`; without one (the default)
    a shared no-op context, so the marks cost nothing measurable."""
    timer = _TIMER
    return _OFF if timer is None else timer.part(name)


@contextlib.contextmanager
def step_timer(device: torch.device | str | None = None) -> Iterator[StepTimer]:
    """Times every :func:`part` inside the block (this process, every thread) into a new :class:`StepTimer`."""
    global _TIMER
    before, _TIMER = _TIMER, StepTimer(device)
    try:
        yield _TIMER
    finally:
        _TIMER = before


def timed_allreduce_hook(group, bucket):
    """A DDP comm hook that is DDP's default all-reduce (divide by the world size, sum over the ranks); while a
    :class:`StepTimer` runs, it waits for it inside the hook, timed as part ``all-reduce``: waiting serialises
    the communication with the rest of the backward pass, so that the two can be told apart. The trainer
    registers it only when asked to time its steps (``MENTOR_RAY_STEP_TIMER=1``)."""
    import torch.distributed as dist

    tensor = bucket.buffer().div_(dist.get_world_size(group))
    if _TIMER is None:  # no timer running: DDP's default, overlapped with the rest of the backward pass
        return dist.all_reduce(tensor, group=group, async_op=True).get_future().then(lambda fut: fut.value()[0])
    with part("all-reduce"):
        work = dist.all_reduce(tensor, group=group, async_op=True)
        work.wait()
    return work.get_future().then(lambda fut: fut.value()[0])


def gather_rows(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Every rank's rows of ``x`` (any count each), in rank order, differentiably; this rank's offset among
    them; their total."""
    import torch.distributed as dist

    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    sizes_ = [int(s) for s in sizes]
    rank = dist.get_rank()
    return _GatherRows.apply(x, sizes_, rank), sum(sizes_[:rank]), sum(sizes_)


class _GatherRows(torch.autograd.Function):
    """all_gather of unequal row counts (padded to the largest); the backward sums every rank's gradient
    of the gathered rows (all_reduce, which every backend has) and keeps this rank's."""

    @staticmethod
    def forward(ctx, x, sizes, rank):
        import torch.distributed as dist

        ctx.sizes, ctx.rank = sizes, rank
        padded = x.new_zeros((max(sizes), *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None
