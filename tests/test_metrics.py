"""Recall@K / NDCG@K and the full-ranking evaluation on tiny cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mentor_ray.datasets.dataset import csr_of
from mentor_ray.training import metrics

L3 = 1.0 / math.log2(3)  # discount at rank 1 (0-based)



def _reduce(parts: list[dict[str, float]]) -> dict[str, float]:
    """Add the summed metrics of several shards, as the trainer's all-reduce does."""
    return {k: sum(p[k] for p in parts) for k in parts[0]}

def _hits(*rows: str) -> torch.Tensor:
    """'x.x.' -> [[True, False, True, False]]."""
    return torch.tensor([[c == "x" for c in r] for r in rows])


# --------------------------------------------------------------------------- recall / ndcg


def test_recall_divides_by_ground_truth_size_not_min_k():
    hits, n_gt = _hits("x.x.", "xx..", "...."), torch.tensor([3, 2, 1])
    # user 0: 1 hit in top 2 / |gt| 3 = 1/3 (not 1/min(2, 3) = 1/2)
    # user 1: 2 / 2 = 1; user 2: 0 / 1 = 0
    assert metrics.recall_at_k(hits, n_gt, 2).tolist() == pytest.approx([1 / 3, 1.0, 0.0])
    # k = 4: user 0 has 2 hits / 3
    assert metrics.recall_at_k(hits, n_gt, 4).tolist() == pytest.approx([2 / 3, 1.0, 0.0])


def test_ndcg_when_ground_truth_exceeds_k():
    hits, n_gt = _hits("x.x."), torch.tensor([3])
    # k=2: DCG = 1/log2(2) = 1; IDCG over min(3, 2) = 2 ranks = 1 + 1/log2(3)
    assert metrics.ndcg_at_k(hits, n_gt, 2).item() == pytest.approx(1 / (1 + L3))
    # k=3: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4)
    assert metrics.ndcg_at_k(hits, n_gt, 3).item() == pytest.approx(1.5 / (1 + L3 + 0.5))


def test_ndcg_perfect_and_empty_rankings():
    hits, n_gt = _hits("xx..", "...."), torch.tensor([2, 2])
    assert metrics.ndcg_at_k(hits, n_gt, 3).tolist() == pytest.approx([1.0, 0.0])


def test_metrics_with_fewer_items_than_k():
    hits, n_gt = _hits(".x"), torch.tensor([1])  # only 2 items exist, k = 5
    assert metrics.recall_at_k(hits, n_gt, 5).item() == pytest.approx(1.0)
    # DCG = 1/log2(3) at rank 1; IDCG for 1 relevant item = 1/log2(2) = 1
    assert metrics.ndcg_at_k(hits, n_gt, 5).item() == pytest.approx(L3)


# --------------------------------------------------------------------------- evaluate

# 4 users x 6 items. Training items get -inf before ranking.
SCORES = torch.tensor(
    [
        [9.0, 1.0, 5.0, 3.0, 8.0, 2.0],  # u0: train {0} (its top score) -> ranking 4, 2, 3, 5, 1 | 0
        [6.0, 9.0, 8.0, 1.0, 2.0, 3.0],  # u1: train {1, 2} -> ranking 0, 5, 4, 3 | 1, 2
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],  # u2: no training item -> ranking 5, 4, 3, 2, 1, 0
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # u3: no ground truth -> skipped
    ]
)
TRAIN = (np.array([0, 1, 1, 3]), np.array([0, 2, 1, 5]))  # (users, items), deliberately unsorted
GT = (np.array([0, 0, 1, 2, 2]), np.array([4, 1, 0, 5, 2]))
KS = (1, 3, 10)

