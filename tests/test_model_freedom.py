"""FREEDOM in mentor_ray's harness: the fused item graph for any number of modalities, the pruned training
graph, a gradient for every parameter, and 2-epoch training runs on ``synth-tiny`` (finite losses, valid
metrics, the same seed giving the same run)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mentor_ray.common import config
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets.graphs import build_graphs
from mentor_ray.model import Batch
from mentor_ray.model.freedom import Freedom
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


def _model(d, **settings):
    cfg = config.validate({"variant": "freedom", "dataset": "synth-tiny", "embedding_dim": 8, **settings})
    torch.manual_seed(0)
    m = Freedom.build(cfg, d)
    g = build_graphs(d, k=cfg.knn_k, knn_norm=cfg.knn_norm, use_cache=False, builder="torch")
    m.set_graphs(g.ui_adj, g.item_adj)
    return m, g


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities_every_parameter_gets_a_gradient(ds, n_mod):
    d = _with_modalities(ds, n_mod)
    m, g = _model(d, mm_image_weight=0.3)
    # S = w S_1 + (1 - w)/(M - 1) each other (M = 2: MMRec's w S_image + (1 - w) S_text); one modality: S_1
    shares = [1.0] if n_mod == 1 else [0.3] + [0.7 / (n_mod - 1)] * (n_mod - 1)
    expected = sum(w * a.to_dense() for w, a in zip(shares, g.item_adj.values()))
    torch.testing.assert_close(m.graph("mm").to_dense(), expected)
    torch.testing.assert_close(m.graph("mm.T").to_dense(), expected.T)
    m.start_epoch(0)
    batch = Batch(*(torch.as_tensor(a[:32]) for a in (d.train.users, d.train.items, d.train.items[::-1].copy())))
    total, terms = m.loss(batch)
    assert set(terms) == {"bpr", "modal_bpr"} and math.isfinite(float(total.detach()))
    assert terms["modal_bpr"] == 0.0  # the default weight (MMRec's first grid value)
    total.backward()
    assert all(p.grad is not None for p in m.parameters())  # DDP needs every one, even at weight 0
    u, i = m.user_item_embeddings()
    assert u.shape == (d.n_users, 8) and i.shape == (d.n_items, 8)


def test_pruning_keeps_the_share_of_edges_and_normalises_them(ds):
    m, g = _model(ds, dropout=0.8)
    n_edges = len(ds.train.users)
    m.start_epoch(0)
    a = m.graph("train").to_dense()
    n_keep = int(n_edges * 0.2)
    assert int((a != 0).sum()) == 2 * n_keep  # both directions, no duplicates
    torch.testing.assert_close(a, a.T)
    n_u = ds.n_users
    block = a[:n_u, n_u:]
    du, di = (block != 0).sum(1).float(), (block != 0).sum(0).float()
    nz = block.nonzero().T
    torch.testing.assert_close(block[nz[0], nz[1]], (du[nz[0]] * di[nz[1]]).rsqrt())  # by the kept degrees
    m.start_epoch(1)
    assert not torch.equal(m.graph("train").to_dense(), a)  # re-drawn every epoch
    m0, _ = _model(ds, dropout=0.0)
    m0.start_epoch(0)
    assert m0.graph("train") is m0.graph("ui")  # no pruning: the full graph


def _fit(ds, extra=()):
    cfg = config.make_config(flags={"variant": "freedom", "dataset": "synth-tiny"}, overrides=[*TINY, *extra])
    t = train.Trainer(cfg, ds=ds)
    assert isinstance(t.model, Freedom)
    return t, t.fit()


def test_two_epochs_on_synth_tiny_are_finite_and_repeatable(ds):
    t, a = _fit(ds, ["modal_bpr_weight=1e-3"])
    assert a["epochs_run"] == 2
    for h in t.history:
        assert all(math.isfinite(v) for v in h["train"].values())
        assert h["train"]["modal_bpr"] > 0
    for split in ("valid", "test"):
        assert all(0.0 <= v <= 1.0 for v in a[split].values())
    _, b = _fit(ds, ["modal_bpr_weight=1e-3"])
    assert a["valid"] == b["valid"] and a["test"] == b["test"]


@pytest.mark.parametrize("n_mod", [1, 3])
def test_trains_with_one_and_three_modalities(ds, n_mod):
    t, s = _fit(_with_modalities(ds, n_mod), ["max_epochs=1"])
    assert all(math.isfinite(v) for v in t.history[0]["train"].values())
    assert all(0.0 <= v <= 1.0 for v in s["valid"].values())
