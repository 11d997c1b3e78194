"""MMSSL in mentor_ray's harness: any number of modalities (both steps checked against a dense float64
re-derivation of the docstring's equations, since the authors' code runs with two only), the generated
graphs' schedule and pairing, their survival of a checkpoint (a resumed run continues identically), the
critic as an auxiliary group, and two DDP ranks against one process (slow tier). Its 2-epoch runs on
``synth-tiny`` (finite, repeatable, 1 and 3 modalities) are in ``test_models_common.py``; the authors' own
code is compared in ``test_parity_mmssl.py``."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from mentor_ray.common import config
from mentor_ray.model.base import Batch, aux_step
from mentor_ray.model.mmssl import MMSSL, _contrast
from mentor_ray.training import trainer as train
from tests.model_checks import checked_loss, train_batch, with_modalities

TERMS = {"bpr", "reg", "feat_reg", "cl", "adv"}
# The critic's linear layers before a batch norm: the norm cancels their bias exactly, so its gradient is
# rounding noise (and what Adam makes of it changes no output)
CANCELLED = ("critic.linears.0.bias", "critic.linears.1.bias")


def _model(d, **settings) -> MMSSL:
    cfg = config.validate({"variant": "mmssl", "dataset": "synth-tiny", "embedding_dim": 8, **settings})
    torch.manual_seed(0)
    return MMSSL.build(cfg, d)


class Draws:
    """Draws from a private generator, recorded in order, for ``model._draw``; ``replay()`` gives them back."""

    def __init__(self):
        self.g, self.log = torch.Generator().manual_seed(3), []

    def __call__(self, kind, shape, p=0.0):
        if kind == "drop":
            if p <= 0:
                return None
            x = torch.bernoulli(torch.full(shape, 1 - p), generator=self.g) / (1 - p)
        else:
            x = torch.rand(shape, generator=self.g)
        self.log.append((kind, tuple(shape), x))
        return x

    def replay(self):
        left = iter(self.log)

        def take(kind, shape):
            k, s, x = next(left)
            assert (k, s) == (kind, tuple(shape)), ((k, s), (kind, shape))  # the documented order
            return x.double()
        return take


def _reference(m: MMSSL, d, batch: Batch, take):
    """Both steps from the class docstring's equations, dense and in float64, written independently of the
    model's code: (critic terms, critic gradients, terms, gradients, scores)."""
    c, n_u, n_i, dim = m.cfg, m.n_users, m.n_items, m.cfg.embedding_dim
    w = {n: p.detach().double().requires_grad_() for n, p in m.named_parameters()}
    r = torch.zeros(n_u, n_i, dtype=torch.float64)
    r[torch.as_tensor(d.train.users), torch.as_tensor(d.train.items)] = 1.0

    def rownorm(a):
        return a * (a.sum(1, keepdim=True) + 1e-8) ** -0.5

    gen = []
    for k in range(len(m.modalities)):
        e = m._buffers[f"gen_edges_{k}"]
        gen.append(torch.zeros(n_u, n_i, dtype=torch.float64).index_put_((e[0], e[1]),
                                                                          torch.ones(e.shape[1]).double(), True))
    unit = lambda x: x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)  # noqa: E731  (F.normalize's eps)
    wsum = w["w_cat"].view(c.mmssl_heads, dim, dim).sum(0)

    def encode(train_: bool):
        fu, fi, gu, gi = [], [], [], []
        for k in range(len(m.modalities)):
            f = m._buffers[f"feat_{k}"].double() @ w[f"projections.{k}.weight"].T + w[f"projections.{k}.bias"]
            if train_ and c.dropout > 0:
                f = f * take("drop", (n_i, dim))
            fu.append(rownorm(r) @ f)
            fi.append(rownorm(r.T) @ fu[-1])
            gu.append(rownorm(gen[k]) @ w["item_embedding"])
            gi.append(rownorm(gen[k].T) @ w["user_embedding"])
        u = w["user_embedding"] + c.mmssl_id_cat * unit(sum(x @ wsum for x in gu) / len(gu))
        i = w["item_embedding"] + c.mmssl_id_cat * unit(sum(x @ wsum for x in gi) / len(gi))
        us, its = [u], [i]
        for layer in range(c.n_layers):
            last = layer == c.n_layers - 1
            u = rownorm(r) @ i
            u = torch.softmax(u, 1) if last else u
            i = rownorm(r.T) @ u
            i = torch.softmax(i, 1) if last else i
            us.append(u)
            its.append(i)
        h_u = sum(us) / len(us) + c.mmssl_model_cat * sum(unit(x) for x in fu)
        h_i = sum(its) / len(its) + c.mmssl_model_cat * sum(unit(x) for x in fi)
        return h_u, h_i, fu, fi, gu

    def critic(x, frozen=False):
        p = {k: (v.detach() if frozen else v) for k, v in w.items() if k.startswith("critic.")}
        h = x @ p["critic.linears.0.weight"].T + p["critic.linears.0.bias"]
        for k, drop in enumerate((c.mmssl_d_dropout1, c.mmssl_d_dropout2)):
            mu, var = h.mean(0), h.var(0, unbiased=False)
            h = (h - mu) / (var + 1e-5).sqrt() * p[f"critic.norm_weight.{k}"] + p[f"critic.norm_bias.{k}"]
            if drop > 0:
                h = h * take("drop", tuple(h.shape))
            h = h @ p[f"critic.linears.{k + 1}.weight"].T + p[f"critic.linears.{k + 1}.bias"]
        return 100 * torch.sigmoid(h).view(-1)

    users, n_mod = batch.users, len(m.modalities)
    seen = r[users]

    def rows(a, b):
        return unit((a[users] @ b.T) * (1 - seen))

    with torch.no_grad():
        h_u, h_i, fu, fi, _ = encode(True)
        fake = torch.cat([rows(a, b) for a, b in zip(fu, fi)])
        ui = rows(h_u, h_i)
    d_fake = critic(fake)
    g = take("uniform", (len(users), n_i))
    real = unit(torch.softmax(seen - c.mmssl_gumbel_scale * torch.log(-torch.log(g + 1e-8) + 1e-8), 1)
                + c.mmssl_ui_pre_scale * ui).repeat(n_mod, 1)
    d_real = critic(real)
    a = take("rand", (n_mod * len(users), 1))
    mix = (a * real + (1 - a) * fake).requires_grad_()
    grad = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)[0]
    crit = {"fake": d_fake.mean(), "real": d_real.mean(), "gp": 0.3 * ((grad.norm(dim=1) - 1) ** 2).mean()}
    (crit["fake"] - crit["real"] + c.mmssl_gp_weight * crit["gp"]).backward()
    crit_grads = {n: v.grad.clone() for n, v in w.items() if n.startswith("critic.")}

    h_u, h_i, fu, fi, gu = encode(True)
    u, p, q = h_u[users], h_i[batch.pos], h_i[batch.neg]
    terms = {"bpr": -F.logsigmoid((u * p).sum(1) - (u * q).sum(1)).mean(),
             "reg": c.reg_weight * 0.5 * (u.square().sum() + p.square().sum() + q.square().sum()) / len(users),
             "feat_reg": c.mmssl_feat_reg * 0.5 * sum(x.square().sum() for x in fu + fi) / n_i}
    cl = 0
    for z in gu:
        z1, z2 = unit(z[users]), unit(h_u[users])
        refl, between = torch.exp(z1 @ z1.T / c.tau), torch.exp(z1 @ z2.T / c.tau)
        cl = cl - torch.log(between.diag() / (refl.sum(1) + between.sum(1) - refl.diag()) + 1e-8).mean()
    terms["cl"] = c.mmssl_cl_weight * cl
    terms["adv"] = -c.mmssl_adv_weight * critic(torch.cat([rows(a_, b_) for a_, b_ in zip(fu, fi)]), True).mean()
    sum(terms.values()).backward()
    grads = {n: v.grad for n, v in w.items() if not n.startswith("critic.")}
    with torch.no_grad():
        h_u, h_i, *_ = encode(False)
    return crit, crit_grads, terms, grads, h_u @ h_i.T


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_both_steps_match_a_float64_rederivation_for_any_number_of_modalities(ds, n_mod):
    d = with_modalities(ds, n_mod)
    m = _model(d, n_layers=2, dropout=0.3, reg_weight=1e-2, mmssl_feat_reg=1e-3, mmssl_cl_weight=0.5,
               mmssl_adv_weight=1e-2, tau=0.3)
    # generated graphs: modality 0 a few pairs (one repeated), modality 1 none, modality 2 the training graph
    m._buffers["gen_edges_0"] = torch.tensor([[0, 1, 1, 2, 5, 1], [3, 4, 4, 0, 7, 9]])
    if n_mod > 1:
        m._buffers["gen_edges_1"] = torch.zeros(2, 0, dtype=torch.long)
    batch = train_batch(d, 16)
    draws = Draws()
    m._draw = draws
    crit = m.critic_terms(batch)
    m.critic.zero_grad()
    (crit["fake"] - crit["real"] + m.cfg.mmssl_gp_weight * crit["gp"]).backward()
    crit_grads = {n: p.grad.clone() for n, p in m.named_parameters() if n.startswith("critic.")}
    m.zero_grad()
    total, terms = checked_loss(m, batch, TERMS)
    total.backward()
    for n, p in m.named_parameters():  # every recommender parameter gets a nonzero gradient (DDP needs every
        # one); the main loss reads the critic as constants
        assert (p.grad is None) if n.startswith("critic.") else bool(p.grad.abs().sum() > 0), n
    want_crit, want_crit_grads, want_terms, want_grads, want_scores = _reference(m, d, batch, draws.replay())
    for k, v in want_crit.items():
        assert float(crit[k].detach()) == pytest.approx(float(v.detach()), rel=1e-5), k
    for n, g in crit_grads.items():
        if n in CANCELLED:  # rounding noise on both sides
            scale = float(crit_grads[n.replace("bias", "weight")].abs().max())
            assert float(g.abs().max()) < 1e-5 * scale and float(want_crit_grads[n].abs().max()) < 1e-9 * scale
            continue
        torch.testing.assert_close(g.double(), want_crit_grads[n], rtol=1e-4, atol=1e-5 * float(
            want_crit_grads[n].abs().max()), msg=n)
    for k, v in want_terms.items():
        assert terms[k] == pytest.approx(float(v.detach()), rel=1e-5, abs=1e-9), k
    for n, p in m.named_parameters():
        if not n.startswith("critic."):
            torch.testing.assert_close(p.grad.double(), want_grads[n], rtol=1e-4, atol=1e-7, msg=n)
    u, i = m.user_item_embeddings()
    torch.testing.assert_close((u @ i.T).double(), want_scores, rtol=1e-5, atol=1e-5)


