"""FREEDOM in mentor_ray's harness: the fused item graph for any number of modalities, the pruned training
graph, and a gradient for every parameter. Its 2-epoch runs on ``synth-tiny`` are in
``test_models_common.py``."""

from __future__ import annotations

import pytest
import torch

from mentor_ray.common import config
from mentor_ray.datasets.graphs import build_graphs
from mentor_ray.model.freedom import Freedom
from tests.model_checks import checked_loss, train_batch, with_modalities


def _model(d, **settings):
    cfg = config.validate({"variant": "freedom", "dataset": "synth-tiny", "embedding_dim": 8, **settings})
    torch.manual_seed(0)
    m = Freedom.build(cfg, d)
    g = build_graphs(d, k=cfg.knn_k, knn_norm=cfg.knn_norm, use_cache=False, builder="torch")
    m.set_graphs(g.ui_adj, g.item_adj)
    return m, g


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities_every_parameter_gets_a_gradient(ds, n_mod):
    d = with_modalities(ds, n_mod)
    m, g = _model(d, mm_image_weight=0.3)
    # S = w S_1 + (1 - w)/(M - 1) each other (M = 2: MMRec's w S_image + (1 - w) S_text); one modality: S_1
    shares = [1.0] if n_mod == 1 else [0.3] + [0.7 / (n_mod - 1)] * (n_mod - 1)
    expected = sum(w * a.to_dense() for w, a in zip(shares, g.item_adj.values()))
    torch.testing.assert_close(m.graph("mm").to_dense(), expected)
    torch.testing.assert_close(m.graph("mm.T").to_dense(), expected.T)
    m.start_epoch(0)
    total, terms = checked_loss(m, train_batch(d), {"bpr", "modal_bpr"})
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
