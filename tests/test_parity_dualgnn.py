"""DualGNN against MMRec's own code: the golden values of ``tools/parity/dualgnn.py`` (MMRec's preprocessing and
its DualGNN class run on a tiny input) -- the user co-occurrence lists, each loss term, the gradient of every
parameter and the score matrix. The user-item adjacency is mentor_ray's graph stage's (what the trainer gives
the model); the epoch's sampled user graph is MMRec's (its padding is random), given to the model as it is."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model.dualgnn import DualGNN, cooccurrence_neighbours, sample_user_graph
from tests.model_checks import backward_and_scores, check_terms, close, f32, golden_batch, load_golden, pairs_dataset

GOLDEN = load_golden("dualgnn")
MODALITIES = {"image": "v", "text": "t"}  # MMRec's v_feat, t_feat
# mentor_ray's parameter -> MMRec's
NAMES = {"weight_u": "weight_u", "weight_i": "weight_i",
         **{f"pref.{m}": f"{x}_gcn.preference" for m, x in MODALITIES.items()},
         **{f"mlp.{m}.{k}.{p}": f"{x}_gcn.{mm}.{p}" for m, x in MODALITIES.items()
            for k, mm in ((0, "MLP"), (2, "MLP_1")) for p in ("weight", "bias")}}


def _train():
    return torch.tensor(GOLDEN["train"]["users"]), torch.tensor(GOLDEN["train"]["items"])


def _model() -> DualGNN:
    g = GOLDEN
    cfg = SimpleNamespace(embedding_dim=g["embedding_dim"], n_layers=g["n_layers"], reg_weight=g["reg_weight"],
                          dualgnn_user_k=g["user_k"])
    features = {m: f32(g["features"][m]) for m in MODALITIES}  # dataset order: image, text
    m = DualGNN(cfg, g["n_users"], g["n_items"], features, *_train())
    m.load_state_dict({k: f32(g["weights"][v]) for k, v in NAMES.items()})
    users, items = (t.numpy() for t in _train())
    ds = pairs_dataset(g["n_users"], g["n_items"], users, items)
    m.set_graphs(normalized_ui_adjacency_torch(ds), {})  # what the trainer gives it
    return m


def _run():
    m = _model()
    m.set_user_graph(torch.tensor(GOLDEN["epoch_user_graph"]), f32(GOLDEN["user_weight_matrix"]))  # MMRec's draw
    total, terms = m.loss(golden_batch(GOLDEN["batch"]))
    return m, total, terms, backward_and_scores(m, total)


@pytest.fixture(scope="module")
def run():
    return _run()


def test_parameters_are_mmrecs_used_ones():
    assert set(dict(_model().named_parameters())) == set(NAMES)
    assert set(NAMES.values()) == set(GOLDEN["weights"])
    # MMRec's MLP_v, MLP_t, MLP_user never get a gradient: mentor_ray leaves them out
    assert GOLDEN["unused_without_grad"] == ["MLP_v.weight", "MLP_t.weight", "MLP_user.weight", "MLP_user.bias"]


def test_cooccurrence_lists_are_mmrecs_up_to_tie_order():
    n = GOLDEN["n_users"]
    idx, cnt, length = cooccurrence_neighbours(*_train(), n, GOLDEN["n_items"], 200)
    for u in range(n):
        theirs_idx, theirs_cnt = GOLDEN["user_graph_dict"][str(u)]
        k = int(length[u])
        assert dict(zip(idx[u, :k].tolist(), cnt[u, :k].tolist())) == dict(zip(theirs_idx, theirs_cnt))
        assert sorted(cnt[u, :k].tolist(), reverse=True) == cnt[u, :k].tolist() == theirs_cnt  # most first
        key = [(-c, v) for v, c in zip(idx[u, :k].tolist(), cnt[u, :k].tolist())]
        assert key == sorted(key)  # ties: the lower user id first (MMRec: torch.topk's order)


def test_epoch_graph_follows_mmrecs_sampling():
    """Users with at least k candidates take the first k (MMRec's where there is no tie at the k-th); shorter
    lists are padded from earlier positions; weights are the softmax of the counts; no candidate: all zero."""
    k = GOLDEN["user_k"]
    cand, cnt, length = cooccurrence_neighbours(*_train(), GOLDEN["n_users"], GOLDEN["n_items"], k)
    torch.manual_seed(0)
    idx, w = sample_user_graph(cand, cnt, length, k)
    theirs, theirs_w = GOLDEN["epoch_user_graph"], np.array(GOLDEN["user_weight_matrix"])
    counts = {u: dict(zip(*GOLDEN["user_graph_dict"][str(u)])) for u in range(GOLDEN["n_users"])}
    for u in range(GOLDEN["n_users"]):
        n_u = int(length[u])
        if n_u == 0:
            assert theirs[u] == [0] * k and not theirs_w[u].any()
            assert idx[u].tolist() == [0] * k and not w[u].any()
            continue
        got = idx[u].tolist()
        assert got[:n_u] == cand[u, :n_u].tolist()
        assert all(v in got[:n_u] for v in got[n_u:])
        want = torch.softmax(torch.tensor([counts[u][v] for v in got]), 0)
        torch.testing.assert_close(w[u], want)
        c = sorted(counts[u].values(), reverse=True)
        if n_u >= k and (len(c) == k or c[k - 1] != c[k]):  # no tie at the k-th: MMRec's set and weights
            assert sorted(got) == sorted(theirs[u])
            np.testing.assert_allclose(sorted(w[u].tolist()), sorted(theirs_w[u]), rtol=1e-6)


def test_loss_terms_match_mmrec(run):
    _, total, terms, _ = run
    check_terms(total, terms, GOLDEN["terms"], GOLDEN["total"])


def test_gradients_match_mmrec(run):
    params = dict(run[0].named_parameters())
    for ours, theirs in NAMES.items():
        close(params[ours].grad, GOLDEN["grads"][theirs], msg=ours)


def test_scores_match_mmrec(run):
    close(run[3], GOLDEN["scores"])