def test_draws_come_in_the_documented_order_and_the_same_seed_repeats(ds):
    m = _model(with_modalities(ds, 3), dropout=0.2)
    seen = []
    real = m._draw
    m._draw = lambda kind, shape, p=0.0: seen.append((kind, tuple(shape))) or real(kind, shape, p)
    batch = train_batch(ds, 16)
    torch.manual_seed(4)
    a = (float(m.aux_losses(batch)["disc"].detach()), m.loss(batch)[1])
    feat = [("drop", (ds.n_items, 8))] * 3
    mask = [("drop", (48, 10)), ("drop", (48, 5))]  # 3 modalities x 16 rows; widths 40 / 4, 40 / 8
    assert seen == [*feat, *mask, ("uniform", (16, ds.n_items)), *mask, ("rand", (48, 1)), *mask, *feat, *mask]
    m2 = _model(with_modalities(ds, 3), dropout=0.2)
    torch.manual_seed(4)
    assert (float(m2.aux_losses(batch)["disc"].detach()), m2.loss(batch)[1]) == a


def test_the_generated_graphs_follow_the_authors_schedule(ds):
    """T = 3, k = 4: batches 0, 1, 2 of an epoch gather, 3 rebuilds from them, 4 gathers; the next epoch's
    counter restarts: its batches 0-2 gather and its batch 3 rebuilds from those and the one carried over."""
    m = _model(ds, mmssl_rebuild_every=3, mmssl_topk_rate=0.1)
    train_edges = m.gen_edges_0.clone()
    batch = train_batch(ds, 8)
    sizes = []
    for epoch, n_batches in ((0, 5), (1, 4)):
        m.start_epoch(epoch)
        for _ in range(n_batches):
            m.loss(batch)
            sizes.append((m.gen_edges_0.shape[1], m.gen_pending_0.shape[1]))
    n = 8 * 4
    t = train_edges.shape[1]
    assert sizes == [(t, n), (t, 2 * n), (t, 3 * n), (3 * n, 0), (3 * n, n),  # epoch 0
                     (3 * n, 2 * n), (3 * n, 3 * n), (3 * n, 4 * n), (4 * n, 0)]  # epoch 1


