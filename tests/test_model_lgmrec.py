"""LGMRec in mentor_ray's harness: any number of modalities (checked against a dense float64 re-derivation of
the docstring's equations, since MMRec's class runs with two only), a gradient for every parameter, and the
noise it draws. Its 2-epoch runs on ``synth-tiny`` are in ``test_models_common.py``."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mentor_ray.common import config
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model.lgmrec import LGMRec
from tests.model_checks import check_backward, checked_loss, train_batch, with_modalities


def _model(d, **over):
    values = {"variant": "lgmrec", "dataset": "synth-tiny", "embedding_dim": 8, **over}
    torch.manual_seed(0)
    m = LGMRec.build(config.validate(values), d)
    m.set_graphs(normalized_ui_adjacency_torch(d), {})
    return m


def _dense_reference(m: LGMRec, noise, batch):
    """The docstring's equations in dense float64, written independently of the model's code."""
    c, n_u = m.cfg, m.n_users
    dbl = lambda x: x.detach().double()  # noqa: E731
    a_hat = m.graph("ui").to_dense().double()
    r = m.graph("r").to_dense().double()
    deg = r.sum(1, keepdim=True)
    ego = torch.cat([dbl(m.user_emb), dbl(m.item_emb)])
    layers = [ego]
    for _ in range(c.n_layers):
        layers.append(a_hat @ layers[-1])
    e_c = sum(layers) / (c.n_layers + 1)
    local, glob, hyper = e_c.clone(), 0, {}
    for mod in m.modalities:
        f = dbl(getattr(m, f"feat_{mod}"))
        items = f @ dbl(m.proj[mod])
        e_m = torch.cat([r @ items / deg.clamp_min(1e-300) * (deg > 0), items])
        for _ in range(c.lgmrec_mm_layers):
            e_m = a_hat @ e_m
        local = local + F.normalize(e_m)
        logit_i = f @ dbl(m.hyper[mod])
        h_i = torch.softmax((logit_i + noise.gumbel[mod][0].double()) / c.tau, 1) * noise.keep[mod][0].double()
        h_u = torch.softmax((r @ logit_i + noise.gumbel[mod][1].double()) / c.tau, 1) * noise.keep[mod][1].double()
        x = e_c[n_u:]
        for _ in range(c.lgmrec_hyper_layers):
            z = h_i.T @ x
            x, y = h_i @ z, h_u @ z
        hyper[mod] = (y, x)
        glob = glob + torch.cat([y, x])
    e = local + c.lgmrec_alpha * F.normalize(glob)
    u, p, q = e[batch.users], e[n_u + batch.pos], e[n_u + batch.neg]
    bpr = -F.logsigmoid((u * p).sum(1) - (u * q).sum(1)).mean()

    def ell(a, b, rows):
        za, zb = F.normalize(a[rows]), F.normalize(b)
        return -torch.log_softmax(za @ zb.T / c.tau, 1)[torch.arange(len(rows)), rows].sum()

    cl = sum(ell(hyper[a][0], hyper[b][0], batch.users) + ell(hyper[a][1], hyper[b][1], batch.pos)
             for a, b in itertools.combinations(m.modalities, 2))
    reg = (u.norm() + p.norm() + q.norm()) / len(batch.users)
    return {"bpr": float(bpr), "cl": float(c.lgmrec_cl_weight * cl), "reg": float(c.reg_weight * reg)}


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities_matches_dense_reference(ds, n_mod):
    d = with_modalities(ds, n_mod)
    m = _model(d, lgmrec_cl_weight=0.5, reg_weight=0.1, lgmrec_hyper_layers=2)
    batch = train_batch(d)
    torch.manual_seed(1)
    noise = m.draw_noise(train=True)
    total, terms = checked_loss(m, batch, {"bpr", "cl", "reg"}, noise)
    assert (terms["cl"] == 0.0) == (n_mod == 1)  # one modality: no pair to contrast
    ref = _dense_reference(m, noise, batch)
    for k in ref:
        assert terms[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k
    check_backward(m, total, d)


def test_noise_dropout_only_in_training(ds):
    m = _model(ds)
    assert m.draw_noise(train=False).keep is None
    masks = m.draw_noise(train=True).keep
    vals = torch.cat([x.flatten() for pair in masks.values() for x in pair]).unique()
    assert set(vals.tolist()) <= {0.0, 2.0}  # dropout 0.5 (keep_rate 0.5): kept entries scaled by 2
    assert _model(ds, dropout=0.0).draw_noise(train=True).keep is None
