"""MENTOR's forward pass equation by equation, the ablation switches, and the baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mentor_ray import model
from mentor_ray.common import config
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets.graphs import build_graphs
from mentor_ray.model import Batch, ops


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset("synth-tiny")


def _model(ds, variant="mentor", **over):
    cfg = config.make_config(flags={"variant": variant, "dataset": "synth-tiny"},
                             overrides=[f"{k}={v}" for k, v in {"embedding_dim": 8, "knn_k": 5, **over}.items()])
    torch.manual_seed(0)
    m = model.build_model(cfg, ds)
    if cfg.spec.model in ("mentor", "lightgcn"):
        g = build_graphs(ds, k=cfg.knn_k)
        m.set_graphs(g.ui_adj, g.item_adj)
    return m


def _batch(ds, n=16):
    idx = np.arange(n)
    triplet = (ds.train.users[idx], ds.train.items[idx], (ds.train.items[idx] + 1) % ds.n_items)
    return Batch(*(torch.from_numpy(a) for a in triplet))


def _dense(m, name):
    return m.graph(name).to_dense()


def test_forward_follows_eq_1_to_7(ds):
    m = _model(ds)
    r = m(perturb=False)
    d, n_u, mods = 8, ds.n_users, m.modalities
    A = _dense(m, "ui")
    # layer 0: [ID | modality preference / projected features], each block L2-normalised
    x0 = torch.cat([torch.cat([m.user_emb[:, :d], m.user_emb[:, d:]], 1),
                    torch.cat([m.item_id] + [m.proj[k](getattr(m, f"feat_{k}")) for k in mods], 1)])
    x0 = torch.cat([F.normalize(b, dim=1) for b in x0.split(d, 1)], 1)
    total = x0 + A @ x0 + A @ A @ x0  # Eq. 1-3, L = 2
    torch.testing.assert_close(r.ids, total[:, :d])
    knn = build_graphs(ds, k=5).item_adj
    for k, mod in enumerate(mods):  # Eq. 6: items add their kNN aggregation, users unchanged
        e = total[:, d * (k + 1) : d * (k + 2)]
        torch.testing.assert_close(r.ui[mod], e)
        expected = torch.cat([e[:n_u], e[n_u:] + knn[mod].to_dense() @ e[n_u:]])
        torch.testing.assert_close(r.final[mod], expected)
    w = m.fusion_weights()
    assert torch.allclose(w, torch.tensor([0.5, 0.5]))  # α initialised to 0.5 (Eq. 7)
    torch.testing.assert_close(r.fused, torch.cat([w[0] * r.final[mods[0]], w[1] * r.final[mods[1]]], 1))


def test_layer_mean_divides_every_propagated_block_by_l_plus_1(ds):
    s, m = _model(ds), _model(ds, layer_combine="mean", n_layers=3)
    s.cfg = s.cfg.model_copy(update={"n_layers": 3})  # the same weights, propagated 3 layers
    torch.manual_seed(1)
    rs = s(perturb=True)
    torch.manual_seed(1)
    rm = m(perturb=True)
    torch.testing.assert_close(rm.ids, rs.ids / 4)
    for mod in s.modalities:  # the item graph is linear in its input, so Eq. 6's output scales too
        torch.testing.assert_close(rm.final[mod], rs.final[mod] / 4)
        torch.testing.assert_close(rm.view(0, mod), rs.view(0, mod) / 4)
    torch.testing.assert_close(rm.fused, rs.fused / 4)


def test_perturbed_views_equal_explicit_noisy_propagation(ds, monkeypatch):
    m = _model(ds)
    draws = []

    def fake_uniform(*shape, device="cpu"):
        draws.append(torch.rand(shape, generator=torch.Generator().manual_seed(len(draws))))
        return draws[-1].clone()

    monkeypatch.setattr(ops, "uniform", fake_uniform)
    r = m(perturb=True)
    d, A, n_mod = 8, _dense(m, "ui"), 2
    x0 = F.normalize(r.raw0.view(r.raw0.shape[0], -1, d), dim=2).view(r.raw0.shape[0], -1)[:, d:]
    for v in range(2):
        h, total = x0, x0
        for delta in draws:  # Eq. 18-20: h'_l = A h'_(l-1) + Δ_l, summed over layers
            h = A @ h + delta[:, v * n_mod * d : (v + 1) * n_mod * d]
            total = total + h
        for k, mod in enumerate(m.modalities):
            torch.testing.assert_close(r.view(v, mod), total[:, k * d : (k + 1) * d], atol=1e-5, rtol=1e-5)


def test_propagation_gradient_matches_autograd(ds):
    m = _model(ds)
    A, d = m.graph("ui"), 8
    x = torch.randn(A.shape[0], 3 * d, dtype=torch.float64, requires_grad=True)
    A64 = A.to_dense().double()
    weights = [torch.randn(A.shape[0], d, dtype=torch.float64) for _ in range(3)]
    blocks = ops.propagate_blocks(x, A.to_dense().double().to_sparse_csr(), A64.to_sparse_csr(), 2, d)
    got = torch.autograd.grad(sum((b * w).sum() for b, w in zip(blocks, weights)), x, retain_graph=True)[0]
    total = x + A64 @ x + A64 @ A64 @ x
    ref = torch.autograd.grad(sum((b * w).sum() for b, w in zip(total.split(d, 1), weights)), x, retain_graph=True)[0]
    torch.testing.assert_close(got, ref)
    # an unused block (None gradient) is handled
    got = torch.autograd.grad((blocks[1] * weights[1]).sum(), x)[0]
    ref = torch.autograd.grad((total.split(d, 1)[1] * weights[1]).sum(), x)[0]
    torch.testing.assert_close(got, ref)


def test_views_carry_gradient_through_the_clean_part_only(ds):
    m = _model(ds)
    r = m(perturb=True)
    assert r.noise is not None and not r.noise.requires_grad
    assert r.view(0, m.modalities[0]).requires_grad


def test_distribution_stats_are_per_node_mean_and_variance(ds):
    m = _model(ds)
    r = m(perturb=False)
    stats = m.distribution_stats(r)
    tensors = {"id": r.ids, "fused": r.fused, **r.final}
    for name, x in tensors.items():  # Eq. 8 per node: over each node's own dimensions
        torch.testing.assert_close(stats[name][0].reshape(-1), x.mean(1), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(stats[name][1].reshape(-1), x.var(1, unbiased=False), atol=1e-6, rtol=1e-4)
    m.cfg = m.cfg.model_copy(update={"align_stats": "matrix"})
    whole = m.distribution_stats(r)
    for name, x in tensors.items():  # the authors' variant: one value over the whole matrix
        torch.testing.assert_close(whole[name][0], x.mean(), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(whole[name][1], x.var(unbiased=False), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(
    "variant, terms",
    [
        ("mentor", {"bpr", "reg", "align", "mask_f", "perturb_g"}),
        ("mentor_f", {"bpr", "reg", "align", "perturb_g"}),
        ("mentor_g", {"bpr", "reg", "align", "mask_f"}),
        ("mentor_fg", {"bpr", "reg", "align"}),
        ("mentor_base", {"bpr", "reg", "mask_f", "perturb_g"}),
        ("mentor_l1", {"bpr", "reg", "align", "mask_f", "perturb_g"}),
        ("lightgcn", {"bpr", "reg"}),
        ("mf_bpr", {"bpr", "reg"}),
    ],
)
def test_variants_switch_loss_terms(ds, variant, terms):
    m = _model(ds, variant)
    loss, parts = m.loss(_batch(ds))
    assert set(parts) == terms
    assert torch.isfinite(loss) and abs(float(loss.detach()) - sum(parts.values())) < 1e-4
    loss.backward()
    assert all(p.grad is not None for n, p in m.named_parameters())  # every parameter learns


def test_alignment_levels_differ(ds):
    values = {}
    for v in ("mentor_l1", "mentor_l2", "mentor"):
        torch.manual_seed(1)
        values[v] = _model(ds, v).loss(_batch(ds))[1]["align"]
    assert values["mentor_l1"] < values["mentor_l2"] < values["mentor"]


def test_predictor_exists_only_with_feature_masking(ds):
    m = _model(ds, "mentor")
    m.loss(_batch(ds))[0].backward()
    assert m.predictor.weight.grad is not None
    assert _model(ds, "mentor_f").predictor is None


def test_scores_are_fused_dot_products(ds):
    m = _model(ds)
    users, items = m.user_item_embeddings()
    f = m(perturb=False).fused.detach()
    torch.testing.assert_close(users @ items.T, f[: ds.n_users] @ f[ds.n_users :].T)


def test_no_sparse_tensor_is_a_buffer_or_in_the_state_dict(ds):
    m = _model(ds)
    assert not any(b.is_sparse or b.layout != torch.strided for b in m.buffers())
    assert not any(t.layout != torch.strided for t in m.state_dict().values())


def test_three_modalities_generalise_eq_7(ds):
    feats = dict(ds.features)
    feats["audio"] = torch.randn(ds.n_items, 5)
    cfg = config.make_config(overrides=["embedding_dim=8", "knn_k=5"])
    m = model.Mentor(cfg, ds.n_users, ds.n_items, feats)
    g = build_graphs(ds, k=5)
    m.set_graphs(g.ui_adj, {**g.item_adj, "audio": g.item_adj["image"]})
    w = m.fusion_weights()
    assert w.shape == (3,) and torch.allclose(w, torch.full((3,), 1 / 3)) and abs(float(w.sum().detach()) - 1) < 1e-6
    loss, parts = m.loss(_batch(ds))
    assert torch.isfinite(loss)


def test_most_pop_breaks_ties_by_lower_item_id():
    items = torch.tensor([3, 3, 1, 1, 0, 2, 2, 2])  # counts: 0:1, 1:2, 2:3, 3:2
    mp = model.MostPop(n_users=2, n_items=5, train_items=items)
    u, i = mp.user_item_embeddings()
    order = torch.argsort((u @ i.T)[0], descending=True).tolist()
    assert order == [2, 1, 3, 0, 4]


def test_block_normalize_matches_f_normalize():
    x = torch.randn(7, 12, dtype=torch.float64, requires_grad=True)
    x.data[2, 4:8] = 0.0  # a zero block stays zero, as with F.normalize
    w = torch.randn(7, 12, dtype=torch.float64)
    got = ops.block_normalize(x, 4)
    ref = F.normalize(x.view(7, 3, 4), dim=2).view(7, 12)
    torch.testing.assert_close(got, ref)
    g1 = torch.autograd.grad((got * w).sum(), x)[0]
    g2 = torch.autograd.grad((ref * w).sum(), x)[0]
    torch.testing.assert_close(g1[torch.arange(7) != 2], g2[torch.arange(7) != 2])
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: ops.block_normalize(t, 4), (x,))


def test_infonce_chunk_0_is_the_devices_default_and_a_set_chunk_is_kept():
    """infonce_chunk's default 0: 128 rows on the CPU (faster there than 512: docs/benchmarks.md), 512 on any other
    device; a chunk the user sets is used as set."""
    from mentor_ray.common.config import make_config
    from mentor_ray.model import ops

    assert make_config().infonce_chunk == 0
    assert ops.infonce_chunk(0, torch.device("cpu")) == 128
    assert ops.infonce_chunk(0, torch.device("cuda", 1)) == 512 == ops.infonce_chunk(0, torch.device("meta"))
    assert ops.infonce_chunk(7, torch.device("cpu")) == 7 == ops.infonce_chunk(7, torch.device("cuda"))
