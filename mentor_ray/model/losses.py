"""MENTOR's losses as pure functions (paper Eq. 8-24). No state, no randomness except dropout.

Scale conventions (the paper writes sums; we use means so that the λ grid of the paper, tuned
with the MMRec implementation's means, keeps its meaning; see ``docs/paper_notes.md``):

- BPR (Eq. 23): mean over the batch's triplets, natural log (``F.logsigmoid``).
- Alignment (Eq. 9-16): per-node |Δmean| + |Δvar| averaged over nodes.
- Feature masking (Eq. 17): 1 - cosine, averaged over users and over items.
- InfoNCE (Eq. 21): averaged over users and over items, on L2-normalised views (cosine / τ).
- L2 (Eq. 24): squared norms summed over the batch's embedding rows, divided by the batch size.

Sharded over DDP ranks (``docs/paper_notes.md``, *Eq. 21 across ranks*): the terms that are means over
nodes take a ``count`` (the global number of rows) and a part of the rows, and return that part's SUM
divided by ``count``, so that the parts of all ranks add up to the mean. Without it, the code is the
single-process one, operation for operation.
"""

from __future__ import annotations

import itertools
from typing import Callable

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- BPR (Eq. 23)


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """mean over triplets of -log sigmoid(y_up - y_un)   (Eq. 23)."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def l2_reg(rows: list[torch.Tensor], batch_size: int) -> torch.Tensor:
    """sum of squared L2 norms of the given embedding rows / batch size   (Eq. 24, λ_E applied by caller)."""
    return sum(r.pow(2).sum() for r in rows) / batch_size


# --------------------------------------------------------------------------- alignment (Eq. 8-16)


def block_moments(x: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per node and per block of ``d`` columns: (mean, mean of squares), each (N, blocks)."""
    blocks = x.view(x.shape[0], -1, d)
    return blocks.mean(dim=2), blocks.square().mean(dim=2)


