"""Synthetic ``synth-*`` datasets with planted structure, written in the MMRec layout.

``ensure_preset(name)`` generates a preset of :data:`PRESETS` into the cache on first use (once across
processes) and returns its directory; ``write(preset(name), directory)`` writes one anywhere. Every
synthetic dataset goes through the real loader (:mod:`mentor_ray.datasets.dataset`), so every code
path is the one real data takes, and its name starts with ``synth-`` so that no log line or table can
pass it off as real data. The generative model: ``docs/data.md`` (*Synthetic presets*).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from mentor_ray.common import io as cache
from mentor_ray.common.errors import DataError
from mentor_ray.datasets.mmrec import confined_file, write_inter

log = logging.getLogger(__name__)

PREFIX = "synth-"
GENERATOR_VERSION = 2  # bump when the generated data would change (2: bit-exact under any numpy or BLAS)
MIN_PER_USER = 5
CHECKSUMS = "checksums.json"  # SHA-256 of every file of a generated directory, written last


@dataclass(frozen=True)
class Modality:
    name: str
    dim: int
    noise: float  # std of the added noise, relative to the std of the clean view
    relu: bool = False


@dataclass(frozen=True)
class SyntheticSpec:
    name: str
    n_users: int
    n_items: int
    n_interactions: int
    modalities: tuple[Modality, ...]
    n_factors: int = 32
    n_clusters: int = 50
    beta: float = 6.0  # strength of user-item affinity in the sampling logits
    zipf_a: float = 0.8  # popularity tail exponent
    max_per_user: int = 300
    seed: int = 0

    def check(self) -> None:
        cap = min(self.max_per_user, self.n_items // 2)
        if cap < MIN_PER_USER or self.n_interactions < MIN_PER_USER * self.n_users:
            raise DataError(f"{self.name}: needs at least {MIN_PER_USER} interactions per user and 10+ items")
        if self.n_interactions > cap * self.n_users:
            raise DataError(f"{self.name}: {self.n_interactions} interactions exceed {cap} per user")


_PAPER_MODALITIES = (Modality("image", 4096, noise=2.0, relu=True), Modality("text", 384, noise=0.8))

PRESETS: dict[str, SyntheticSpec] = {
    s.name: s
    for s in (
        SyntheticSpec(
            "synth-tiny", 60, 40, 480,
            (Modality("image", 24, 2.0, relu=True), Modality("text", 16, 0.8)),
            n_factors=8, n_clusters=4,
        ),
        SyntheticSpec(
            "synth-small", 2000, 1000, 20000,
            (Modality("image", 256, 2.0, relu=True), Modality("text", 64, 0.8)),
            n_factors=16, n_clusters=20,
        ),
        # Users, items and interactions of the paper's Table 1; 4096-d image and 384-d text.
        SyntheticSpec("synth-baby", 19445, 7050, 160792, _PAPER_MODALITIES),
        SyntheticSpec("synth-sports", 35598, 18357, 296337, _PAPER_MODALITIES),
        SyntheticSpec("synth-clothing", 39387, 23033, 278677, _PAPER_MODALITIES),
    )
}


def is_synthetic_name(name: str) -> bool:
    return name.startswith(PREFIX)


def preset(name: str, seed: int | None = None) -> SyntheticSpec:
    if name not in PRESETS:
        raise DataError(f"--dataset {name}: unknown synthetic preset; allowed: {', '.join(PRESETS)}")
    spec = PRESETS[name]
    return spec if seed is None else replace(spec, seed=seed)


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class SyntheticData:
    table: pa.Table  # MMRec columns: userID itemID rating timestamp x_label
    features: dict[str, np.ndarray]  # modality -> (n_items, dim) float32
    item_topic: np.ndarray  # (n_items,) the planted topic of each item (not written to disk)


def generate(spec: SyntheticSpec) -> SyntheticData:
    """The interactions, features and planted item topics of ``spec``.

    Bit-exact under any numpy, BLAS or CPU: beyond the random draws (numpy's ``Generator`` streams, which
    numpy keeps stable), the generator uses only elementwise IEEE operations (correctly rounded, so SIMD
    cannot change them), matrix products whose every partial sum is exact (:func:`_exact_matmul`), sums in
    a fixed order (:func:`_fixed_sum`) and ``math.log1p``. numpy 1.26 and 2.x gave features that differed by
    up to 7e-7 with ``np.tanh``, BLAS products and ``ndarray.std``, so a preset had two content hashes.
    """
    spec.check()
    rng = np.random.default_rng([spec.seed, GENERATOR_VERSION])
    r = spec.n_factors
    centroids = rng.standard_normal((spec.n_clusters, r))
    item_topic = rng.integers(spec.n_clusters, size=spec.n_items)
    items_f = _unit(centroids[item_topic] + 0.6 * rng.standard_normal((spec.n_items, r)))
    a, b = rng.integers(spec.n_clusters, size=(2, spec.n_users))
    second = rng.random(spec.n_users) < 0.3  # 30% of users have a second interest
    users_f = _unit(centroids[a] + 0.5 * second[:, None] * centroids[b] + 0.6 * rng.standard_normal((spec.n_users, r)))
    popularity = -spec.zipf_a * np.array([math.log1p(float(v)) for v in rng.permutation(spec.n_items)])

    counts = _activity(spec, rng)
    users, items = _sample_items(spec, rng, users_f, items_f, popularity, counts)
    labels = _split_labels(rng, users, counts)
    table = pa.table(
        {
            "userID": users,
            "itemID": items,
            "rating": np.ones(users.size),
            "timestamp": np.zeros(users.size, dtype=np.int64),
            "x_label": labels,
        }
    )
    features = {m.name: _feature_view(rng, items_f, m) for m in spec.modalities}
    return SyntheticData(table, features, item_topic)


_GRID = 2.0**-20  # inputs of a product are rounded to multiples of this (2^-20 ~ 1e-6: far below any signal)


def _on_grid(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64) * (1 / _GRID)) * _GRID  # scaling by a power of 2 is exact


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` after rounding both to :data:`_GRID`: every product is then an integer multiple of
    ``_GRID**2`` and every partial sum one below 2**53 of them, so float64 represents each exactly and the
    result is the same whatever order or blocking (or FMA) the BLAS uses."""
    a, b = _on_grid(a), _on_grid(b)
    if a.size and b.size:
        bound = float(np.abs(a).max()) * float(np.abs(b).max()) * a.shape[1] / _GRID**2
        if bound >= 2.0**53:
            raise ValueError(f"synthetic generator: a product of magnitude up to {bound:.3g} grid units "
                             "would not be exact in float64")
    return a @ b


