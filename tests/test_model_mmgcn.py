"""MMGCN in mentor_ray's harness: any number of modalities, a gradient for every trained parameter, its graph,
and 2-epoch training runs on ``synth-tiny`` (finite losses, valid metrics, the same seed giving the same run)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mentor_ray.common import config
from mentor_ray.datasets import dataset as data
from mentor_ray.model import Batch
from mentor_ray.model.mmgcn import MMGCN, mean_adjacency
from mentor_ray.training import trainer as train

TINY = ["embedding_dim=8", "batch_size=64", "eval_batch_size=16", "max_epochs=2"]


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset("synth-tiny")


def _with_modalities(ds, n: int):
    """synth-tiny with ``n`` modalities: its own, cut down or extended by a random third."""
    feats = dict(ds.features)
    g = torch.Generator().manual_seed(0)
    while len(feats) < n:
        feats[f"extra{len(feats)}"] = torch.randn(ds.n_items, 7, generator=g)
    return dataclasses.replace(ds, features=dict(list(feats.items())[:n]))


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities_every_parameter_gets_a_gradient(ds, n_mod):
    d = _with_modalities(ds, n_mod)
    torch.manual_seed(0)
    m = MMGCN.build(config.validate({"variant": "mmgcn", "dataset": "synth-tiny", "embedding_dim": 8}), d)
    assert list(m.gcn) == list(d.features)
    first, *rest = m.gcn.values()  # the first modality plays MMRec's v_gcn: projected to 256 first
    assert first.mlp.out_features == 256 and all(g.mlp is None for g in rest)
    # MMRec's ID embeddings and preferences are never trained: buffers, saved with the model
    frozen = {"id_embedding", *(f"gcn.{k}.preference" for k in d.features)}
    assert frozen <= set(m.state_dict()) and not frozen & set(dict(m.named_parameters()))
    batch = Batch(*(torch.as_tensor(a[:32]) for a in (d.train.users, d.train.items, d.train.items[::-1].copy())))
    total, terms = m.loss(batch)
    assert set(terms) == {"bpr", "reg"} and math.isfinite(float(total.detach()))
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # DDP needs every one
    u, i = m.user_item_embeddings()
    assert u.shape == (d.n_users, 8) and i.shape == (d.n_items, 8)


def test_mean_adjacency_is_d_inverse_a_with_empty_rows_for_isolated_nodes():
    users, items = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])  # item 2 isolated; (1, 1) twice
    a = torch.zeros(5, 5, dtype=torch.float64)
    for u, i in zip(users, items):
        a[u, 2 + i] += 1
        a[2 + i, u] += 1
    deg = a.sum(1, keepdim=True)
    expected = torch.where(deg > 0, a / deg.clamp_min(1), 0.0)  # PyG's mean over repeated edges
    torch.testing.assert_close(mean_adjacency(users, items, 2, 3).to_dense().double(), expected)


def _fit(ds, extra=()):
    cfg = config.make_config(flags={"variant": "mmgcn", "dataset": "synth-tiny"}, overrides=[*TINY, *extra])
    t = train.Trainer(cfg, ds=ds)
    assert isinstance(t.model, MMGCN)
    return t, t.fit()


def test_two_epochs_on_synth_tiny_are_finite_and_repeatable(ds):
    t, a = _fit(ds)
    assert a["epochs_run"] == 2
    for h in t.history:
        assert all(math.isfinite(v) for v in h["train"].values())
    for split in ("valid", "test"):
        assert all(0.0 <= v <= 1.0 for v in a[split].values())
    _, b = _fit(ds)
    assert a["valid"] == b["valid"] and a["test"] == b["test"]


@pytest.mark.parametrize("n_mod", [1, 3])
def test_trains_with_one_and_three_modalities(ds, n_mod):
    t, s = _fit(_with_modalities(ds, n_mod), ["max_epochs=1"])
    assert all(math.isfinite(v) for v in t.history[0]["train"].values())
    assert all(0.0 <= v <= 1.0 for v in s["valid"].values())
