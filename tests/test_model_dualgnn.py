"""DualGNN in mentor_ray's harness: the user co-occurrence graph against a dense count, the forward pass for 1-3
modalities against a dense float64 re-derivation, a gradient for every parameter, and 2-epoch training runs on
``synth-tiny`` (finite losses, valid metrics, the same seed giving the same run)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from mentor_ray.common import config
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model import Batch
from mentor_ray.model.dualgnn import DualGNN, cooccurrence_neighbours
from mentor_ray.training import trainer as train

TINY = ["embedding_dim=8", "batch_size=64", "eval_batch_size=16", "max_epochs=2", "lr=1e-3"]


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


def _model(d) -> DualGNN:
    torch.manual_seed(0)
    cfg = config.validate({"variant": "dualgnn", "dataset": "synth-tiny", "embedding_dim": 8, "reg_weight": 0.1})
    m = DualGNN.build(cfg, d)
    m.set_graphs(normalized_ui_adjacency_torch(d), {})
    m.start_epoch(0)
    return m


def test_cooccurrence_is_the_dense_count(ds):
    u, i = torch.from_numpy(ds.train.users), torch.from_numpy(ds.train.items)
    r = torch.zeros(ds.n_users, ds.n_items).index_put((u, i), torch.ones(len(u)))
    common = r @ r.T
    common.fill_diagonal_(0)
    k = 12
    idx, cnt, length = cooccurrence_neighbours(u, i, ds.n_users, ds.n_items, k, chunk=7)  # several blocks
    assert torch.equal(length, (common > 0).sum(1).clamp_max(k))
    for v in range(ds.n_users):
        n = int(length[v])
        assert torch.equal(cnt[v, :n], common[v, idx[v, :n]])
        assert torch.equal(cnt[v, :n], common[v].sort(descending=True).values[:n])  # the largest counts
        assert v not in idx[v, :n].tolist()
    same = cooccurrence_neighbours(u, i, ds.n_users, ds.n_items, k)
    assert all(torch.equal(a, b) for a, b in zip(same, (idx, cnt, length)))  # blocks change nothing


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_forward_is_the_dense_formula(ds, n_mod):
    d = _with_modalities(ds, n_mod)
    m = _model(d)
    a = normalized_ui_adjacency_torch(d).to_dense().double()
    s = m._user_graph[0].to_dense().double()
    with torch.no_grad():
        reps = []
        for mod, f in d.features.items():
            x = F.normalize(torch.cat([m.pref[mod], m.mlp[mod](f)]).double(), dim=1)
            reps.append(x + a @ x + a @ a @ x)  # n_layers = 2
        total = sum(reps)
        wu = m.weight_u.double()
        user = reps[0][: d.n_users] if n_mod == 1 else sum(
            wu[:, k] * r[: d.n_users] for k, r in enumerate([total, *reps[1:]]))
        want_u, want_i = user + s @ user, total[d.n_users :]
        got_u, got_i = m()
    torch.testing.assert_close(got_u.double(), want_u, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_i.double(), want_i, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities_every_parameter_gets_a_gradient(ds, n_mod):
    d = _with_modalities(ds, n_mod)
    m = _model(d)
    batch = Batch(*(torch.as_tensor(a[:32]) for a in (d.train.users, d.train.items, d.train.items[::-1].copy())))
    total, terms = m.loss(batch)
    assert set(terms) == {"bpr", "reg"} and math.isfinite(float(total.detach()))
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # DDP needs every one
    u, i = m.user_item_embeddings()
    assert u.shape == (d.n_users, 8) and i.shape == (d.n_items, 8)


def test_scores_are_the_last_training_forward(ds):
    m = _model(ds)
    batch = Batch(*(torch.as_tensor(a[:32]) for a in (ds.train.users, ds.train.items, ds.train.items[::-1].copy())))
    fresh = m.user_item_embeddings()  # before any training: computed
    m.loss(batch)
    with torch.no_grad():
        m.pref["image"].add_(1.0)  # as an optimiser step would: MMRec scores with the forward before it
    u, i = m.user_item_embeddings()
    assert torch.equal(u, fresh[0]) and torch.equal(i, fresh[1])


def test_the_padding_is_redrawn_each_epoch_from_torchs_generator(ds):
    m = _model(ds)
    graphs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        m.start_epoch(0)
        graphs.append(m._user_graph[0].to_dense())
    assert torch.equal(graphs[0], graphs[1])
    short = (m._cand_len > 0) & (m._cand_len < m.cfg.dualgnn_user_k)
    assert short.any() == (not torch.equal(graphs[0], graphs[2]))


def _fit(ds, extra=()):
    cfg = config.make_config(flags={"variant": "dualgnn", "dataset": "synth-tiny"}, overrides=[*TINY, *extra])
    t = train.Trainer(cfg, ds=ds)
    assert isinstance(t.model, DualGNN)
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
