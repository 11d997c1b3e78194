"""LayerGCN against MMRec's own class: graphs, edge dropout, loss terms, gradients and scores.

The golden file ``tests/golden/layergcn.json`` is written by ``tools/parity/layergcn.py`` (which runs
MMRec's ``src/models/layergcn.py``; its docstring says how and against which commit). Here mentor_ray's
model is built from the same inputs, its graphs by mentor_ray's own graph stage and pruning, MMRec's
weights are loaded, and everything MMRec computed must agree to float32 precision.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mentor_ray.common.config import validate
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model.base import Batch
from mentor_ray.model.layergcn import LayerGCN
from tests.model_checks import (
    backward_and_scores,
    close,
    f32,
    golden_batch,
    kept_adjacency,
    load_golden,
    pairs_dataset,
    replay_kept,
)

GOLDEN = load_golden("layergcn")
NAMES = {"user_embeddings": "user_embedding", "item_embeddings": "item_embedding"}  # MMRec -> mentor_ray


def build(golden: dict = GOLDEN, **overrides) -> LayerGCN:
    """mentor_ray's LayerGCN on the golden input, with mentor_ray's user-item graph and MMRec's weights."""
    cfg = validate({"variant": "layergcn", "embedding_dim": golden["embedding_dim"], **golden["settings"],
                    **overrides})
    # MMRec's edge order, so that the same seed can draw the same edges (the pairs themselves are the input's)
    users, items = (np.array(golden["edges"][k]) for k in ("users", "items"))
    assert sorted(zip(users, items)) == sorted(zip(golden["pairs"]["users"], golden["pairs"]["items"]))
    n_u, n_i = golden["n_users"], golden["n_items"]
    model = LayerGCN(cfg, n_u, n_i, users, items)
    model.set_graphs(normalized_ui_adjacency_torch(pairs_dataset(n_u, n_i, users, items)), {})
    params = dict(model.named_parameters())
    with torch.no_grad():
        for theirs, ours in NAMES.items():
            params[ours].copy_(f32(golden["weights"][theirs]))
    return model


def replay(model: LayerGCN, kept: dict) -> None:
    """The training graph of the edges one MMRec pre_epoch_processing kept."""
    replay_kept(model, GOLDEN["edges"], kept)


def mmrec_pruned_adj(kept: dict) -> torch.Tensor:
    return kept_adjacency(kept, GOLDEN["n_users"], GOLDEN["n_items"])


def batch() -> Batch:
    return golden_batch(GOLDEN["batch"])


def run(model: LayerGCN):
    """(terms, total, gradients by MMRec name, scores) of one loss on the golden batch."""
    replay(model, GOLDEN["kept"])
    total, terms = model.loss(batch())
    scores = backward_and_scores(model, total)
    params = dict(model.named_parameters())
    return terms, total, {theirs: params[ours].grad for theirs, ours in NAMES.items()}, scores


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
    close(f32(terms["bpr"]), GOLDEN["terms"]["bpr"])
    close(f32(terms["reg"]), GOLDEN["terms"]["reg"])
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