def moments_to_stats(
    mean: torch.Tensor, mean_sq: torch.Tensor, whole_matrix: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, population variance) from first and second moments (Eq. 8).

    Per node (the paper: Mean, Var: R^(d x N) -> R^N) or, with ``whole_matrix``, one value each
    over the whole matrix (the authors' code).
    """
    if whole_matrix:
        mean, mean_sq = mean.mean(), mean_sq.mean()
    return mean, (mean_sq - mean.square()).clamp_min(0.0)


def stat_gap(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor],
             count: int | None = None) -> torch.Tensor:
    """|mu_a - mu_b| + |sigma_a - sigma_b|, averaged over nodes   (the summand of Eq. 9-16).

    ``count``: the stats hold a part of the nodes (one rank's rows); their sum divided by ``count``."""
    if count is None:
        return (a[0] - b[0]).abs().mean() + (a[1] - b[1]).abs().mean()
    return ((a[0] - b[0]).abs().sum() + (a[1] - b[1]).abs().sum()) / count


def alignment_loss(
    stats: dict[str, tuple[torch.Tensor, torch.Tensor]], modalities: list[str], levels: int, count: int | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_L1 + L_L2 + L_L3 up to ``levels`` (Eq. 9-16), for any number of feature modalities.

    ``stats`` maps each feature modality, ``"id"`` and ``"fused"`` to its (mean, variance) (Eq. 8).
    Level 1 aligns every pair of feature modalities (v-t, Eq. 9); level 2 each feature modality
    with ID (Eq. 10-12); level 3 the fused modality with each feature modality and with ID
    (Eq. 13-16). Returns the sum and the per-level terms. ``count``: per-node stats of a part of the
    nodes, summed and divided by ``count`` (:func:`stat_gap`).
    """
    zero = stats["id"][0].new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    gap = stat_gap if count is None else (lambda a, b: stat_gap(a, b, count))
    if levels >= 1:
        parts["l1"] = sum((gap(stats[a], stats[b]) for a, b in itertools.combinations(modalities, 2)), zero)
    if levels >= 2:
        parts["l2"] = sum((gap(stats["id"], stats[m]) for m in modalities), zero)
    if levels >= 3:
        parts["l3"] = sum((gap(stats["fused"], stats[m]) for m in modalities), zero) + gap(stats["fused"], stats["id"])
    return sum(parts.values(), zero), parts


# --------------------------------------------------------------------------- feature masking (Eq. 17)


def feature_masking_loss(
    users: torch.Tensor, items: torch.Tensor, predictor: Callable[[torch.Tensor], torch.Tensor], p: float,
    rows: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> torch.Tensor:
    """(1 - Sim(E_u W + b, sg(drop_p(E_u)))) + (1 - Sim(E_i W + b, sg(drop_p(E_i))))   (Eq. 17).

    One view masks the fused representation with Bernoulli dropout of ratio ``p`` and stops its
    gradient; the other passes the representation through the linear ``predictor``. Gradients
    reach the encoder and the predictor through the second view only (the BM3 construction the
    paper's wording describes). Cosine similarity is averaged over users and over items.

    ``rows``: ((start, end) of the users, (start, end) of the items) one rank computes: the sum of
    1 - cosine over those rows, divided by the number of users (items). The dropout mask is drawn for
    every row all the same, so that every rank's random generator stays in step with one process's.
    """
    terms = []
    for k, x in enumerate((users, items)):
        target = F.dropout(x.detach(), p=p, training=True)  # every row's mask, on every rank
        if rows is None:
            terms.append(1.0 - F.cosine_similarity(predictor(x), target, dim=1).mean())
        else:
            s, e = rows[k]
            terms.append((1.0 - F.cosine_similarity(predictor(x[s:e]), target[s:e], dim=1)).sum() / x.shape[0])
    return terms[0] + terms[1]


# --------------------------------------------------------------------------- InfoNCE (Eq. 21)


def info_nce_chunked(view1: torch.Tensor, view2: torch.Tensor, tau: float, chunk: int = 1024, start: int = 0,
                     count: int | None = None) -> torch.Tensor:
    """mean_i -log( exp(z1_i.z2_i / τ) / sum_j exp(z1_i.z2_j / τ) ), z = L2-normalised views (Eq. 21).

    The InfoNCE of training (either scope), in O(N * chunk) memory.

    A part of the rows (one DDP rank's): ``view1`` holds rows ``start .. start + len(view1)`` of the first
    view, ``view2`` every row (all columns, the negatives); the result is those rows' terms SUMMED and
    divided by ``count``, the number of rows of the whole loss, so that the parts add up to the mean.
    By default ``view1`` is the whole first view and ``count`` its rows: the plain mean.

    Rows are processed ``chunk`` at a time: similarities, a log-sum-exp per row, and, when a gradient
    is wanted, that chunk's share of the gradient, all in one pass with reused buffers. The gradient
    is kept (two (N, d) tensors) and scaled in backward, so no N x N matrix is ever held and the
    similarities are computed once (3 matrix products per chunk instead of the 4 of a
    forward-then-recompute scheme).
    """
    if count is None and (start or view1.shape[0] != view2.shape[0]):
        raise ValueError("info_nce_chunked: a part of the rows needs the whole loss's row count")
    z1, z2 = F.normalize(view1, dim=1), F.normalize(view2, dim=1)
    return _ChunkedInfoNCE.apply(z1, z2, float(tau), int(chunk), int(start), int(count or view1.shape[0]))


class _ChunkedInfoNCE(torch.autograd.Function):
    """The log-sum-exp of every row in blocks (:func:`_logsumexp_blocks`), less the positive logits; the gradient
    is computed in the same pass and scaled in backward."""

    @staticmethod
    def forward(ctx, z1: torch.Tensor, z2: torch.Tensor, tau: float, chunk: int, start: int, count: int
                ) -> torch.Tensor:
        # z1: rows start .. start + n of the first view (all of them in one process); z2: all n2 rows
        n, n2 = z1.shape[0], z2.shape[0]
        want_grad = any(ctx.needs_input_grad[:2])
        z1s = z1 / tau
        lse_sum, g1, g2 = _logsumexp_blocks(z1, z1s, z2, tau, chunk, want_grad)
        if n == n2:  # every row (the single-process loss)
            pos = (z1s * z2).sum()
            if want_grad:
                ctx.save_for_backward((g1 - z2) / (tau * count), (g2 - z1) / (tau * count))
            return (lse_sum - pos) / count
        partners = z2[start : start + n]  # the positives of this part's rows
        pos = (z1s * partners).sum()
        if want_grad:
            g2[start : start + n].sub_(z1)
            ctx.save_for_backward((g1 - partners) / (tau * count), g2.div_(tau * count))
        return (lse_sum - pos) / count

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        g1, g2 = ctx.saved_tensors
        return grad_out * g1, grad_out * g2, None, None, None, None


# --------------------------------------------------------------------------- InfoNCE of some rows against all


def contrast_all(a: torch.Tensor, b: torch.Tensor, nodes: torch.Tensor, tau: float, chunk: int = 1024
                 ) -> torch.Tensor:
    """mean over ``nodes`` (repeats kept) of -log( exp(a_n.b_n / τ) / sum_j exp(a_n.b_j / τ) ), rows of ``a`` and
    ``b`` L2-normalised: the InfoNCE of some anchors against ALL rows of ``b`` (DiffMM's ``contrastLoss``,
    LGMRec's ``ssl_triple_loss`` as a sum: this times ``len(nodes)``).

    The log-sum-exp is :class:`_MeanLogSumExp` (the references' -log(exp / sum exp) up to rounding, without
    overflow); the positive logit is plain autograd."""
    a, b = F.normalize(a), F.normalize(b)
    pa = a[nodes]
    pos = (pa * b[nodes]).sum(-1) / tau
    return _MeanLogSumExp.apply(pa, b, float(tau), int(chunk)) - pos.mean()


class _MeanLogSumExp(torch.autograd.Function):
    """mean_i log sum_j exp(p_i . b_j / tau) for unit rows, with its gradient computed in the same pass
    (:func:`_logsumexp_blocks`, as :class:`_ChunkedInfoNCE`): no (B, n) matrix kept for the backward. With
    autograd's logsumexp this term was most of a batch's time on TikTok (9,308 users, 6,710 items) for DiffMM
    and LGMRec: the (B, n) logits passed through about eight element-wise kernels forward and backward; here
    through two."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, b: torch.Tensor, tau: float, chunk: int) -> torch.Tensor:
        rows = p.shape[0]
        want_grad = any(ctx.needs_input_grad[:2])
        total, g_p, g_b = _logsumexp_blocks(p, p / tau, b, tau, chunk, want_grad)
        if want_grad:
            ctx.save_for_backward(g_p / (tau * rows), g_b / (tau * rows))
        return total / rows

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        g_p, g_b = ctx.saved_tensors
        return grad_out * g_p, grad_out * g_b, None, None


def _logsumexp_blocks(p: torch.Tensor, ps: torch.Tensor, b: torch.Tensor, tau: float, chunk: int, want_grad: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """sum_i log sum_j exp(p_i . b_j / τ) over unit rows p_i (anchors; ``ps`` = p / τ, which the caller also
    needs for its positive logits) and b_j (all columns), ``chunk`` anchors at a time; with ``want_grad`` also
    sum_j P_ij b_j per anchor (n_p, d) and sum_i P_ij p_i per column (n_b, d), P the row softmax: the gradients
    times τ. The block is held transposed, (n_b, c) = exp(b p_block^T / τ - shift): a tall-skinny (n_b, d) x
    (d, c) GEMM, about twice as fast on CPU as (c, d) x (d, n_b), the softmax normalisation applied to the small
    (c, d) operands, and one ``exp`` per logit in one reused buffer."""
    n = p.shape[0]
    # |p_i . b_j| <= 1, so 1/τ bounds every logit: subtracting it keeps exp() <= 1, and
    # exp(-2/τ) cannot underflow for τ > 0.03. For smaller τ, subtract each anchor's max instead.
    const_shift = tau > 0.03
    block = p.new_empty((b.shape[0], min(chunk, n)))
    g_p = torch.empty_like(p) if want_grad else None
    g_b = torch.zeros_like(b) if want_grad else None
    neg_shift = p.new_full((1, 1), -1.0 / tau)
    total = p.new_zeros(())
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        blk = block[:, : e - s]  # (n_b, c)
        if const_shift:
            torch.addmm(neg_shift, b, ps[s:e].T, out=blk)
            shift = 1.0 / tau
        else:
            torch.mm(b, ps[s:e].T, out=blk)
            shift = blk.max(dim=0, keepdim=True).values  # (1, c)
            blk.sub_(shift)
        blk.exp_()
        denom = blk.sum(dim=0)  # (c,)
        total += (denom.log() + shift).sum() if const_shift else (denom.log() + shift[0]).sum()
        if want_grad:
            w = denom.reciprocal().unsqueeze(1)  # (c, 1): the softmax's normalisation
            torch.mm(blk.T, b, out=g_p[s:e])
            g_p[s:e].mul_(w)  # sum_j P_ij b_j
            g_b.addmm_(blk, p[s:e] * w)  # sum_i P_ij p_i
    return total, g_p, g_b
