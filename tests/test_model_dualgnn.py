"""DualGNN in mentor_ray's harness: the user co-occurrence graph against a dense count, the forward pass for 1-3
modalities against a dense float64 re-derivation, and a gradient for every parameter. Its 2-epoch runs on
``synth-tiny`` are in ``test_models_common.py``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mentor_ray.common import config
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model.dualgnn import DualGNN, cooccurrence_neighbours
from tests.model_checks import check_backward, checked_loss, train_batch, with_modalities


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
    d = with_modalities(ds, n_mod)
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
    d = with_modalities(ds, n_mod)
    m = _model(d)
    total, _ = checked_loss(m, train_batch(d), {"bpr", "reg"})
    check_backward(m, total, d)


def test_scores_are_the_last_training_forward(ds):
    m = _model(ds)
    batch = train_batch(ds)
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
