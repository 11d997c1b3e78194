"""The graph stage: the graphs are built once per (dataset, k, options); the model gets torch CSR.

``build_graphs(ds, k=40, knn_norm="row")`` returns :class:`Graphs`: the symmetrically normalised
user-item adjacency (Eq. 1-2) and one frozen item kNN adjacency per modality (Eq. 4-6), built by DGL or
the built-in torch builder (identical graphs), cached on disk and in memory. A cache file carries a
checksum of its arrays; one that is cut short, corrupted or without it is named and rebuilt. DGL is only
imported here: training sees torch tensors only. How the graphs are built, normalised and cached:
``docs/architecture.md`` (*Graph stage*).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mentor_ray.common import io as cache
from mentor_ray.common.errors import ConfigError, shown
from mentor_ray.datasets.dataset import Dataset

log = logging.getLogger(__name__)

GRAPH_VERSION = 2  # bump when graph construction changes; old cache files are then ignored
CHECKSUM = "checksum"  # the cache file's array holding :func:`arrays_checksum` of all the others
KnnNorm = Literal["row", "sym", "none"]
KNN_NORMS: tuple[str, ...] = ("row", "sym", "none")
BUILDERS: tuple[str, ...] = ("auto", "dgl", "torch")

_MEMO: dict[str, "Graphs"] = {}  # in-process cache: trials and epochs in one process share graphs


@dataclass
class Graphs:
    """What the model needs: frozen sparse CSR adjacencies (no grad), plus provenance."""

    ui_adj: torch.Tensor  # (n_users + n_items, n_users + n_items) CSR, Eq. 1-2 normalisation
    item_adj: dict[str, torch.Tensor]  # modality -> (n_items, n_items) CSR kNN graph (Eq. 5-6)
    key: str
    k: int
    knn_norm: str
    from_cache: bool = False
    build_seconds: dict[str, float] = field(default_factory=dict)
    builder: str = "dgl"  # which builder made them ("dgl" or "torch"); cache files from before it: DGL

    def describe(self) -> str:
        """``built by dgl`` or ``cache hit (built by torch)``: the provenance for logs."""
        return f"cache hit (built by {self.builder})" if self.from_cache else f"built by {self.builder}"

    def summary(self) -> dict:
        out = {
            "key": self.key[:16],
            "k": self.k,
            "knn_norm": self.knn_norm,
            "from_cache": self.from_cache,
            "builder": self.builder,
            "ui_edges": int(self.ui_adj.values().numel()),
            "item_edges": {m: int(a.values().numel()) for m, a in self.item_adj.items()},
        }
        if self.build_seconds:
            out["build_seconds"] = {k: round(v, 3) for k, v in self.build_seconds.items()}
        return out


# --------------------------------------------------------------------------- builders


@functools.cache
def dgl_status() -> str | None:
    """None when DGL imports with this torch, else why not (one line). Asked once per process."""
    try:
        import dgl  # noqa: F401
    except Exception as exc:  # ImportError, or DGL's own errors when its C libraries do not match torch
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"{type(exc).__name__}: {first[:200]}"
    return None


def resolve_builder(builder: str) -> str:
    """``dgl`` or ``torch`` for a requested builder; ``auto`` is DGL where it loads."""
    if builder not in BUILDERS:
        raise ConfigError(f"graph builder = {builder!r}; allowed: {', '.join(BUILDERS)}")
    if builder == "torch":
        return "torch"
    reason = dgl_status()
    if reason is None:
        return "dgl"
    if builder == "dgl":
        raise ConfigError(f"graph builder = 'dgl' but DGL does not load here ({reason}); install the pinned "
                          "profile (MENTOR_RAY_PROFILE=pinned bash scripts/setup.sh) or use --builder torch")
    log.debug("DGL unavailable (%s); using the built-in graph builder", reason)
    return "torch"


# --------------------------------------------------------------------------- user-item graph


def user_item_graph(ds: Dataset):
    """The DGL heterograph of the training interactions, both directions."""
    import dgl

    u = torch.from_numpy(ds.train.users)
    i = torch.from_numpy(ds.train.items)
    return dgl.heterograph(
        {("user", "interacts", "item"): (u, i), ("item", "interacted_by", "user"): (i, u)},
        num_nodes_dict={"user": ds.n_users, "item": ds.n_items},
    )


def normalized_ui_adjacency(hg) -> torch.Tensor:
    """Symmetric 1/sqrt(|N_u||N_i|) adjacency over users then items, as torch CSR (Eq. 1-2)."""
    n_users, n_items = hg.num_nodes("user"), hg.num_nodes("item")
    u, i = hg.edges(etype="interacts")
    deg_u = hg.out_degrees(etype="interacts").double()  # |N_u|
    deg_i = hg.in_degrees(etype="interacts").double()  # |N_i|
    w = (deg_u[u] * deg_i[i]).rsqrt().float()
    rows = torch.cat([u, i + n_users])
    cols = torch.cat([i + n_users, u])
    n = n_users + n_items
    return _csr(rows, cols, torch.cat([w, w]), (n, n))


def normalized_ui_adjacency_torch(ds: Dataset) -> torch.Tensor:
    """:func:`normalized_ui_adjacency` without DGL: degrees by ``bincount`` over the same edge list."""
    u = torch.from_numpy(ds.train.users).long()
    i = torch.from_numpy(ds.train.items).long()
    deg_u = torch.bincount(u, minlength=ds.n_users).double()
    deg_i = torch.bincount(i, minlength=ds.n_items).double()
    w = (deg_u[u] * deg_i[i]).rsqrt().float()
    n = ds.n_users + ds.n_items
    return _csr(torch.cat([u, i + ds.n_users]), torch.cat([i + ds.n_users, u]), torch.cat([w, w]), (n, n))


# --------------------------------------------------------------------------- item kNN graphs


def knn_neighbours(features: torch.Tensor, k: int, chunk: int | None = None) -> torch.Tensor:
    """(n_items, k) indices of each item's top-k cosine neighbours (itself included; Eq. 4-5).

    Row-chunked: holds at most ``chunk x n_items`` similarities. Ties at the k-th value go to the
    lower item index, so the result does not depend on the top-k kernel's tie order.
    """
    n = features.shape[0]
    x = features.float()
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    chunk = chunk or max(1, min(n, (1 << 25) // max(n, 1)))  # ~128 MB of float32 similarities
    out = torch.empty((n, k), dtype=torch.long)
    for s in range(0, n, chunk):
        sim = x[s : s + chunk] @ x.T  # (chunk, n)
        if k == n:
            out[s : s + chunk] = torch.arange(n)
            continue
        vals, idx = sim.topk(k + 1, dim=1)  # one spare: a tie at the boundary shows as vals[k] == vals[k-1]
        out[s : s + chunk] = idx[:, :k].sort(dim=1).values
        tie_rows = (vals[:, k] == vals[:, k - 1]).nonzero().view(-1)
        if tie_rows.numel():  # rare (duplicate feature rows): pick tied entries by lowest index
            out[s + tie_rows] = _take_with_ties(sim[tie_rows], vals[tie_rows, k - 1 : k], k)
    return out


def _take_with_ties(sim: torch.Tensor, kth: torch.Tensor, k: int) -> torch.Tensor:
    """Per row: every entry above ``kth``, then entries equal to it by ascending index, k in all."""
    above = sim > kth
    tied = sim == kth
    need = k - above.sum(dim=1, keepdim=True)
    take = above | (tied & (tied.cumsum(dim=1, dtype=torch.int32) <= need))
    return take.nonzero()[:, 1].view(-1, k)  # row-major order: ascending index per row


def knn_graph(features: torch.Tensor, k: int):
    """The DGL graph of :func:`knn_edges`."""
    import dgl

    return dgl.graph(knn_edges(features, k), num_nodes=features.shape[0])


def normalized_knn_adjacency(g, norm: str) -> torch.Tensor:
    """``A[i, j]`` for edge j -> i, normalised as documented in the module docstring; torch CSR."""
    import dgl

    src, dst = g.edges()
    ones = torch.ones(g.num_edges())
    if norm == "row":
        w = dgl.nn.EdgeWeightNorm(norm="right")(g, ones)  # 1 / in_degree(i) = 1 / k
    elif norm == "sym":
        w = dgl.nn.EdgeWeightNorm(norm="both")(g, ones)  # 1 / sqrt(out_degree(j) in_degree(i))
    elif norm == "none":
        w = ones
    else:
        raise ConfigError(f"knn_norm = {norm!r}; allowed: {', '.join(KNN_NORMS)}")
    n = g.num_nodes()
    return _csr(dst, src, w.float(), (n, n))


def knn_edges(features: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(src, dst) of the kNN graph: an edge from each of item i's top-k neighbours to i."""
    n = features.shape[0]
    return knn_neighbours(features, k).reshape(-1), torch.arange(n).repeat_interleave(k)