# hit ranks (0-based): u0 gt {1, 4} -> item 4 at rank 0, item 1 at rank 4
#                      u1 gt {0}    -> rank 0
#                      u2 gt {2, 5} -> item 5 at rank 0, item 2 at rank 3
EXPECTED = {
    # u0: 1/2, u1: 1/1, u2: 1/2
    "recall@1": [0.5, 1.0, 0.5],
    "recall@3": [0.5, 1.0, 0.5],
    # k=10 > 6 items: all hits are in the list
    "recall@10": [1.0, 1.0, 1.0],
    # @1: first item is a hit for everyone, IDCG@1 = 1
    "ndcg@1": [1.0, 1.0, 1.0],
    # @3: DCG = 1 for each; IDCG = 1 + 1/log2(3) for |gt| = 2, 1 for |gt| = 1
    "ndcg@3": [1 / (1 + L3), 1.0, 1 / (1 + L3)],
    # @10: u0 DCG = 1 + 1/log2(6); u2 DCG = 1 + 1/log2(5)
    "ndcg@10": [(1 + 1 / math.log2(6)) / (1 + L3), 1.0, (1 + 1 / math.log2(5)) / (1 + L3)],
}


def _csr(pairs, n_users=4):
    return csr_of(pairs[0], pairs[1], n_users)


def _score_fn(user_ids: torch.Tensor) -> torch.Tensor:
    return SCORES[user_ids]  # advanced indexing: a copy, evaluate may write -inf into it


def _evaluate(users=None, batch_size=100, gt=GT, train=TRAIN, ks=KS, per_user=None):
    return metrics.evaluate(_score_fn, _csr(train), _csr(gt), users=users, batch_size=batch_size, device="cpu", ks=ks,
                            per_user=per_user)


def test_csr_of_groups_and_sorts_items_per_user():
    indptr, items = _csr(TRAIN)
    assert indptr.tolist() == [0, 1, 3, 3, 4]
    assert items.tolist() == [0, 1, 2, 5]


def test_evaluate_matches_hand_computed_values():
    sums = _evaluate()
    assert sums["n_users"] == 3.0  # u3 has no ground truth
    assert set(sums) == {*EXPECTED, "n_users"}
    for name, per_user in EXPECTED.items():
        assert sums[name] == pytest.approx(sum(per_user), rel=1e-12), name
    final = metrics.finalize(sums)
    assert "n_users" not in final
    for name, per_user in EXPECTED.items():
        assert final[name] == pytest.approx(sum(per_user) / 3, rel=1e-12), name


