"""LATTICE in mentor_ray's harness: any number of modalities (its item graph against a dense float64
re-derivation) and the once-per-epoch graph rebuild. Its 2-epoch runs on ``synth-tiny`` are in
``test_models_common.py``."""

from __future__ import annotations

import pytest
import torch

from mentor_ray.common import config
from mentor_ray.model.lattice import Lattice, _knn_edges
from tests.model_checks import checked_loss, train_batch, with_modalities


def _model(d, **kw) -> Lattice:
    torch.manual_seed(0)
    values = {"variant": "lattice", "dataset": "synth-tiny", "embedding_dim": 8, "lattice_feat_dim": 8,
              "reg_weight": 1e-3, "lattice_knn_k": 5, **kw}
    return Lattice.build(config.validate(values), d)


def _dense_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    xn = x / x.norm(dim=1, keepdim=True)
    sim = xn @ xn.T
    val, idx = sim.topk(k, dim=1)
    return torch.zeros_like(sim).scatter(1, idx, val)


def _laplacian(a: torch.Tensor) -> torch.Tensor:
    d = a.sum(1).pow(-0.5)
    return d[:, None] * a * d[None, :]


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_item_graph_is_the_dense_formula(ds, n_mod):
    """S = (1 - lambda) L(sum_m w_m knn(W_m f_m + b_m)) + lambda sum_m w_m L(knn(f_m)), dense in float64."""
    d = with_modalities(ds, n_mod)
    m = _model(d, lattice_lambda=0.7)
    if m.modal_weight is not None:
        with torch.no_grad():
            m.modal_weight.copy_(torch.linspace(-0.5, 0.8, n_mod))
    with torch.no_grad():
        rows, cols, val = m.item_graph()
        ours = torch.zeros(d.n_items, d.n_items, dtype=torch.float64).index_put(
            (rows, cols), val.double(), accumulate=True)
        w = torch.softmax(m.modal_weight.double(), 0) if n_mod > 1 else torch.ones(1, dtype=torch.float64)
        learned = sum(w[k] * _dense_knn(m.trs[mod](m.feat[mod]).double(), 5) for k, mod in enumerate(d.features))
        frozen = sum(w[k] * _laplacian(_dense_knn(f.double(), 5)) for k, f in enumerate(d.features.values()))
        want = 0.3 * _laplacian(learned) + 0.7 * frozen
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-7)


def test_similarity_blocks_do_not_change_the_values(ds):
    x = ds.features["image"]
    idx = torch.randint(0, ds.n_items, (ds.n_items, 4), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_knn_edges(x, idx, chunk=7)[2], _knn_edges(x, idx)[2])


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_the_first_batch_of_an_epoch_trains_every_parameter_and_the_rest_the_ids(ds, n_mod):
    d = with_modalities(ds, n_mod)
    m = _model(d)
    assert (m.modal_weight is None) == (n_mod == 1)  # one modality: w = 1, nothing to train
    batch = train_batch(d)
    ids = {"user_emb", "item_emb"}
    for epoch in range(2):
        m.start_epoch(epoch)
        for step in range(2):
            m.zero_grad(set_to_none=True)
            total, _ = checked_loss(m, batch, {"bpr", "reg"})
            total.backward()
            for name, p in m.named_parameters():
                trained = step == 0 or name in ids
                assert (p.grad is not None and p.grad.abs().sum() > 0) == trained, (epoch, step, name)
    u, i = m.user_item_embeddings()
    assert u.shape == (d.n_users, 8) and i.shape == (d.n_items, 8)


def test_the_epoch_graph_is_kept_until_the_next_epoch(ds):
    m = _model(ds)
    batch = train_batch(ds, 16)
    m.start_epoch(0)
    m.loss(batch)
    held = m._epoch_graph[0].values().clone()
    with torch.no_grad():  # the features move: the held graph does not, until start_epoch
        m.trs["image"].weight.add_(1.0)
    m.loss(batch)
    m.user_item_embeddings()  # scoring builds its own graph and leaves the epoch's alone
    assert torch.equal(m._epoch_graph[0].values(), held)
    m.start_epoch(1)
    m.loss(batch)
    assert not torch.equal(m._epoch_graph[0].values(), held)