def normalized_knn_adjacency_torch(src: torch.Tensor, dst: torch.Tensor, n: int, norm: str) -> torch.Tensor:
    """:func:`normalized_knn_adjacency` without DGL, with DGL's arithmetic: float32 degrees, and for
    ``sym`` the product ``out_deg(j)^-1/2 * in_deg(i)^-1/2`` (as ``EdgeWeightNorm(norm='both')``)."""
    ones = torch.ones(src.numel())
    in_deg = torch.zeros(n).index_add_(0, dst, ones)
    if norm == "row":
        w = ones / in_deg[dst]
    elif norm == "sym":
        out_deg = torch.zeros(n).index_add_(0, src, ones)
        w = out_deg[src].pow(-0.5) * in_deg[dst].pow(-0.5)
    elif norm == "none":
        w = ones
    else:
        raise ConfigError(f"knn_norm = {norm!r}; allowed: {', '.join(KNN_NORMS)}")
    return _csr(dst, src, w, (n, n))


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # built here from valid indices: skip torch's invariant checks (and its warning that they are off)
    coo = torch.sparse_coo_tensor(torch.stack([rows.long(), cols.long()]), values, size,
                                  check_invariants=False).coalesce()
    return coo.to_sparse_csr()


# --------------------------------------------------------------------------- build + cache