def test_training_items_are_masked():
    # u0's training item 0 has the highest score: if it were in the ground truth it still could not be
    # recommended at rank 0 (item 4 is); ground truth {0} only -> no hit in the top 3.
    gt = (np.array([0]), np.array([0]))
    sums = _evaluate(gt=gt, ks=(1, 3))
    assert sums["n_users"] == 1.0
    assert sums["recall@1"] == 0.0 and sums["recall@3"] == 0.0 and sums["ndcg@3"] == 0.0
    # without the mask (no training data) item 0 would be ranked first
    no_train = (np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert _evaluate(gt=gt, train=no_train, ks=(1,))["recall@1"] == 1.0


def test_user_without_training_items_is_evaluated():
    sums = _evaluate(users=np.array([2]))
    assert sums["n_users"] == 1.0
    assert sums["recall@3"] == pytest.approx(0.5) and sums["ndcg@10"] == pytest.approx(EXPECTED["ndcg@10"][2])


def test_users_without_ground_truth_are_skipped():
    sums = _evaluate(users=np.array([3]))
    assert sums["n_users"] == 0.0 and all(v == 0.0 for k, v in sums.items() if k != "n_users")
    assert all(v == 0.0 for v in metrics.finalize(sums).values())  # no division by zero


def test_batching_over_users_does_not_change_the_sums():
    one, all_ = _evaluate(batch_size=1), _evaluate(batch_size=100)
    two = _evaluate(batch_size=2)
    assert one.keys() == all_.keys() == two.keys()
    for k in all_:
        assert one[k] == pytest.approx(all_[k], rel=1e-12) and two[k] == pytest.approx(all_[k], rel=1e-12)


def test_reduce_results_of_shards_equals_full_evaluation():
    parts = [_evaluate(users=np.array([0, 3])), _evaluate(users=np.array([1, 2]))]
    assert [p["n_users"] for p in parts] == [1.0, 2.0]
    reduced, full = _reduce(parts), _evaluate()
    assert reduced.keys() == full.keys()
    for k in full:
        assert reduced[k] == pytest.approx(full[k], rel=1e-12)
    assert metrics.finalize(reduced) == pytest.approx(metrics.finalize(full), rel=1e-12)


def test_finalize_divides_by_user_count():
    assert metrics.finalize({"recall@5": 1.5, "ndcg@5": 0.9, "n_users": 3.0}) == pytest.approx(
        {"recall@5": 0.5, "ndcg@5": 0.3}
    )


def test_ties_are_broken_by_torch_topk_only_tie_invariant_values_are_defined():
    # u0 scores items 0 and 1 equally (top); gt {1}. torch.topk gives no documented order among ties,
    # so recall@1 is 0 or 1 depending on the backend; recall@2 and recall@6 do not depend on the order.
    scores = torch.tensor([[5.0, 5.0, 1.0, 0.0, 0.0, 0.0]])
    gt = (np.array([0]), np.array([1]))
    no_train = (np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    sums = metrics.evaluate(
        lambda u: scores[u], csr_of(*no_train, 1), csr_of(*gt, 1), ks=(1, 2, 6), device="cpu"
    )
    assert sums["recall@1"] in (0.0, 1.0)
    # ndcg@2 is 1 (hit at rank 0) or 1/log2(3) (hit at rank 1)
    assert sums["ndcg@2"] == pytest.approx(1.0) or sums["ndcg@2"] == pytest.approx(L3)
    assert sums["recall@2"] == 1.0 and sums["recall@6"] == 1.0


def test_rank_profile_counts_hits_per_rank_band_cold_hits_and_what_is_recommended():
    scores = torch.tensor([[9.0, 8, 7, 1, 6, 0], [1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    train = csr_of(np.array([0, 2]), np.array([0, 1]), 3)  # user 0 saw item 0, user 2 item 1
    gt = csr_of(np.array([0, 0, 1]), np.array([2, 3, 0]), 3)  # user 2 has no ground truth
    popularity = np.array([5, 3, 0, 2, 0, 1])
    p = metrics.rank_profile(lambda u: scores[u], train, gt, popularity, k=3, bands=(1, 3))
    # user 0 (item 0 masked): top 3 = items 1, 2, 4, hit on item 2 at rank 2; user 1: items 5, 4, 3, no hit
    assert p == {"hits@1-1": 0.0, "hits@2-3": 1.0, "hits_cold": 1.0, "gt_cold": 1.0,
                 "popularity@1": 2.0,  # items 1 (3) and 5 (1)
                 "popularity@3": 1.0,  # items 4 (0) and 3 (2)
                 "distinct@3": 5.0}


def test_per_user_values_are_the_summed_ones():
    # ks 10 and 20 (of USER_METRICS); 6 items, so every hit is in both lists: the values of EXPECTED's @10
    kept: dict = {}
    sums = _evaluate(users=np.array([2, 0, 1, 3]), batch_size=2, ks=(10, 20), per_user=kept)
    users = np.concatenate(kept["user"])
    assert sorted(users.tolist()) == [0, 1, 2]  # u3 has no ground truth: not evaluated, not kept
    assert set(kept) == {"user", "recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    order = np.argsort(users)
    for name in ("recall@10", "ndcg@10"):
        values = np.concatenate(kept[name])[order]
        assert values == pytest.approx(EXPECTED[name], rel=1e-12)
        assert values.sum() == pytest.approx(sums[name], rel=1e-12)
    assert np.concatenate(kept["recall@20"])[order] == pytest.approx(EXPECTED["recall@10"])
    assert _evaluate(ks=(10, 20)) == sums  # keeping per-user values changes no sum
