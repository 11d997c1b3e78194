"""Full-ranking top-K metrics as in MMRec: Recall@K and NDCG@K over all items, training items masked.

- Every item is ranked for every evaluated user; the user's training items are set to -inf first.
- Recall@K = hits in the top K / |ground truth| (MMRec's definition, not / min(K, |gt|)).
- NDCG@K = sum over hit ranks r < K of 1/log2(r + 2), divided by the ideal DCG of min(|gt|, K) hits.
- Users with no ground truth in the split are skipped; users without training interactions are
  evaluated like everyone else.
- Users are processed in batches, so memory is bounded by batch x n_items.
- Masked training items get -inf; when K exceeds a user's unseen items they fill the end of the
  top-K list but can never be hits, because the loader guarantees that no (user, item) pair is
  in two splits.

The functions return per-user values summed, with the user count, so that ranks of a distributed
evaluation can add them up before dividing (:func:`finalize`). :func:`evaluate` can also hand back the
per-user values themselves (``per_user``), for the paired tests over users of the leaderboard.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from mentor_ray.common.names import KS, USER_METRICS


def _rows(indptr: np.ndarray, indices: np.ndarray, users: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(row position in ``users``, item) pairs for the CSR rows of ``users``."""
    starts, ends = indptr[users], indptr[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(users.size), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = indices[np.repeat(starts, lengths) + offsets]
    return torch.from_numpy(rows), torch.from_numpy(cols)


def masked_batch(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    train_csr: tuple[np.ndarray, np.ndarray],
    gt_csr: tuple[np.ndarray, np.ndarray],
    batch: np.ndarray,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (B, n_items) with the batch's training items at -inf, ground truth (B, n_items) bool)."""
    # a copy, so masking never writes into a tensor the caller still holds
    scores = score_fn(torch.from_numpy(batch).to(device)).float().clone()
    r, c = _rows(*train_csr, batch)
    scores[r.to(device), c.to(device)] = -torch.inf  # never recommend a training item
    gt = torch.zeros_like(scores, dtype=torch.bool)
    r, c = _rows(*gt_csr, batch)
    gt[r.to(device), c.to(device)] = True
    return scores, gt


def topk_hits(scores: torch.Tensor, gt: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) bool: whether the item at each of the top-k ranks is in the ground truth ``gt`` (B, n)."""
    top = scores.topk(k, dim=1).indices
    return gt.gather(1, top)


def recall_at_k(hits: torch.Tensor, n_gt: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) hits in the top k / |ground truth|."""
    return hits[:, :k].sum(1).double() / n_gt.double()


def ndcg_at_k(hits: torch.Tensor, n_gt: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) DCG@k / IDCG@k with binary relevance."""
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=hits.device))
    top = hits[:, :k].double()  # fewer than k columns when there are fewer than k items
    dcg = (top * discount[: top.shape[1]]).sum(1)
    ideal = torch.cumsum(discount, 0)[(n_gt.clamp(max=k) - 1).long()]
    return dcg / ideal


def evaluate(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    train_csr: tuple[np.ndarray, np.ndarray],
    gt_csr: tuple[np.ndarray, np.ndarray],
    users: np.ndarray | None = None,
    batch_size: int = 4096,
    device: torch.device | str = "cpu",
    ks: tuple[int, ...] = KS,
    per_user: dict[str, list[np.ndarray]] | None = None,
) -> dict[str, float]:
    """Summed per-user metrics and ``n_users`` over ``users`` (default: all users with ground truth).

    ``score_fn(user_ids) -> (B, n_items)`` scores. Divide with :func:`finalize`. With ``per_user`` (a
    dict), each batch's user ids are appended to ``per_user["user"]`` and their values of every metric of
    :data:`USER_METRICS` to ``per_user[metric]``; the sums are the same either way.
    """
    gt_ptr = gt_csr[0]
    if users is None:
        users = np.arange(gt_ptr.size - 1)
    users = users[np.diff(gt_ptr)[users] > 0]  # skip users without ground truth
    sums = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg") for k in ks}
    kmax = max(ks)
    for s in range(0, users.size, batch_size):
        batch = users[s : s + batch_size]
        scores, gt = masked_batch(score_fn, train_csr, gt_csr, batch, device)  # (B, n_items) each
        n_gt = torch.from_numpy(np.diff(gt_ptr)[batch]).to(device)
        hits = topk_hits(scores, gt, min(kmax, scores.shape[1]))
        if per_user is not None:
            per_user.setdefault("user", []).append(batch)
        for k in ks:
            for name, fn in (("recall", recall_at_k), ("ndcg", ndcg_at_k)):
                values = fn(hits, n_gt, k)
                sums[f"{name}@{k}"] += float(values.sum())
                if per_user is not None and f"{name}@{k}" in USER_METRICS:
                    per_user.setdefault(f"{name}@{k}", []).append(values.cpu().numpy())
    sums["n_users"] = float(users.size)
    return sums


def finalize(sums: dict[str, float]) -> dict[str, float]:
    """Means over users from summed metrics."""
    n = max(sums["n_users"], 1.0)
    return {k: v / n for k, v in sums.items() if k != "n_users"}


def rank_profile(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    train_csr: tuple[np.ndarray, np.ndarray],
    gt_csr: tuple[np.ndarray, np.ndarray],
    popularity: np.ndarray,
    k: int = 20,
    bands: tuple[int, ...] = (5, 10, 20),
    batch_size: int = 4096,
) -> dict[str, float]:
    """Where a model's top-``k`` hits sit and what it recommends, for comparing two models' rankings.

    Over the users with ground truth: ``hits@a-b``, the hits at ranks a..b (1-based, bands ending at
    ``bands``); ``hits_cold``, hits on items of ``popularity`` 0 (never in training) out of
    ``gt_cold`` such ground-truth interactions; ``popularity@r``, the median popularity of the
    item recommended at rank r for each r in ``bands`` and rank 1; ``distinct@k``, how many different
    items appear in the top-``k`` lists. Training items are masked as in :func:`evaluate`.
    """
    gt_ptr, gt_idx = gt_csr
    users = np.flatnonzero(np.diff(gt_ptr) > 0)
    edges = (0, *bands)
    out = {f"hits@{a + 1}-{b}": 0.0 for a, b in zip(edges, edges[1:])}
    pop = np.asarray(popularity)
    cold = torch.from_numpy(pop == 0)
    out["hits_cold"], out["gt_cold"] = 0.0, float(cold[torch.from_numpy(gt_idx)].sum())
    tops = []
    for s in range(0, users.size, batch_size):
        scores, gt = masked_batch(score_fn, train_csr, gt_csr, users[s : s + batch_size])
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices  # (B, k); fewer items than k: all of them
        hits = gt.gather(1, top)
        for a, b in zip(edges, edges[1:]):
            out[f"hits@{a + 1}-{b}"] += float(hits[:, a:b].sum())
        out["hits_cold"] += float((hits & cold[top]).sum())
        tops.append(top)
    top = torch.cat(tops).numpy() if tops else np.empty((0, k), dtype=np.int64)
    for rank in sorted({1, *bands}):  # no item at that rank (fewer items, or no user): NaN
        out[f"popularity@{rank}"] = (float(np.median(pop[top[:, rank - 1]])) if top.shape[1] >= rank and len(top)
                                     else float("nan"))
    out[f"distinct@{k}"] = float(np.unique(top).size)
    return out
