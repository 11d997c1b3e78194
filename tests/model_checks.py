"""Helpers shared by the model tests (``test_model_<name>.py``, ``test_models_common.py``): a dataset with any
number of modalities, a batch of training triplets, and the checks every model's loss must pass; and by the
parity tests (``test_parity_<name>.py``): golden files, their batches and inputs, and the comparisons."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mentor_ray.model import Batch


def with_modalities(ds, n: int):
    """``ds`` with ``n`` modalities: its own, cut down or extended by random 7-column ones."""
    feats = dict(ds.features)
    g = torch.Generator().manual_seed(0)
    while len(feats) < n:
        feats[f"extra{len(feats)}"] = torch.randn(ds.n_items, 7, generator=g)
    return dataclasses.replace(ds, features=dict(list(feats.items())[:n]))


def train_batch(ds, n: int = 32) -> Batch:
    """The first ``n`` training pairs as triplets, the items reversed as negatives."""
    return Batch(*(torch.as_tensor(a[:n]) for a in (ds.train.users, ds.train.items, ds.train.items[::-1].copy())))


def checked_loss(m, batch: Batch, names: set[str], *args) -> tuple[torch.Tensor, dict[str, float]]:
    """``m.loss(batch, *args)``, checked: its terms are ``names``, the total finite and their sum."""
    total, terms = m.loss(batch, *args)
    assert set(terms) == names and math.isfinite(float(total.detach()))
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)
    return total, terms


def check_backward(m, total: torch.Tensor, ds, dim: int = 8) -> None:
    """After ``total.backward()`` every parameter has a nonzero gradient (DDP needs every one), and the
    scoring embeddings are ``dim`` wide."""
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    u, i = m.user_item_embeddings()
    assert u.shape == (ds.n_users, dim) and i.shape == (ds.n_items, dim)


# The parity tests (test_parity_<name>.py): mentor_ray's models against the golden files of MMRec's classes.

GOLDEN_DIR = Path(__file__).parent / "golden"
RTOL, ATOL = 1e-5, 1e-6  # float32 precision: the parity tests' tolerance


def load_golden(name: str) -> dict:
    """``tests/golden/<name>.json``, written by ``tools/parity/<name>.py``."""
    return json.loads((GOLDEN_DIR / f"{name}.json").read_text())


def f32(x) -> torch.Tensor:
    """A golden file's numbers (a number or nested lists) as a float32 tensor."""
    return torch.as_tensor(x, dtype=torch.float32)


def golden_batch(b: dict) -> Batch:
    """A golden file's batch of triplets (``users``, ``pos``, ``neg``)."""
    return Batch(*(torch.tensor(b[k]) for k in ("users", "pos", "neg")))


def pairs_dataset(n_users: int, n_items: int, users, items) -> SimpleNamespace:
    """What mentor_ray's graph stage reads of a dataset (its sizes and training pairs), for a golden input."""
    return SimpleNamespace(n_users=n_users, n_items=n_items, train=SimpleNamespace(users=users, items=items))


def backward_and_scores(m, total: torch.Tensor) -> torch.Tensor:
    """``total.backward()``, then ``m``'s score matrix (every user by every item)."""
    total.backward()
    u, i = m.user_item_embeddings()
    return u @ i.T


def check_terms(total: torch.Tensor, terms: dict[str, float], want_terms: dict, want_total: float) -> None:
    """A loss's terms and total against MMRec's: the same names, each within RTOL/ATOL, the total within RTOL."""
    assert set(terms) == set(want_terms)
    for k, v in want_terms.items():
        assert terms[k] == pytest.approx(v, rel=RTOL, abs=ATOL), k
    assert float(total.detach()) == pytest.approx(want_total, rel=RTOL)


def close(ours: torch.Tensor, theirs, msg: str | None = None) -> None:
    """``ours`` equals MMRec's numbers ``theirs`` within RTOL/ATOL (compared in float32)."""
    torch.testing.assert_close(ours.detach().float(), f32(theirs), rtol=RTOL, atol=ATOL, msg=msg)


def replay_kept(model, edges: dict, kept: dict) -> None:
    """``model.prune`` of the edges one MMRec ``pre_epoch_processing`` kept (``kept``: users, items), found by
    their positions in MMRec's edge list ``edges``."""
    index = {(u, i): k for k, (u, i) in enumerate(zip(edges["users"], edges["items"]))}
    model.prune(torch.tensor([index[p] for p in zip(kept["users"], kept["items"])]))


def kept_adjacency(kept: dict, n_users: int, n_items: int) -> torch.Tensor:
    """MMRec's pruned user-item graph, dense: the kept edges with their values, both directions."""
    n = n_users + n_items
    a = torch.zeros(n, n)
    for u, i, v in zip(kept["users"], kept["items"], kept["values"]):
        a[u, n_users + i] = a[n_users + i, u] = v
    return a
