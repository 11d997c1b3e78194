"""DiffMM in mentor_ray's harness: any number of modalities against a dense float64 re-derivation of the
objective, the denoisers' epoch and the generated graphs (their state, determinism and checkpointing), the
auxiliary optimisers, and a gradient for every parameter of the main model. Its parity with the authors' code
is in ``test_parity_diffmm.py``; its 2-epoch runs on ``synth-tiny`` (finite, repeatable, with 1 and 3
modalities), resume and two-rank runs are in ``test_models_common.py``, ``test_train.py`` and
``test_distributed.py``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mentor_ray.common import config
from mentor_ray.model.diffmm import DiffMM
from mentor_ray.training import trainer as train
from tests.model_checks import checked_loss, train_batch, with_modalities

TERMS = {"bpr", "reg", "cl"}
SMALL = {"embedding_dim": 8, "diffmm_hidden": 16, "batch_size": 16}


def _model(d, **settings) -> DiffMM:
    s = {**SMALL, **settings}
    cfg = config.validate({"variant": "diffmm", "dataset": "synth-tiny", **s})
    torch.manual_seed(0)
    return DiffMM.build(cfg, d)


def _dense_adjacency(users, items, n_users: int, n_items: int) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2, dense float64, from the pairs."""
    n = n_users + n_items
    a = torch.eye(n, dtype=torch.float64)
    a[users, items + n_users] = 1.0
    a[items + n_users, users] = 1.0
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


def _dense_generated(m: DiffMM, k: int) -> torch.Tensor:
    """Modality k's generated graph, dense float64, from the buffers: the normalised graph of each user's items
    with self loops, its entries listed column by column, then those the mask drops removed, the rest scaled."""
    items = m.gen_items[k]
    users = torch.arange(m.n_users).repeat_interleave(items.shape[1])
    g = _dense_adjacency(users, items.reshape(-1), m.n_users, m.n_items)
    cols, rows = (g.T != 0).nonzero(as_tuple=True)  # column-major: by column, then row
    keep = m.gen_keep[k]
    out = torch.zeros_like(g)
    out[rows[keep], cols[keep]] = g[rows[keep], cols[keep]] / (1.0 - m.cfg.dropout)
    return out


def _reference(m: DiffMM, d, batch):
    """The objective of the class docstring, dense and in float64: (terms, gradients, scores)."""
    c = m.cfg
    w = {n: p.detach().double().requires_grad_() for n, p in m.named_parameters() if not n.startswith("denoisers")}
    a = _dense_adjacency(torch.as_tensor(d.train.users), torch.as_tensor(d.train.items), m.n_users, m.n_items)
    gens = [_dense_generated(m, k) for k in range(len(m.modalities))]
    ids = torch.cat([w["user_embedding"], w["item_embedding"]])

    def project(k, x):
        if c.diffmm_trans == "linear":
            return x @ w[f"projections.{k}.weight"].T + w[f"projections.{k}.bias"]
        return F.leaky_relu(x @ w[f"projections.{k}.weight"], 0.2)

    def layers(x):
        total, h = x, x
        for _ in range(c.n_layers):
            h = a @ h
            total = total + h
        return total

    def unit(x):
        return x / x.norm(dim=1, keepdim=True)

    feats = [unit(project(k, getattr(m, f"feat_{k}").double())) for k in range(len(m.modalities))]
    weight = torch.softmax(w["modal_weight"], 0)
    mix = 0
    views = []
    for k, (f, g) in enumerate(zip(feats, gens)):
        h = a @ torch.cat([w["user_embedding"], f])
        z = h + a @ torch.cat([h[: m.n_users], w["item_embedding"]]) + c.diffmm_ris_adj_lambda * g @ ids
        mix = mix + weight[k] * z
        v = layers(g @ torch.cat([w["user_embedding"], f]))
        views.append((v[: m.n_users], v[m.n_users :]))
    out = layers(mix) + c.diffmm_ris_lambda * unit(mix)
    u_all, i_all = out[: m.n_users], out[m.n_users :]

    def info(p, q, nodes):
        p, q = unit(p), unit(q)
        num = torch.exp((p[nodes] * q[nodes]).sum(1) / c.tau)
        den = torch.exp(p[nodes] @ q.T / c.tau).sum(1)
        return -torch.log(num / den).mean()

    u, pos, neg = batch.users, batch.pos, batch.neg
    y = (u_all[u] * i_all[pos]).sum(1) - (u_all[u] * i_all[neg]).sum(1)
    terms = {"bpr": -torch.log(torch.sigmoid(y)).sum() / m.batch_size,
             "reg": c.reg_weight * (w["user_embedding"].square().sum() + w["item_embedding"].square().sum())}
    if c.diffmm_cl_method == "main":
        pairs = [((u_all, i_all), v) for v in views]
    else:
        pairs = [(views[i], views[j]) for i in range(len(views)) for j in range(i + 1, len(views))]
    terms["cl"] = sum((c.diffmm_ssl_reg * (info(p[0], q[0], u) + info(p[1], q[1], pos)) for p, q in pairs),
                      torch.zeros((), dtype=torch.float64))
    sum(terms.values()).backward()
    grads = {n: p.grad for n, p in w.items()}
    return {k: float(v.detach()) for k, v in terms.items()}, grads, (u_all @ i_all.T).detach()


@pytest.mark.parametrize("n_mod, cl, trans", [(1, "main", "linear"), (2, "modal", "matrix"), (3, "main", "matrix"),
                                              (3, "modal", "linear")])
