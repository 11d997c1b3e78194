"""BM3 in mentor_ray's harness: any number of modalities against a dense float64 re-derivation of the
objective, the order of the dropout draws, dropout 0, and a gradient for every parameter. Its 2-epoch runs on
``synth-tiny`` (finite, repeatable, with 1 and 3 modalities) are in ``test_models_common.py``."""

from __future__ import annotations

import pytest
import torch

from mentor_ray.common import config
from mentor_ray.datasets.graphs import build_graphs
from mentor_ray.model.bm3 import BM3
from tests.model_checks import check_backward, checked_loss, train_batch, with_modalities

TERMS = {"rec", "align", "mask", "reg"}


def _model(d, **settings) -> BM3:
    cfg = config.validate({"variant": "bm3", "dataset": "synth-tiny", "embedding_dim": 8, **settings})
    torch.manual_seed(0)
    m = BM3.build(cfg, d)
    g = build_graphs(d, k=cfg.knn_k, knn_norm=cfg.knn_norm, use_cache=False, builder="torch")
    m.set_graphs(g.ui_adj, g.item_adj)
    with torch.no_grad():  # biases away from Linear's small init, so that they matter in the check
        for lin in (m.predictor, *m.projections):
            lin.bias.normal_()
    return m


def _masks(m: BM3, p: float) -> dict[str, torch.Tensor]:
    """Scaled keep masks for users, items and each modality, from a private generator."""
    g = torch.Generator().manual_seed(1)
    shapes = {"users": m.n_users, "items": m.n_items, **{k: m.n_items for k in m.modalities}}
    d = m.cfg.embedding_dim
    return {k: torch.bernoulli(torch.full((n, d), 1 - p), generator=g) / (1 - p) for k, n in shapes.items()}


def _reference(m: BM3, batch, masks: dict[str, torch.Tensor]):
    """The objective from the class docstring's equations, dense and in float64: (terms, grads, scores)."""
    c = m.cfg
    w = {n: p.detach().double().requires_grad_() for n, p in m.named_parameters()}
    a = m.graph("ui").to_dense().double()
    x = torch.cat([w["user_embedding"], w["item_embedding"]])
    layers = [x]
    for _ in range(c.n_layers):
        layers.append(a @ layers[-1])
    e = sum(layers) / len(layers)
    h_u, h_i = e[: m.n_users], e[m.n_users :] + w["item_embedding"]

    def g(z):
        return z @ w["predictor.weight"].T + w["predictor.bias"]

    def miss(p, q):  # 1 - mean cosine; a zero row (all of a target row dropped) has cosine 0
        return 1 - ((p / p.norm(dim=1, keepdim=True).clamp_min(1e-8))
                    * (q / q.norm(dim=1, keepdim=True).clamp_min(1e-8))).sum(1).mean()

    u, i = batch.users, batch.pos
    mask = {k: v.double() for k, v in masks.items()}
    u_t, i_t = (h_u * mask["users"]).detach()[u], (h_i * mask["items"]).detach()[i]
    terms = {"rec": miss(g(h_u[u]), i_t) + miss(g(h_i[i]), u_t), "align": 0, "mask": 0}
    for k, mod in enumerate(m.modalities):
        f = w[f"feature_tables.{k}"] @ w[f"projections.{k}.weight"].T + w[f"projections.{k}.bias"]
        terms["align"] = terms["align"] + c.bm3_cl_weight * miss(g(f[i]), i_t)
        terms["mask"] = terms["mask"] + c.bm3_cl_weight * miss(g(f[i]), (f * mask[mod]).detach()[i])
    terms["reg"] = c.reg_weight * (h_u.square().sum().sqrt() + h_i.square().sum().sqrt()) / m.n_items
    sum(terms.values()).backward()
    scores = g(h_u) @ g(h_i).T
    return {k: float(v.detach()) for k, v in terms.items()}, {n: p.grad for n, p in w.items()}, scores.detach()


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities_matches_a_float64_rederivation(ds, n_mod):
    d = with_modalities(ds, n_mod)
    m = _model(d, n_layers=2, dropout=0.5, reg_weight=0.1)
    batch = train_batch(d)
    masks = _masks(m, 0.5)
    want_terms, want_grads, want_scores = _reference(m, batch, masks)
    # drawn as MMRec draws them: users, items, then the modalities last first (text before image)
    order = iter([masks["users"], masks["items"], *(masks[k] for k in reversed(m.modalities))])
    m._dropout = lambda x: next(order)
    total, terms = checked_loss(m, batch, TERMS)
    for k, v in want_terms.items():
        assert terms[k] == pytest.approx(v, rel=1e-5), k
    check_backward(m, total, d)  # every parameter gets a nonzero gradient (DDP needs every one)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad.double(), want_grads[n], rtol=1e-4, atol=1e-6, msg=n)
    u, i = m.user_item_embeddings()
    torch.testing.assert_close((u @ i.T).double(), want_scores, rtol=1e-5, atol=1e-5)


def test_masks_are_drawn_from_torch_in_mmrecs_order_and_the_same_seed_repeats(ds):
    d = with_modalities(ds, 3)
    m = _model(d, dropout=0.3)
    shapes = []
    real = m._dropout
    m._dropout = lambda x: shapes.append(tuple(x.shape)) or real(x)
    torch.manual_seed(4)
    a = m.loss(train_batch(d))[1]
    assert shapes == [(d.n_users, 8)] + [(d.n_items, 8)] * 4  # full tables: users, items, 3 modalities
    torch.manual_seed(4)
    assert m.loss(train_batch(d))[1] == a
    torch.manual_seed(5)
    assert m.loss(train_batch(d))[1] != a


def test_dropout_zero_draws_nothing_and_targets_the_online_views(ds):
    m = _model(ds, dropout=0.0)
    batch = train_batch(ds)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    terms = m.loss_terms(batch, parts=True)
    assert torch.equal(torch.get_rng_state(), state)
    ones = {k: torch.ones(n, 8) for k, n in [("users", m.n_users), ("items", m.n_items)]}
    want, _, _ = _reference(m, batch, {**ones, **{k: torch.ones(m.n_items, 8) for k in m.modalities}})
    for k, v in want.items():
        assert float(terms[k].detach()) == pytest.approx(v, rel=1e-5), k


def test_zero_layers_is_the_id_embeddings():
    """n_layers = 0: users are their ID embeddings, items twice theirs (the layer mean plus the ID)."""
    feats = {"image": torch.randn(5, 3)}
    m = BM3(config.validate({"variant": "bm3", "embedding_dim": 4, "n_layers": 0}), 4, 5, feats)
    h_u, h_i = m()
    assert torch.equal(h_u, m.user_embedding) and torch.equal(h_i, 2 * m.item_embedding)


def test_needs_a_modality():
    with pytest.raises(ValueError, match="at least one"):
        BM3(config.validate({"variant": "bm3"}), 4, 5, {})