def _fixed_sum(x: np.ndarray) -> np.ndarray:
    """The sum over the last axis in one fixed pairwise order made of elementwise adds (numpy's own
    ``sum`` picks its blocking by version and CPU)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    size = 1 << max(0, (n - 1).bit_length())
    if size != n:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (size - n,))], axis=-1)
    while x.shape[-1] > 1:
        x = x[..., 0::2] + x[..., 1::2]
    return x[..., 0]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(_fixed_sum(x * x))[:, None]


def _activity(spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: >= 5 each, long-tailed, summing exactly to ``n_interactions``."""
    cap = min(spec.max_per_user, spec.n_items // 2) - MIN_PER_USER
    extra_total = spec.n_interactions - MIN_PER_USER * spec.n_users
    weight = rng.lognormal(0.0, 1.2, spec.n_users)
    extra = np.minimum(np.floor(weight / _fixed_sum(weight) * extra_total).astype(np.int64), cap)
    while (left := extra_total - int(extra.sum())) > 0:  # hand out the remainder, heaviest first
        room = np.flatnonzero(extra < cap)
        pick = room[np.argsort(-weight[room], kind="stable")[:left]]
        extra[pick] += 1
    return extra + MIN_PER_USER


def _sample_items(spec, rng, users_f, items_f, popularity, counts) -> tuple[np.ndarray, np.ndarray]:
    """Per user, ``counts[u]`` distinct items from softmax(beta <u, v> + b) by Gumbel top-k."""
    users_out, items_out = [], []
    chunk = max(1, (1 << 22) // spec.n_items)
    for s in range(0, spec.n_users, chunk):
        e = min(spec.n_users, s + chunk)
        affinity = _exact_matmul(users_f[s:e], items_f.T)
        keys = spec.beta * affinity + popularity + rng.gumbel(size=(e - s, spec.n_items))
        k = int(counts[s:e].max())
        top = np.argpartition(-keys, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), axis=1, kind="stable"), 1)
        keep = np.arange(k)[None, :] < counts[s:e, None]
        users_out.append(np.repeat(np.arange(s, e), counts[s:e]))
        items_out.append(top[keep])
    users, items = np.concatenate(users_out), np.concatenate(items_out).astype(np.int64)
    order = np.lexsort((items, users))
    return users[order], items[order]