def test_the_gathered_pairs_tile_the_users_as_the_authors_do():
    """k = 2, users (7, 8, 9): pairs (users repeated k times) x (the row-major top items)."""
    cfg = config.validate({"variant": "mmssl", "embedding_dim": 4, "mmssl_topk_rate": 0.5})
    m = MMSSL(cfg, 10, 4, {"a": torch.randn(4, 3)}, [0, 1, 2, 3], [0, 1, 2, 3])
    sims = torch.tensor([[0.9, 0.8, 0.0, 0.1], [0.0, 0.2, 0.7, 0.6], [0.5, 0.0, 0.0, 0.6]])
    m._advance_graphs(Batch(torch.tensor([7, 8, 9]), torch.zeros(3).long(), torch.zeros(3).long()),
                      torch.arange(3), [sims])
    assert m.gen_pending_0.tolist() == [[7, 8, 9, 7, 8, 9], [0, 1, 2, 3, 3, 0]]


def test_a_checkpoint_holds_the_generated_graphs(ds):
    m = _model(ds, mmssl_rebuild_every=3, mmssl_topk_rate=0.1)
    batch = train_batch(ds, 8)
    m.start_epoch(0)
    for _ in range(5):
        m.loss(batch)
    state = m.state_dict()
    fresh = _model(ds, mmssl_rebuild_every=3, mmssl_topk_rate=0.1)
    fresh.load_state_dict(state)  # buffers of other sizes than the fresh model's
    for k in range(len(ds.modalities)):
        for name in (f"gen_edges_{k}", f"gen_pending_{k}"):
            assert torch.equal(getattr(fresh, name), getattr(m, name)), name
    torch.testing.assert_close(fresh.user_item_embeddings(), m.user_item_embeddings())