def graph_key(ds: Dataset, k: int, knn_norm: str) -> str:
    return cache.sha256_json(
        {"dataset": ds.content_hash, "k": k, "knn_norm": knn_norm, "modalities": ds.modalities, "v": GRAPH_VERSION}
    )


def build_graphs(ds: Dataset, k: int = 40, knn_norm: str = "row", use_cache: bool = True,
                 builder: str = "auto") -> Graphs:
    """All graphs of ``ds``: from the in-process memo, else the disk cache, else built by ``builder``
    (``auto``: DGL where it loads, else the built-in torch builder)."""
    if knn_norm not in KNN_NORMS:
        raise ConfigError(f"knn_norm = {knn_norm!r}; allowed: {', '.join(KNN_NORMS)}")
    if k < 1:
        raise ConfigError(f"knn_k = {k}; must be a positive integer")
    k_eff = min(k, ds.n_items)
    if k_eff < k:
        log.warning("%s: knn_k %d > %d items; using k = %d", ds.name, k, ds.n_items, k_eff)
    key = graph_key(ds, k_eff, knn_norm)
    if use_cache and key in _MEMO:
        return _MEMO[key]
    path = cache.cache_dir("graphs") / f"{key}.npz"
    graphs = _load(path, key, k_eff, knn_norm) if use_cache else None
    if graphs is None:
        graphs = _build(ds, k_eff, knn_norm, key, resolve_builder(builder))
        _save(path, graphs)
        log.info("%s: graphs built by %s in %.1fs, cached at %s", ds.name, graphs.builder,
                 sum(graphs.build_seconds.values()), path)
    else:
        log.info("%s: graph cache hit (%s, built by %s)", ds.name, path.name, graphs.builder)
    _MEMO[key] = graphs
    return graphs


def _build(ds: Dataset, k: int, knn_norm: str, key: str, builder: str) -> Graphs:
    """The graphs of ``ds`` from ``builder`` (``dgl`` or ``torch``, already resolved)."""
    if builder == "dgl":
        ui_adjacency = lambda: normalized_ui_adjacency(user_item_graph(ds))  # noqa: E731
        knn_adjacency = lambda f: normalized_knn_adjacency(knn_graph(f, k), knn_norm)  # noqa: E731
    else:
        ui_adjacency = lambda: normalized_ui_adjacency_torch(ds)  # noqa: E731
        knn_adjacency = lambda f: normalized_knn_adjacency_torch(*knn_edges(f, k), f.shape[0], knn_norm)  # noqa: E731
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    ui = ui_adjacency()
    seconds["user_item"] = time.perf_counter() - t0
    item_adj = {}
    for modality, feats in ds.features.items():
        t0 = time.perf_counter()
        item_adj[modality] = knn_adjacency(feats)
        seconds[f"knn_{modality}"] = time.perf_counter() - t0
        log.info("%s: %s kNN graph (k=%d, %s, %s builder) in %.1fs", ds.name, modality, k, knn_norm, builder,
                 seconds[f"knn_{modality}"])
    return Graphs(ui, item_adj, key, k, knn_norm, from_cache=False, build_seconds=seconds, builder=builder)