def _split_labels(rng: np.random.Generator, users: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """8:1:1 per user at random, with at least one valid and one test interaction per user."""
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    order = np.lexsort((rng.random(users.size), users))  # random order within each user
    position = np.empty(users.size, dtype=np.int64)
    position[order] = np.arange(users.size) - np.repeat(start, counts)
    n_eval = np.maximum(1, np.round(0.1 * counts)).astype(np.int64)[users]
    return np.where(position < n_eval, 2, np.where(position < 2 * n_eval, 1, 0)).astype(np.int64)


def _squash(x: np.ndarray) -> np.ndarray:
    """x / sqrt(1 + x^2): tanh's shape from correctly rounded operations (``np.tanh``'s SIMD code differs
    between numpy versions)."""
    return x / np.sqrt(1.0 + x * x)


def _feature_view(rng: np.random.Generator, items_f: np.ndarray, m: Modality) -> np.ndarray:
    """A nonlinear, noisy view of 3/4 of the latent factors: a random two-layer map plus Gaussian noise
    (std ``m.noise`` times the clean view's), rows in chunks so memory stays bounded at 4096-d."""
    r = items_f.shape[1]
    seen = rng.permutation(r)[: max(1, (3 * r) // 4)]
    hidden_dim = 64
    w1 = rng.standard_normal((seen.size, hidden_dim)) * (2.0 / math.sqrt(seen.size))
    w2 = rng.standard_normal((hidden_dim, m.dim)) * (1.0 / math.sqrt(hidden_dim))
    hidden = _squash(_exact_matmul(items_f[:, seen], w1))
    out = np.empty((items_f.shape[0], m.dim), dtype=np.float32)
    for s in range(0, out.shape[0], 4096):
        clean = _exact_matmul(hidden[s : s + 4096], w2)
        flat = clean.reshape(-1)
        mean = float(_fixed_sum(flat)) / flat.size
        std = math.sqrt(float(_fixed_sum((flat - mean) ** 2)) / flat.size)
        noisy = clean + (m.noise * std) * rng.standard_normal(clean.shape)
        out[s : s + 4096] = np.maximum(noisy, 0.0) if m.relu else noisy  # float64 -> float32: correctly rounded
    return out


# --------------------------------------------------------------------------- on disk


def write(spec: SyntheticSpec, directory: Path) -> Path:
    """Generate ``spec`` into ``directory`` (created; must not exist) in the MMRec layout."""

    t0 = time.perf_counter()
    generated = generate(spec)
    table = generated.table
    directory.mkdir(parents=True)
    files = [directory / f for f in _files(spec)]
    write_inter(table, files[0])
    for name, arr in generated.features.items():
        np.save(directory / f"{name}_feat.npy", arr)
    cache.write_json_atomic(directory / "synthetic.json", _meta(spec))
    cache.write_checksums(directory / CHECKSUMS, files)  # last: its presence marks a complete directory
    log.info(
        "generated %s (seed %d): %d users, %d items, %d interactions in %.1fs",
        spec.name, spec.seed, spec.n_users, spec.n_items, table.num_rows, time.perf_counter() - t0,
    )
    return directory


def _files(spec: SyntheticSpec) -> list[str]:
    """The files a generation of ``spec`` consists of (all in :data:`CHECKSUMS`)."""
    return [f"{spec.name}.inter", *(f"{m.name}_feat.npy" for m in spec.modalities), "synthetic.json"]


def _meta(spec: SyntheticSpec) -> dict:
    """What ``synthetic.json`` holds, as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps({"generator_version": GENERATOR_VERSION, "spec": asdict(spec), "synthetic": True}))


def ensure_preset(name: str, seed: int | None = None) -> Path:
    """The cache directory of preset ``name``, generated on first use (safe across processes)."""
    spec = preset(name, seed)
    folder = name if seed is None else f"{name}-seed{spec.seed}"
    directory = cache.cache_dir("datasets") / folder
    if _cached_problem(directory, spec) is None:
        return directory
    with _lock(directory.with_suffix(".lock")):
        problem = _cached_problem(directory, spec)
        if problem is None:  # another process made it
            return directory
        if problem:  # a cached copy that does not check out: named, and made again
            log.warning("synthetic dataset cache %s; regenerating %s", problem, folder)
        else:
            log.info("generating %s into the cache (first use; later calls reuse it)", name)
        tmp = directory.parent / f".{folder}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            write(spec, tmp)
            shutil.rmtree(directory, ignore_errors=True)
            tmp.rename(directory)
            log.info("%s written to %s", name, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _cached_problem(directory: Path, spec: SyntheticSpec) -> str | None:
    """None when ``directory`` holds a complete generation of ``spec`` whose every file has its recorded
    checksum; "" when there is no such generation (first use, another spec or generator version); else
    what is wrong with the cached copy, naming the file.

    Before anything is read, each file to be read (the checksum file, ``synthetic.json``, each file the
    checksum file lists) must be a regular file inside ``directory``: a FIFO or device in its place would
    block the read, and a listed name such as ``../x`` or ``/dev/zero`` would hash a file outside the cache.
    """
    if not os.path.lexists(directory / "synthetic.json") and not os.path.lexists(directory / CHECKSUMS):
        return ""
    try:
        for name in (CHECKSUMS, "synthetic.json"):
            if os.path.lexists(directory / name):
                confined_file(directory, name)
        recorded = cache.read_json(directory / CHECKSUMS)
        listed = recorded.get("sha256") if isinstance(recorded, dict) else None
        for name in sorted(listed) if isinstance(listed, dict) else ():
            if os.path.lexists(directory / name):  # a missing one is said by checksum_problem
                confined_file(directory, name)
    except DataError as exc:
        return str(exc)
    if cache.read_json(directory / "synthetic.json") == _meta(spec):
        return cache.checksum_problem(directory / CHECKSUMS)
    if (directory / CHECKSUMS).exists():  # another spec, or its synthetic.json is what got corrupted
        return cache.checksum_problem(directory / CHECKSUMS) or ""
    return ""


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
