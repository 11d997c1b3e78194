"""LayerGCN against MMRec's own class: graphs, edge dropout, loss terms, gradients and scores.

The golden file ``tests/golden/layergcn.json`` is written by ``tools/parity/layergcn.py`` (which runs
MMRec's ``src/models/layergcn.py``; its docstring says how and against which commit). Here mentor_ray's
model is built from the same inputs, its graphs by mentor_ray's own graph stage and pruning, MMRec's
weights are loaded, and everything MMRec computed must agree to float32 precision.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mentor_ray.common.config import validate
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model.base import Batch
from mentor_ray.model.layergcn import LayerGCN

GOLDEN = json.loads((Path(__file__).parent / "golden" / "layergcn.json").read_text())
RTOL, ATOL = 1e-5, 1e-6
NAMES = {"user_embeddings": "user_embedding", "item_embeddings": "item_embedding"}  # MMRec -> mentor_ray


def t(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32)


def build(golden: dict = GOLDEN, **overrides) -> LayerGCN:
    """mentor_ray's LayerGCN on the golden input, with mentor_ray's user-item graph and MMRec's weights."""
    cfg = validate({"variant": "layergcn", "embedding_dim": golden["embedding_dim"], **golden["settings"],
                    **overrides})
    # MMRec's edge order, so that the same seed can draw the same edges (the pairs themselves are the input's)
    users, items = (np.array(golden["edges"][k]) for k in ("users", "items"))
    assert sorted(zip(users, items)) == sorted(zip(golden["pairs"]["users"], golden["pairs"]["items"]))
    n_u, n_i = golden["n_users"], golden["n_items"]
    model = LayerGCN(cfg, n_u, n_i, users, items)
    ds = SimpleNamespace(n_users=n_u, n_items=n_i, train=SimpleNamespace(users=users, items=items))
    model.set_graphs(normalized_ui_adjacency_torch(ds), {})
    params = dict(model.named_parameters())
    with torch.no_grad():
        for theirs, ours in NAMES.items():
            params[ours].copy_(t(golden["weights"][theirs]))
    return model


def replay(model: LayerGCN, kept: dict) -> None:
    """The training graph of the edges one MMRec pre_epoch_processing kept."""
    index = {(u, i): k for k, (u, i) in enumerate(zip(GOLDEN["edges"]["users"], GOLDEN["edges"]["items"]))}
    model.prune(torch.tensor([index[p] for p in zip(kept["users"], kept["items"])]))


def mmrec_pruned_adj(kept: dict) -> torch.Tensor:
    n_u, n = GOLDEN["n_users"], GOLDEN["n_users"] + GOLDEN["n_items"]
    a = torch.zeros(n, n)
    for u, i, v in zip(kept["users"], kept["items"], kept["values"]):
        a[u, n_u + i] = a[n_u + i, u] = v
    return a


def batch() -> Batch:
    return Batch(*(torch.tensor(GOLDEN["batch"][k]) for k in ("users", "pos", "neg")))


def run(model: LayerGCN):
    """(terms, total, gradients by MMRec name, scores) of one loss on the golden batch."""
    replay(model, GOLDEN["kept"])
    total, terms = model.loss(batch())
    total.backward()
    params = dict(model.named_parameters())
    grads = {theirs: params[ours].grad for theirs, ours in NAMES.items()}
    users, items = model.user_item_embeddings()
    return terms, total, grads, users @ items.T


def close(ours: torch.Tensor, theirs) -> None:
    torch.testing.assert_close(ours.detach().float(), t(theirs), rtol=RTOL, atol=ATOL)


def test_graphs_match_mmrec():
    model = build()
    close(model.graph("ui").to_dense(), GOLDEN["norm_adj"])  # the full user-item graph (scoring)
    close(model.edge_weight, GOLDEN["edge_values"])  # the degree-sensitive sampling weights
    for kept in (GOLDEN["kept"], GOLDEN["kept_uniform"]):  # both kinds of epoch: re-normalised kept edges
        replay(model, kept)
        close(model.graph("train").to_dense(), mmrec_pruned_adj(kept))


@pytest.mark.skipif(torch.__version__ != GOLDEN["torch"], reason="torch.multinomial's draws are those of the "
                    f"golden file's torch {GOLDEN['torch']} only")
def test_same_seed_prunes_the_same_edges_as_mmrec_on_an_even_epoch():
    model = build()
    torch.manual_seed(GOLDEN["prune_seed"])
    model.start_epoch(0)
    close(model.graph("train").to_dense(), mmrec_pruned_adj(GOLDEN["kept"]))


def test_loss_gradients_and_scores_match_mmrec():
    terms, total, grads, scores = run(build())
    close(t(terms["bpr"]), GOLDEN["terms"]["bpr"])
    close(t(terms["reg"]), GOLDEN["terms"]["reg"])
    close(total, GOLDEN["total"])
    for name, g in grads.items():
        close(g, GOLDEN["grads"][name])
    close(scores, GOLDEN["scores"])


def test_odd_epochs_draw_uniformly_even_epochs_by_degree():
    """Even epochs: torch.multinomial over the degree weights; odd: a uniform permutation (MMRec alternates)."""
    model = build()
    n_keep = len(GOLDEN["kept"]["users"])
    for epoch, draw in ((0, lambda: torch.multinomial(model.edge_weight, n_keep)),
                        (1, lambda: torch.randperm(model.edge_weight.numel())[:n_keep])):
        torch.manual_seed(3)
        model.start_epoch(epoch)
        got = model.graph("train").to_dense()
        torch.manual_seed(3)
        model.prune(draw())
        torch.testing.assert_close(got, model.graph("train").to_dense(), rtol=0, atol=0)
    model = build(dropout=0.0)
    model.start_epoch(1)
    assert model.graph("train") is model.graph("ui")  # no dropout: the full graph


def test_loss_before_start_epoch_is_refused():
    with pytest.raises(RuntimeError, match="start_epoch"):
        build().loss(batch())