def to_arrays(g: Graphs) -> dict[str, np.ndarray]:
    """Plain numpy arrays of every graph (the cache file's content; also what crosses processes)."""
    meta = {"modalities": list(g.item_adj), "key": g.key, "k": g.k, "knn_norm": g.knn_norm, "builder": g.builder}
    out = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    for name, adj in {"ui": g.ui_adj, **{f"item.{m}": a for m, a in g.item_adj.items()}}.items():
        out[f"{name}.crow"] = adj.crow_indices().numpy()
        out[f"{name}.col"] = adj.col_indices().numpy()
        out[f"{name}.val"] = adj.values().numpy()
        out[f"{name}.shape"] = np.asarray(adj.shape, dtype=np.int64)
    return out


def from_arrays(z) -> Graphs:
    """The inverse of :func:`to_arrays` (``z``: a dict or an open ``.npz``)."""
    meta = json.loads(bytes(z["meta"]).decode())

    def tensor(key: str) -> torch.Tensor:
        # Arrays from Ray's object store are read-only views; the graphs are never written to, so they
        # are shared without a copy (and torch's "not writable" warning is moot).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(np.asarray(z[key]))

    def csr(name: str) -> torch.Tensor:
        shape = tuple(int(s) for s in z[f"{name}.shape"])
        # checked: these arrays come from a file or another process
        return torch.sparse_csr_tensor(tensor(f"{name}.crow"), tensor(f"{name}.col"), tensor(f"{name}.val"),
                                       size=shape, check_invariants=True)

    item_adj = {m: csr(f"item.{m}") for m in meta["modalities"]}
    return Graphs(csr("ui"), item_adj, meta["key"], meta["k"], meta["knn_norm"], from_cache=True,
                  builder=meta.get("builder", "dgl"))


def arrays_checksum(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """SHA-256 (32 uint8) over the name, dtype, shape and bytes of every array but :data:`CHECKSUM`."""
    h = hashlib.sha256()
    for name in sorted(n for n in arrays if n != CHECKSUM):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(memoryview(a.reshape(-1)).cast("B"))
    return np.frombuffer(h.digest(), dtype=np.uint8)


def _save(path: Path, g: Graphs) -> None:
    """Write the cache file: one ``.npz`` moved into place whole, its checksum inside it (so processes
    racing to write the same entry each rename a complete, self-checking file over the other's)."""
    arrays = to_arrays(g)
    arrays[CHECKSUM] = arrays_checksum(arrays)
    with cache.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def _load(path: Path, key: str, k: int, knn_norm: str) -> Graphs | None:
    """The graphs in the cache file ``path``, or None: absent, or (with a warning naming the file)
    unreadable, not a regular file, without a checksum or with a wrong one, or holding another key's
    graphs (a file copied over this one), so that the caller rebuilds it."""
    if not os.path.lexists(path):
        return None
    try:
        if not path.is_file():  # a FIFO or device would block or never end: named, and replaced
            raise OSError("not a regular file")
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        if CHECKSUM not in arrays:
            problem = "no checksum (an incomplete entry, or one from an older version)"
        elif not np.array_equal(arrays[CHECKSUM], arrays_checksum(arrays)):
            problem = "checksum mismatch (cut short or corrupted)"
        else:
            g = from_arrays(arrays)
            if (g.key, g.k, g.knn_norm) == (key, k, knn_norm):
                return g
            # another entry's file under this key's name (copied or swapped in): never used as this one
            problem = f"holds the graphs of another key ({shown(g.key, 20, quote=False)}, k={g.k}, {g.knn_norm})"
    except Exception as exc:  # a torn or flipped file fails in numpy, zipfile, json or torch: all mean rebuild
        first = shown((str(exc).strip().splitlines() or [""])[0], quote=False)
        problem = f"unreadable ({type(exc).__name__}: {first})" if first else f"unreadable ({type(exc).__name__})"
    log.warning("graph cache %s: %s; rebuilding it", path, problem)
    return None
