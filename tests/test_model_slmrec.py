"""SLMRec in mentor_ray's harness: its FAC chain for any number of modalities, checked against a dense float64
re-derivation of the equations (MMRec runs only one and two modalities: ``test_parity_slmrec.py``), a
gradient for every parameter, its settings, and its in-batch InfoNCE under data parallelism (two gloo ranks
equal one process). Its 2-epoch runs on ``synth-tiny`` are in ``test_models_common.py``."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from mentor_ray.common import config
from mentor_ray.common.errors import ConfigError
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model.base import Batch
from mentor_ray.model.slmrec import SLMRec, fac_stages
from tests.model_checks import checked_loss, train_batch, with_modalities

TERMS = {"infonce", "ssl", "weight_decay"}


def _model(d, **settings) -> SLMRec:
    cfg = config.validate({"variant": "slmrec", "dataset": "synth-tiny", "embedding_dim": 8, **settings})
    torch.manual_seed(0)
    m = SLMRec.build(cfg, d)
    m.set_graphs(normalized_ui_adjacency_torch(d), {})
    return m


def test_fac_stages_follow_mmrec_for_two_modalities_and_the_paper_for_three():
    assert fac_stages(1) == [0]  # MMRec's kwai branch: the visual stage only
    assert fac_stages(2) == [0, None, 1]  # MMRec: visual, its acoustic link without a contrast, textual
    assert fac_stages(3) == [0, 1, 2]  # the paper's visual, acoustic, textual
    assert fac_stages(4) == [0, 1, 2, 3]


@pytest.mark.parametrize("n_mod, chain, heads", [
    (1, [(8, 8)], [(8, 8)]),
    (2, [(8, 8), (8, 8), (4, 8)], [(8, 8), (4, 8)]),  # MMRec: g_i_iv, g_iv_iva, g_iva_ivat; g_v_iv, g_t_ivat
    (3, [(8, 8), (8, 8), (4, 8)], [(8, 8), (8, 8), (4, 8)]),
])
def test_any_number_of_modalities_every_parameter_gets_a_gradient(ds, n_mod, chain, heads):
    d = with_modalities(ds, n_mod)
    m = _model(d)
    assert [tuple(x.weight.shape) for x in m.fac_chain] == chain
    assert [tuple(x.weight.shape) for x in m.fac_heads] == heads
    assert m.user_fusion.weight.shape == m.item_fusion.weight.shape == (8, 8 * (n_mod + 1))
    total, terms = checked_loss(m, train_batch(d), TERMS)
    assert all(v > 0 for v in terms.values())
    total.backward()
    assert all(p.grad is not None for p in m.parameters())  # DDP needs every one
    u, i = m.user_item_embeddings()
    assert u.shape == (d.n_users, 8) and i.shape == (d.n_items, 8)


def _reference(m: SLMRec, d, batch: Batch):
    """The loss terms from the class docstring's equations, dense, in float64, written independently of the
    model's code: (terms, the float64 copies of the parameters by name, for their gradients)."""
    cfg = m.cfg
    p = {n: t.detach().double().requires_grad_() for n, t in m.named_parameters()}
    nu, ni, L = d.n_users, d.n_items, cfg.n_layers
    r = torch.zeros(nu, ni, dtype=torch.float64)
    r[torch.as_tensor(d.train.users), torch.as_tensor(d.train.items)] = 1.0
    a = torch.zeros(nu + ni, nu + ni, dtype=torch.float64)
    a[:nu, nu:], a[nu:, :nu] = r, r.T
    s = a.sum(1).rsqrt()
    a_hat = s[:, None] * a * s[None, :]
    sides = [p["item_embedding"]]
    for k, f in enumerate(d.features.values()):
        f = f.double()
        sides.append((f / f.norm(dim=1, keepdim=True)) @ p[f"dense.{k}.weight"].T + p[f"dense.{k}.bias"])
    reps = []
    for side in sides:
        x = torch.cat([p["user_embedding"], side])
        layers, h = [x], x
        for _ in range(L):
            h = a_hat @ h
            layers.append(h)
        reps.append(sum(layers) / (L + 1))
    zu = torch.cat([r_[:nu] for r_ in reps], 1) @ p["user_fusion.weight"].T + p["user_fusion.bias"]
    zi = torch.cat([r_[nu:] for r_ in reps], 1) @ p["item_fusion.weight"].T + p["item_fusion.bias"]

    def nce(x, y, t):
        logits = x @ y.T / t
        return -(logits.diagonal() - logits.logsumexp(1)).mean()

    infonce = nce(F.normalize(zu[batch.users], dim=1), F.normalize(zi[batch.pos], dim=1), cfg.tau)
    lin = lambda name, x: x @ p[f"{name}.weight"].T + p[f"{name}.bias"]  # noqa: E731
    item = lambda k: reps[k][nu:][batch.pos]  # noqa: E731  (k = 0: IDs; k = m + 1: modality m)
    n_mod = len(d.features)
    if n_mod == 1:  # ID -> visual
        fac = nce(lin("fac_chain.0", item(0)), lin("fac_heads.0", item(1)), cfg.slmrec_ssl_temp)
    elif n_mod == 2:  # ID -> visual -> (acoustic link, nothing contrasted) -> textual (d/2 wide)
        s1 = lin("fac_chain.0", item(0))
        s3 = lin("fac_chain.2", lin("fac_chain.1", s1))
        fac = (nce(s1, lin("fac_heads.0", item(1)), cfg.slmrec_ssl_temp)
               + nce(s3, lin("fac_heads.1", item(2)), cfg.slmrec_ssl_temp))
    else:  # one stage per modality, the last d/2 wide
        s_, fac = item(0), 0.0
        for k in range(n_mod):
            s_ = lin(f"fac_chain.{k}", s_)
            fac = fac + nce(s_, lin(f"fac_heads.{k}", item(k + 1)), cfg.slmrec_ssl_temp)
    decay = 0.5 * cfg.slmrec_weight_decay * sum(t.square().sum() for t in p.values())
    return {"infonce": infonce, "ssl": cfg.slmrec_ssl_alpha * fac, "weight_decay": decay}, p


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_loss_and_gradients_match_a_float64_rederivation(ds, n_mod):
    d = with_modalities(ds, n_mod)
    m = _model(d, n_layers=2, tau=0.3, slmrec_ssl_temp=0.5, slmrec_ssl_alpha=0.7, slmrec_weight_decay=0.01)
    users = torch.as_tensor(d.train.users[:24])
    batch = Batch(users, torch.as_tensor(d.train.items[:24]), torch.zeros_like(users))
    ref, p = _reference(m, d, batch)
    total, terms = m.loss(batch)
    for k, v in ref.items():
        assert terms[k] == pytest.approx(float(v.detach()), rel=1e-5), k
    total.backward()
    sum(ref.values()).backward()
    for n, t in m.named_parameters():
        torch.testing.assert_close(t.grad.double(), p[n].grad, rtol=1e-5, atol=1e-6, msg=n)


