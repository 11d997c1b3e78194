"""The losses against independent float64 formulas (hand loops / dense numpy) on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mentor_ray.model import losses


def info_nce(view1: torch.Tensor, view2: torch.Tensor, tau: float) -> torch.Tensor:
    """mean_i -log( exp(z1_i.z2_i / τ) / sum_j exp(z1_i.z2_j / τ) ), z = L2-normalised views.

    Dense (the (N, N) similarity matrix): the reference :func:`losses.info_nce_chunked` is checked against.
    """
    z1, z2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    logits = z1 @ z2.T / tau
    return (torch.logsumexp(logits, dim=1) - logits.diagonal()).mean()

def _t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --------------------------------------------------------------------------- BPR and L2


def test_bpr_loss_matches_formula():
    pos, neg = np.array([1.0, -0.5, 3.0, 0.0]), np.array([0.2, 0.5, -1.0, 0.0])
    expected = np.mean([-math.log(1.0 / (1.0 + math.exp(-(p - n)))) for p, n in zip(pos, neg)])
    assert losses.bpr_loss(_t(pos), _t(neg)).item() == pytest.approx(expected, rel=1e-12)


def test_bpr_loss_is_finite_for_large_margins():
    pos, neg = _t(np.array([200.0, -200.0])), _t(np.array([0.0, 0.0]))
    loss = losses.bpr_loss(pos, neg)
    # -log sigmoid(200) ~ exp(-200) ~ 0 and -log sigmoid(-200) ~ 200: mean ~ 100
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(100.0, rel=1e-12)
    # float32 too: a naive log(sigmoid(-200)) would be log(0) = -inf
    loss32 = losses.bpr_loss(pos.float(), neg.float())
    assert math.isfinite(loss32.item()) and loss32.item() == pytest.approx(100.0, rel=1e-6)


def test_l2_reg_is_sum_of_squares_over_batch():
    rng = np.random.default_rng(0)
    rows = [rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((2, 4))]
    expected = sum(float(x**2) for r in rows for x in r.ravel()) / 7
    assert losses.l2_reg([_t(r) for r in rows], 7).item() == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- alignment statistics


@pytest.mark.parametrize("blocks", [1, 3])
def test_block_moments_per_node_mean_and_population_variance(blocks):
    d, n = 4, 5
    x = np.random.default_rng(1).standard_normal((n, blocks * d)) * 2 + 0.5
    mean, var = losses.moments_to_stats(*losses.block_moments(_t(x), d))
    ref = x.reshape(n, -1, d)
    assert mean.shape == var.shape == (n, blocks)
    np.testing.assert_allclose(mean.numpy(), ref.mean(2), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), ref.var(2), rtol=1e-10)  # population variance (ddof=0)


@pytest.mark.parametrize("blocks", [1, 3])
def test_moments_to_stats_whole_matrix(blocks):
    d, n = 4, 5
    x = np.random.default_rng(2).standard_normal((n, blocks * d)) * 2 + 0.5
    mean, var = losses.moments_to_stats(*losses.block_moments(_t(x), d), whole_matrix=True)
    assert mean.shape == var.shape == ()
    assert mean.item() == pytest.approx(x.mean(), rel=1e-12)
    assert var.item() == pytest.approx(x.var(), rel=1e-10)


def test_variance_of_constant_rows_is_zero_not_negative():
    # float32: for 8 copies of 0.1, E[x^2] - E[x]^2 rounds to about -9.3e-10 without the clamp
    x = torch.full((3, 8), 0.1, dtype=torch.float32)
    m, m2 = x.mean(1), x.square().mean(1)
    assert ((m2 - m.square()) < 0).all()  # the premise of this test holds
    _, var = losses.moments_to_stats(*losses.block_moments(x, 8))
    assert (var == 0).all()


def _gap(a, b) -> float:
    return float(np.mean(np.abs(a[0] - b[0])) + np.mean(np.abs(a[1] - b[1])))


def test_stat_gap_formula():
    rng = np.random.default_rng(3)
    a = (rng.standard_normal(6), rng.random(6))
    b = (rng.standard_normal(6), rng.random(6))
    expected = sum(abs(a[0][i] - b[0][i]) for i in range(6)) / 6 + sum(abs(a[1][i] - b[1][i]) for i in range(6)) / 6
    got = losses.stat_gap((_t(a[0]), _t(a[1])), (_t(b[0]), _t(b[1])))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def _random_stats(names, n=7, seed=4):
    rng = np.random.default_rng(seed)
    np_stats = {m: (rng.standard_normal(n), rng.random(n)) for m in names}
    return np_stats, {m: (_t(mu), _t(var)) for m, (mu, var) in np_stats.items()}


def test_alignment_loss_levels_two_modalities():
    s, stats = _random_stats(["v", "t", "id", "fused"])
    l1 = _gap(s["v"], s["t"])
    l2 = _gap(s["id"], s["v"]) + _gap(s["id"], s["t"])
    l3 = _gap(s["fused"], s["v"]) + _gap(s["fused"], s["t"]) + _gap(s["fused"], s["id"])
    for levels, expected in [(0, 0.0), (1, l1), (2, l1 + l2), (3, l1 + l2 + l3)]:
        total, parts = losses.alignment_loss(stats, ["v", "t"], levels)
        assert total.item() == pytest.approx(expected, rel=1e-12, abs=1e-15), levels
        assert sorted(parts) == ["l1", "l2", "l3"][:levels]
    _, parts = losses.alignment_loss(stats, ["v", "t"], 3)
    assert [parts[k].item() for k in ("l1", "l2", "l3")] == pytest.approx([l1, l2, l3], rel=1e-12)


def test_alignment_loss_level_one_with_three_modalities():
    s, stats = _random_stats(["a", "b", "c", "id", "fused"])
    expected = _gap(s["a"], s["b"]) + _gap(s["a"], s["c"]) + _gap(s["b"], s["c"])
    total, _ = losses.alignment_loss(stats, ["a", "b", "c"], 1)
    assert total.item() == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- feature masking


def _near_identity_predictor(d: int, seed: int = 5) -> torch.nn.Linear:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(d, d).double()
    with torch.no_grad():
        lin.weight.copy_(torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(d, d, dtype=torch.float64))
    return lin


def test_feature_masking_without_dropout_matches_cosine_formula():
    rng = np.random.default_rng(6)
    u, i = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    pred = _near_identity_predictor(3)
    w, b = pred.weight.detach().numpy(), pred.bias.detach().numpy()
    expected = sum(1.0 - np.mean([_cos(x @ w.T + b, x) for x in rows]) for rows in (u, i))
    got = losses.feature_masking_loss(_t(u), _t(i), pred, p=0.0)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_feature_masking_gradient_flows_only_through_the_predictor_branch():
    rng = np.random.default_rng(7)
    u, i = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    pred = _near_identity_predictor(3)

    users, items = _t(u, grad=True), _t(i, grad=True)
    losses.feature_masking_loss(users, items, pred, p=0.0).backward()
    assert users.grad.abs().sum() > 0 and items.grad.abs().sum() > 0
    assert pred.weight.grad is not None and pred.weight.grad.abs().sum() > 0

    def hand_loss(x_u, x_i, weight, bias, detach_target):
        total = 0.0
        for x in (x_u, x_i):
            p = x @ weight.T + bias
            tgt = x.detach().clone() if detach_target else x
            cos = (p * tgt).sum(1) / (p.norm(dim=1) * tgt.norm(dim=1))
            total = total + (1.0 - cos.mean())
        return total

    def hand_grads(detach_target):
        xu, xi = _t(u, grad=True), _t(i, grad=True)
        wt, bs = pred.weight.detach().clone().requires_grad_(), pred.bias.detach().clone().requires_grad_()
        return torch.autograd.grad(hand_loss(xu, xi, wt, bs, detach_target), (xu, xi, wt))

    ref_u, ref_i, ref_w = hand_grads(detach_target=True)
    torch.testing.assert_close(users.grad, ref_u, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(items.grad, ref_i, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pred.weight.grad, ref_w, rtol=1e-10, atol=1e-12)
    # the check discriminates: without the stop-gradient the input gradient would differ
    assert not torch.allclose(hand_grads(detach_target=False)[0], ref_u)


def test_feature_masking_with_dropout_is_finite_and_seeded():
    rng = np.random.default_rng(8)
    u, i = _t(rng.standard_normal((6, 4))), _t(rng.standard_normal((6, 4)))
    pred = _near_identity_predictor(4)
    torch.manual_seed(123)
    a = losses.feature_masking_loss(u, i, pred, p=0.5)
    torch.manual_seed(123)
    b = losses.feature_masking_loss(u, i, pred, p=0.5)
    c = losses.feature_masking_loss(u, i, pred, p=0.0)
    assert math.isfinite(a.item()) and a.item() == b.item()
    assert a.item() != c.item()  # dropout did change the target


# --------------------------------------------------------------------------- InfoNCE


def _hand_info_nce(v1: np.ndarray, v2: np.ndarray, tau: float) -> float:
    n = v1.shape[0]
    total = 0.0
    for i in range(n):
        s = [_cos(v1[i], v2[j]) / tau for j in range(n)]
        total += -math.log(math.exp(s[i]) / sum(math.exp(x) for x in s))
    return total / n


@pytest.fixture
def views():
    rng = np.random.default_rng(9)
    return rng.standard_normal((20, 5)), rng.standard_normal((20, 5))


@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_info_nce_matches_hand_loop(views, tau):
    v1, v2 = views
    assert info_nce(_t(v1), _t(v2), tau).item() == pytest.approx(_hand_info_nce(v1, v2, tau), rel=1e-10)


@pytest.mark.parametrize("tau", [0.2, 0.01])
@pytest.mark.parametrize("chunk", [1, 3, 7, 20])
def test_info_nce_chunked_matches_dense_value_and_gradients(views, tau, chunk):
    v1, v2 = views
    a1, a2 = _t(v1, grad=True), _t(v2, grad=True)
    b1, b2 = _t(v1, grad=True), _t(v2, grad=True)
    dense = info_nce(a1, a2, tau)
    chunked = losses.info_nce_chunked(b1, b2, tau, chunk)
    # |s_ij| / tau <= 100, so the float64 hand loop does not overflow even at tau = 0.01
    assert chunked.item() == pytest.approx(_hand_info_nce(v1, v2, tau), rel=1e-10)
    torch.testing.assert_close(chunked, dense, rtol=1e-10, atol=1e-12)
    g_dense = torch.autograd.grad(dense, (a1, a2))
    g_chunk = torch.autograd.grad(chunked, (b1, b2))
    for gc, gd in zip(g_chunk, g_dense):
        torch.testing.assert_close(gc, gd, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("tau", [0.2, 0.01])
def test_info_nce_chunked_under_no_grad(views, tau):
    v1, v2 = views
    with torch.no_grad():
        got = losses.info_nce_chunked(_t(v1), _t(v2), tau, 3)
    torch.testing.assert_close(got, info_nce(_t(v1), _t(v2), tau), rtol=1e-10, atol=1e-12)


def test_info_nce_chunked_small_tau_float32_does_not_underflow():
    # all similarities ~ -1: with the constant shift 1/tau, exp((s - 1)/0.01) = exp(-200) is 0 in float32
    # and the log-sum-exp would be -inf; subtracting each row's max keeps it finite.
    rng = np.random.default_rng(12)
    v1 = np.tile([1.0, 0.0, 0.0], (8, 1)) + 0.05 * rng.standard_normal((8, 3))
    v2 = -np.tile([1.0, 0.0, 0.0], (8, 1)) + 0.05 * rng.standard_normal((8, 3))
    b1, b2 = torch.tensor(v1, dtype=torch.float32, requires_grad=True), torch.tensor(v2, dtype=torch.float32)
    got = losses.info_nce_chunked(b1, b2, 0.01, 3)
    ref = info_nce(_t(v1), _t(v2), 0.01).item()
    assert got.item() == pytest.approx(ref, rel=1e-4, abs=1e-4)
    (g,) = torch.autograd.grad(got, b1)
    assert torch.isfinite(g).all()


def test_info_nce_chunked_many_chunks():
    rng = np.random.default_rng(10)
    v1, v2 = rng.standard_normal((50, 5)), rng.standard_normal((50, 5))
    b1, b2 = _t(v1, grad=True), _t(v2, grad=True)
    got = losses.info_nce_chunked(b1, b2, 0.2, 5)
    assert got.item() == pytest.approx(_hand_info_nce(v1, v2, 0.2), rel=1e-10)
    a1, a2 = _t(v1, grad=True), _t(v2, grad=True)
    for gc, gd in zip(torch.autograd.grad(got, (b1, b2)), torch.autograd.grad(info_nce(a1, a2, 0.2), (a1, a2))):
        torch.testing.assert_close(gc, gd, rtol=1e-8, atol=1e-12)


def test_info_nce_chunked_gradcheck():
    rng = np.random.default_rng(11)
    v1, v2 = _t(rng.standard_normal((6, 3)), grad=True), _t(rng.standard_normal((6, 3)), grad=True)
    assert torch.autograd.gradcheck(lambda a, b: losses.info_nce_chunked(a, b, 0.5, 4), (v1, v2))


def test_info_nce_on_orthonormal_views():
    # identical orthogonal views: s_ii = 1, s_ij = 0 -> loss = -log(e^(1/t) / (e^(1/t) + (n-1)))
    n, tau = 4, 0.5
    eye = _t(np.eye(n))
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (n - 1)))
    assert losses.info_nce_chunked(eye, eye, tau, 3).item() == pytest.approx(expected, rel=1e-12)
    assert info_nce(eye, eye, tau).item() == pytest.approx(expected, rel=1e-12)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 12), d=st.integers(1, 6), picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=15),
       chunk=st.integers(1, 8), tau=st.sampled_from([0.01, 0.2, 0.5, 2.0]), seed=st.integers(0, 2**16))
def test_contrast_all_is_the_references_formula_and_its_gradient(n, d, picks, chunk, tau, seed):
    """DiffMM's contrastLoss and LGMRec's ssl_triple_loss (its sum): some anchors (repeats kept) against every
    row, as the references write it, -log(exp / sum exp), in float64; chunks of any size, the constant shift
    (tau > 0.03) and the per-anchor max (tau 0.01)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    nodes = torch.tensor([k % n for k in picks])
    got = losses.contrast_all(a, b, nodes, tau, chunk=chunk)
    an, bn = F.normalize(a), F.normalize(b)
    want = -torch.log(torch.exp((an[nodes] * bn[nodes]).sum(1) / tau) / torch.exp(an[nodes] @ bn.T / tau).sum(1))
    want = want.mean()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for x, y in zip(torch.autograd.grad(got, (a, b)), torch.autograd.grad(want, (a, b))):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-11)
