"""Shared fixtures: an isolated cache per test session, tiny dataset builders, the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATASETS = SHARED / "datasets"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own cache root, so tests never read a user's cache."""
    old = os.environ.get("MENTOR_RAY_CACHE")
    os.environ["MENTOR_RAY_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("MENTOR_RAY_CACHE", None)
    else:
        os.environ["MENTOR_RAY_CACHE"] = old


def _dgl_status() -> str | None:
    from mentor_ray.datasets.graphs import dgl_status

    return dgl_status()


needs_dgl = pytest.mark.skipif(
    _dgl_status() is not None,
    reason=f"DGL does not load here ({_dgl_status()}); the current install profile has no DGL",
)


@pytest.fixture(scope="module")
def local_ray():
    """A private single-machine Ray for the tests of a module (2 CPUs), shut down after them."""
    ray = pytest.importorskip("ray")
    from mentor_ray.training.ray_train import ensure_ray

    if ray.is_initialized():
        ray.shutdown()
    ensure_ray(num_cpus=2, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ds():
    """The ``synth-tiny`` dataset, loaded once per module (a module may define its own ``ds``)."""
    from mentor_ray.datasets import dataset as data

    return data.load_dataset("synth-tiny")


@pytest.fixture
def tiktok_root() -> Path:
    if not (SHARED_DATASETS / "tiktok" / "tiktok.inter").exists():
        pytest.skip(f"real data not available: {SHARED_DATASETS / 'tiktok'} is absent (it exists only in CI and dev)")
    return SHARED_DATASETS


def write_dataset(
    root: Path,
    name: str = "toy",
    rows: list[tuple] | None = None,
    header: str = "userID\titemID\trating\ttimestamp\tx_label",
    features: dict[str, np.ndarray] | None = None,
    n_items: int = 6,
) -> Path:
    """A small MMRec dataset directory under ``root``; rows are (user, item, rating, ts, x_label)."""
    if rows is None:
        rows = [
            (0, 0, 1, 0, 0), (0, 1, 1, 0, 0), (0, 2, 1, 0, 1), (0, 3, 1, 0, 2),
            (1, 1, 1, 0, 0), (1, 4, 1, 0, 0), (1, 5, 1, 0, 2),
            (2, 5, 1, 0, 1),  # user 2: no training interaction; item 5: never in training
            (3, 0, 1, 0, 0),
        ]
    if features is None:
        rng = np.random.default_rng(0)
        features = {"image": rng.random((n_items, 4)).astype(np.float16), "text": rng.random((n_items, 3))}
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    lines = [header] + ["\t".join(str(v) for v in r) for r in rows]
    (d / f"{name}.inter").write_text("\n".join(lines) + "\n")
    for m, arr in features.items():
        np.save(d / f"{m}_feat.npy", arr)
    return d