def _trainer(ds, epochs: int) -> train.Trainer:
    cfg = config.make_config(flags={"variant": "mmssl", "dataset": "synth-tiny"},
                             overrides=["embedding_dim=8", "batch_size=64", f"max_epochs={epochs}", "patience=5",
                                        "mmssl_topk_rate=0.1", "mmssl_rebuild_every=4"])
    return train.Trainer(cfg, ds=ds)


def test_a_resumed_run_continues_identically(ds, tmp_path):
    """6 batches per epoch, T = 4: batch 5's pairs are still pending at the epoch's end."""
    whole = _trainer(ds, 3)
    full = whole.fit()
    first = _trainer(ds, 1)
    first.fit()
    assert first.model.gen_pending_0.shape[1] > 0  # state that only the checkpoint carries
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = _trainer(ds, 3)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    end = resumed.fit()
    assert [h["train"]["loss"] for h in resumed.history] == [h["train"]["loss"] for h in whole.history]
    assert end["valid"] == full["valid"] and end["test"] == full["test"]
    for (n, a), (_, b) in zip(whole.model.named_buffers(), resumed.model.named_buffers()):
        assert torch.equal(a, b), n


def test_the_critic_is_an_auxiliary_group(ds):
    t = _trainer(ds, 1)
    critic = {id(p) for p in t.model.critic.parameters()}
    main = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert not critic & main and main | critic == {id(p) for p in t.model.parameters()}
    opt = t.aux_optimizers["disc"]
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["betas"] == (0.5, 0.9)
    assert opt.defaults["lr"] == 3e-4 and opt.defaults["weight_decay"] == 0
    out = t.train_epoch(0)
    assert "aux.disc" in out and set(out) >= TERMS


def test_the_critic_step_moves_only_the_critic(ds):
    m = _model(ds)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    aux_step(m.aux_optimizers()["disc"], m.aux_losses(train_batch(ds, 16))["disc"])
    for n, p in m.named_parameters():
        assert torch.equal(p, before[n]) != n.startswith("critic."), n


def test_the_contrast_is_the_authors_formula_and_stable_at_small_temperatures():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(9, 5, generator=g), torch.randn(9, 5, generator=g)
    z1[3] = 0  # an empty generated graph's row
    batch = Batch(torch.zeros(9).long(), torch.zeros(9).long(), torch.zeros(9).long())
    a, b = F.normalize(z1.double()), F.normalize(z2.double())
    for tau in (0.5, 0.01):
        refl, between = torch.exp(a @ a.T / tau), torch.exp(a @ b.T / tau)
        # the authors' "- refl.diag()" cancels catastrophically at tau 0.01 even in float64 (exp(100) next to
        # far smaller terms): the same sum, the diagonal left out instead
        others = (refl * (1 - torch.eye(9, dtype=torch.float64))).sum(1)
        want = -torch.log(between.diag() / (others + between.sum(1)) + 1e-8).mean()
        if tau == 0.5:  # and their formula where it holds
            naive = -torch.log(between.diag() / (refl.sum(1) + between.sum(1) - refl.diag()) + 1e-8).mean()
            assert float(naive) == pytest.approx(float(want), rel=1e-12)
        got = _contrast(z1, z2, tau, batch, 9)
        assert torch.isfinite(got) and float(got) == pytest.approx(float(want), rel=1e-5)