def test_any_number_of_modalities_matches_a_float64_rederivation(ds, n_mod, cl, trans):
    d = with_modalities(ds, n_mod)
    m = _model(d, n_layers=2, diffmm_cl_method=cl, diffmm_trans=trans, diffmm_rebuild_k=3, dropout=0.3,
               reg_weight=1e-2, diffmm_ssl_reg=0.5)
    torch.manual_seed(1)
    m.start_epoch(0)
    batch = train_batch(d)
    want_terms, want_grads, want_scores = _reference(m, d, batch)
    for p in m.denoisers.parameters():
        p.grad = None
    total, terms = checked_loss(m, batch, TERMS)
    for k, v in want_terms.items():
        assert terms[k] == pytest.approx(v, rel=1e-5, abs=1e-9), k
    total.backward()
    for n, p in m.named_parameters():
        if n.startswith("denoisers"):
            assert p.grad is None, n  # trained by their own optimisers only
        else:
            torch.testing.assert_close(p.grad.double(), want_grads[n], rtol=1e-4, atol=1e-6, msg=n)
    u, i = m.user_item_embeddings()
    torch.testing.assert_close((u @ i.T).double(), want_scores, rtol=1e-5, atol=1e-5)


def test_start_epoch_trains_only_the_denoisers_and_generates_valid_graphs(ds):
    m = _model(ds, diffmm_rebuild_k=2)
    main = {n: p.detach().clone() for n, p in m.named_parameters() if not n.startswith("denoisers")}
    den = {n: p.detach().clone() for n, p in m.denoisers.named_parameters()}
    assert bool((m.gen_items < 0).all())  # nothing generated yet
    torch.manual_seed(3)
    losses = m.start_epoch(0)
    assert set(losses) == {f"denoiser.{x}" for x in m.modalities} == set(m.aux_optimizers())
    assert all(math.isfinite(v) and v > 0 for v in losses.values())
    assert all(torch.equal(p, main[n]) for n, p in m.named_parameters() if n in main)
    assert all(not torch.equal(p, den[n]) for n, p in m.denoisers.named_parameters())
    items = m.gen_items
    assert items.shape == (len(m.modalities), ds.n_users, 2) and bool(((items >= 0) & (items < ds.n_items)).all())
    assert bool((items[..., 0] != items[..., 1]).all())  # k distinct items per user
    kept = m.gen_keep.float().mean()
    assert 0.3 < float(kept) < 0.7  # dropout 0.5 (TikTok's keepRate)


def test_same_seed_same_graphs_and_another_seed_other_draws(ds):
    def run(seed):
        m = _model(ds)
        torch.manual_seed(seed)
        m.start_epoch(0)
        return m.gen_items.clone(), m.gen_keep.clone(), {n: p.detach().clone() for n, p in m.named_parameters()}

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert all(torch.equal(a[2][n], b[2][n]) for n in a[2])
    assert not torch.equal(a[1], c[1])


def test_a_checkpoint_restores_the_generated_graphs(ds):
    m = _model(ds)
    torch.manual_seed(2)
    m.start_epoch(0)
    u, i = m.user_item_embeddings()
    state = m.state_dict()
    assert {"gen_items", "gen_keep"} <= set(state) and not any(k.startswith("feat_") for k in state)
    fresh = _model(ds)
    fresh.user_item_embeddings()  # graphs built from its own (ungenerated) buffers first: must be dropped
    fresh.load_state_dict(state)
    u2, i2 = fresh.user_item_embeddings()
    assert torch.equal(u, u2) and torch.equal(i, i2)


def test_before_the_first_generation_the_modality_graphs_are_the_identity(ds):
    m = _model(ds)
    for g, _ in m.generated_graphs():
        assert torch.equal(g.to_dense(), torch.eye(ds.n_users + ds.n_items))
    u, i = m.user_item_embeddings()
    assert bool(torch.isfinite(u @ i.T).all())


def test_denoiser_rows_are_the_training_rows(ds):
    m = _model(ds)
    dense = torch.zeros(ds.n_users, ds.n_items)
    dense[torch.as_tensor(ds.train.users), torch.as_tensor(ds.train.items)] = 1.0
    users = torch.tensor([5, 0, 17, 3, 59])
    assert torch.equal(m._rows(users), dense[users])


def test_every_main_parameter_gets_a_gradient_even_at_weight_zero(ds):
    """DDP runs without find_unused_parameters (the denoisers are outside DDP: the trainer ignores them)."""
    m = _model(ds, reg_weight=0.0, diffmm_ssl_reg=0.0, diffmm_ris_lambda=0.0, diffmm_ris_adj_lambda=0.0)
    torch.manual_seed(0)
    m.start_epoch(0)
    m.loss(train_batch(ds))[0].backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0)
               for n, p in m.named_parameters() if not n.startswith("denoisers"))


def test_the_trainer_gives_the_denoisers_their_own_optimisers(ds):
    cfg = config.make_config(flags={"variant": "diffmm", "dataset": "synth-tiny"},
                             overrides=["embedding_dim=8", "diffmm_hidden=16", "batch_size=64", "max_epochs=1"])
    t = train.Trainer(cfg, ds=ds)
    main = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert main.isdisjoint(id(p) for p in t.model.denoisers.parameters())
    assert set(t.aux_optimizers) == {f"denoiser.{x}" for x in ds.modalities}
    assert t.aux_optimizers["denoiser." + ds.modalities[0]].param_groups[0]["lr"] == cfg.lr
    assert t.model.batch_size == 64


def test_bad_sizes_are_refused(ds):
    with pytest.raises(ValueError, match="rebuild_k"):
        _model(ds, diffmm_rebuild_k=ds.n_items + 1)
    with pytest.raises(ValueError, match="sampling_steps"):
        _model(ds, diffmm_steps=3, diffmm_sampling_steps=4)
    with pytest.raises(ValueError, match="at least one"):
        DiffMM(config.validate({"variant": "diffmm"}), 2, 3, {}, ds.train.users[:0], ds.train.items[:0])