def test_the_negatives_are_unused_and_scores_are_the_last_batchs(ds):
    m = _model(ds)
    b = train_batch(ds)
    t1, _ = m.loss(b)
    t2, _ = m.loss(Batch(b.users, b.pos, b.neg.flip(0)))
    assert float(t1.detach()) == float(t2.detach())  # MMRec's objective reads users and positives only
    with torch.no_grad():
        fresh = m()[0]
        m.user_embedding.add_(1.0)  # as an optimiser step after the batch would
    u, i = m.user_item_embeddings()
    assert torch.equal(u, fresh[0]) and torch.equal(i, fresh[1])  # MMRec scores with the saved embeddings


def test_scores_before_any_training_are_a_fresh_forward(ds):
    m = _model(ds)
    u, i = m.user_item_embeddings()
    torch.testing.assert_close(u, m()[0][0])


def test_the_same_seed_gives_the_same_model_and_loss(ds):
    a, b = _model(ds), _model(ds)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert a.loss(train_batch(ds))[1] == b.loss(train_batch(ds))[1]


def test_settings_allow_only_what_is_implemented():
    cfg = config.validate({"variant": "slmrec"})
    assert (cfg.embedding_dim, cfg.n_layers, cfg.lr, cfg.tau, cfg.slmrec_ssl_task) == (64, 3, 1e-4, 0.2, "FAC")
    assert (cfg.slmrec_ssl_temp, cfg.slmrec_ssl_alpha, cfg.slmrec_weight_decay) == (0.1, 0.01, 1e-4)
    assert "slmrec_reg" not in config.read_keys("slmrec")  # MMRec's reg is read by nothing: no setting
    with pytest.raises(ConfigError):
        config.validate({"variant": "slmrec", "slmrec_ssl_task": "FD"})  # fails in MMRec: not implemented
    with pytest.raises(ConfigError):
        config.validate({"variant": "slmrec", "slmrec_ssl_temp": 0.0})


# ------------------------------------------------------------------ data parallelism (two gloo ranks)


def _ddp_rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # see tests/test_distributed.py
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    code = 1
    try:
        m, batch = _ddp_case()
        part = Batch(*(x[rank::world] for x in (batch.users, batch.pos, batch.neg)), world=world)  # the trainer's
        total, terms = m.loss(part)
        total.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters()}
        for g in grads.values():  # what DDP does: the ranks' mean gradient
            dist.all_reduce(g)
            g.div_(world)
        t = torch.tensor([terms[k] for k in sorted(terms)], dtype=torch.float64)
        dist.all_reduce(t)  # the trainer reports the ranks' mean of each term
        if rank == 0:
            torch.save({"terms": (t / world).tolist(), "grads": grads}, os.path.join(out_dir, "ddp.pt"))
        dist.barrier()
        code = 0
    finally:
        os._exit(code)  # see tests/test_distributed.py (torch 2.2's gloo teardown)


def _ddp_case() -> tuple[SLMRec, Batch]:
    """A model on a tiny hand-made input and a batch of 7 (uneven halves: 4 and 3), with a repeated item."""
    from types import SimpleNamespace

    import numpy as np

    g = torch.Generator().manual_seed(1)
    feats = {"image": torch.randn(8, 6, generator=g), "text": torch.randn(8, 5, generator=g)}
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 0, 3])
    items = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6, 5, 1])
    cfg = config.validate({"variant": "slmrec", "embedding_dim": 4, "n_layers": 2, "slmrec_ssl_alpha": 0.5,
                           "slmrec_ssl_temp": 0.5})
    torch.manual_seed(0)
    m = SLMRec(cfg, 6, 8, feats)
    ds = SimpleNamespace(n_users=6, n_items=8, train=SimpleNamespace(users=users, items=items))
    m.set_graphs(normalized_ui_adjacency_torch(ds), {})
    batch = Batch(torch.tensor([0, 1, 2, 3, 4, 5, 0]), torch.tensor([1, 3, 5, 7, 2, 6, 3]), torch.zeros(7).long())
    return m, batch


@pytest.mark.slow
def test_two_ranks_with_uneven_halves_match_one_process(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_rank, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "ddp.pt")
    m, batch = _ddp_case()
    total, terms = m.loss(batch)
    total.backward()
    assert got["terms"] == pytest.approx([terms[k] for k in sorted(terms)], rel=1e-6)
    for n, p in m.named_parameters():
        torch.testing.assert_close(got["grads"][n], p.grad, rtol=1e-5, atol=1e-7, msg=n)