def test_a_batch_of_one_triplet_with_one_modality_trains(ds):
    """One row for the critic's batch norm (a last batch of one): torch's kernel refuses it, ours normalises
    it to the bias, as the formula does."""
    m = _model(with_modalities(ds, 1))
    batch = Batch(torch.tensor([0]), torch.tensor([int(ds.train.items[0])]), torch.tensor([5]))
    disc = m.aux_losses(batch)["disc"]
    total, _ = checked_loss(m, batch, TERMS)
    assert torch.isfinite(disc) and torch.isfinite(total)


def test_defaults_are_the_authors():
    c = config.validate({"variant": "mmssl"})
    assert (c.embedding_dim, c.n_layers, c.dropout, c.reg_weight, c.lr, c.batch_size) == (64, 2, 0.2, 1e-5,
                                                                                           5.5e-4, 1024)
    assert (c.tau, c.mmssl_cl_weight, c.mmssl_adv_weight, c.mmssl_rebuild_every, c.mmssl_topk_rate) == (
        0.5, 0.03, 1e-4, 1, 1e-4)


def test_needs_a_modality():
    with pytest.raises(ValueError, match="at least one"):
        MMSSL(config.validate({"variant": "mmssl"}), 4, 5, {}, [0], [0])


# ------------------------------------------------------------------ data parallelism (two gloo ranks)


def _ddp_case():
    """A model on synth-tiny gathering generated pairs (T = 3, k = 4: batches 0-2 gather, 3 rebuilds), and 4
    batches of 13 triplets (uneven halves: 7 and 6)."""
    from mentor_ray.datasets import dataset as data

    d = data.load_dataset("synth-tiny")
    m = _model(d, mmssl_rebuild_every=3, mmssl_topk_rate=0.1, dropout=0.3)
    n = 13
    batches = [Batch(*(torch.as_tensor(a[k * n:(k + 1) * n]) for a in
                       (d.train.users, d.train.items, d.train.items[::-1].copy()))) for k in range(4)]
    return m, batches


def _steps(m, batches, part=lambda b: b, world: int = 1):
    """The trainer's order per batch: the critic's step (aux_step), then the main step (gradients averaged
    over the ranks as DDP does; the model's parameters stepped by plain SGD); the terms of each."""
    torch.manual_seed(11)
    opt = torch.optim.SGD([p for n, p in m.named_parameters() if not n.startswith("critic.")], lr=0.1)
    out = []
    m.start_epoch(0)
    for b in batches:
        b = part(b)
        disc = aux_step(m.aux_optimizers()["disc"], m.aux_losses(b)["disc"], world)
        opt.zero_grad()
        total, terms = m.loss(b)
        total.backward()
        if world > 1:
            import torch.distributed as dist

            for p in opt.param_groups[0]["params"]:
                dist.all_reduce(p.grad)
                p.grad.div_(world)
        opt.step()
        out.append({"aux.disc": disc, **terms})
    return out


def _ddp_rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # see tests/test_distributed.py
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    code = 1
    try:
        m, batches = _ddp_case()
        part = lambda b: Batch(*(x[rank::world] for x in (b.users, b.pos, b.neg)), world=world)  # noqa: E731
        terms = _steps(m, batches, part, world)
        for t in terms:  # the trainer reports the ranks' mean of each term
            v = torch.tensor([t[k] for k in sorted(t)], dtype=torch.float64)
            dist.all_reduce(v)
            t.update(zip(sorted(t), (v / world).tolist()))
        torch.save({"terms": terms, "params": dict(m.named_parameters()), "buffers": dict(m.named_buffers())},
                   os.path.join(out_dir, f"{rank}.pt"))
        dist.barrier()
        code = 0
    finally:
        os._exit(code)  # see tests/test_distributed.py (torch 2.2's gloo teardown)


@pytest.mark.slow
def test_two_ranks_with_uneven_halves_match_one_process(tmp_path):
    """Per-row draws, the critic's batch norm, the contrast's columns and the generated graphs are the global
    batch's: two ranks take one process's steps and hold its graphs, bit for bit in the graphs."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_rank, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    m, batches = _ddp_case()
    terms = _steps(m, batches)
    for r in ranks:
        for got, want in zip(r["terms"], terms):
            assert got == pytest.approx(want, rel=1e-4), (got, want)
        for n, b in m.named_buffers():
            assert torch.equal(r["buffers"][n], b), n  # every rank holds one process's generated graphs
        for n, p in m.named_parameters():
            if n not in CANCELLED:
                torch.testing.assert_close(r["params"][n], p.detach(), rtol=1e-4, atol=1e-6, msg=n)
