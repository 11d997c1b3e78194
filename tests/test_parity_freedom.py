"""FREEDOM against MMRec's own class: graphs, pruning, loss terms, gradients and scores.

The golden file ``tests/golden/freedom.json`` is written by ``tools/parity/freedom.py`` (which runs MMRec's
``src/models/freedom.py``; its docstring says how and against which commit). Here mentor_ray's model is
built from the same inputs, its graphs by mentor_ray's own graph stage and pruning, MMRec's weights are
loaded, and everything MMRec computed must agree to float32 precision.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mentor_ray.common.config import validate
from mentor_ray.datasets.graphs import knn_edges, normalized_knn_adjacency_torch, normalized_ui_adjacency_torch
from mentor_ray.model.base import Batch
from mentor_ray.model.freedom import Freedom
from tests.model_checks import (
    RTOL,
    backward_and_scores,
    close,
    f32,
    golden_batch,
    kept_adjacency,
    load_golden,
    pairs_dataset,
    replay_kept,
)

GOLDEN = load_golden("freedom")
# MMRec parameter name -> mentor_ray's (image = the first modality, text = the second)
NAMES = {
    "user_embedding.weight": "user_embedding",
    "item_id_embedding.weight": "item_embedding",
    "image_embedding.weight": "feature_tables.0",
    "image_trs.weight": "projections.0.weight",
    "image_trs.bias": "projections.0.bias",
    "text_embedding.weight": "feature_tables.1",
    "text_trs.weight": "projections.1.weight",
    "text_trs.bias": "projections.1.bias",
}


def build(golden: dict = GOLDEN) -> Freedom:
    """mentor_ray's FREEDOM on the golden input, with mentor_ray's graphs and MMRec's weights."""
    s = golden["settings"]
    cfg = validate({"variant": "freedom", "embedding_dim": golden["embedding_dim"], "n_layers": s["n_layers"],
                    "item_layers": s["item_layers"], "dropout": s["dropout"], "knn_k": s["knn_k"],
                    "mm_image_weight": s["mm_image_weight"], "modal_bpr_weight": s["modal_bpr_weight"]})
    features = {m: f32(f) for m, f in golden["features"].items()}
    # MMRec's edge order, so that the same seed can draw the same edges (the pairs themselves are the input's)
    users, items = (np.array(golden["edges"][k]) for k in ("users", "items"))
    assert sorted(zip(users, items)) == sorted(zip(golden["pairs"]["users"], golden["pairs"]["items"]))
    n_u, n_i = golden["n_users"], golden["n_items"]
    model = Freedom(cfg, n_u, n_i, features, users, items)
    knn = {m: normalized_knn_adjacency_torch(*knn_edges(f, cfg.knn_k), n_i, cfg.knn_norm) for m, f in features.items()}
    model.set_graphs(normalized_ui_adjacency_torch(pairs_dataset(n_u, n_i, users, items)), knn)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for theirs, ours in NAMES.items():
            params[ours].copy_(f32(golden["weights"][theirs]))
    return model


def replay_pruning(model: Freedom, golden: dict = GOLDEN) -> None:
    """The training graph of the edges MMRec's pre_epoch_processing kept."""
    replay_kept(model, golden["edges"], golden["kept"])


def mmrec_pruned_adj(golden: dict = GOLDEN) -> torch.Tensor:
    return kept_adjacency(golden["kept"], golden["n_users"], golden["n_items"])


def batch(golden: dict = GOLDEN) -> Batch:
    return golden_batch(golden["batch"])


def run(model: Freedom) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """(terms, total, gradients by MMRec name, scores) of one loss on the golden batch."""
    replay_pruning(model)
    terms = model.loss_terms(batch(), per_modality=True)
    total = terms["bpr"] + terms["modal_bpr"]
    scores = backward_and_scores(model, total)
    params = dict(model.named_parameters())
    return terms, total, {theirs: params[ours].grad for theirs, ours in NAMES.items()}, scores


def test_graphs_match_mmrec():
    model = build()
    close(model.graph("ui").to_dense(), GOLDEN["norm_adj"])  # the full user-item graph (scoring)
    close(model.graph("mm").to_dense(), GOLDEN["mm_adj"])  # the frozen item graph: 0.1 image + 0.9 text
    close(model.edge_weight, GOLDEN["edge_values"])  # the pruning's sampling weights
    replay_pruning(model)
    close(model.graph("train").to_dense(), mmrec_pruned_adj())  # re-normalised kept edges


@pytest.mark.skipif(torch.__version__ != GOLDEN["torch"], reason="torch.multinomial's draws are those of the "
                    f"golden file's torch {GOLDEN['torch']} only")
def test_same_seed_prunes_the_same_edges_as_mmrec():
    model = build()
    torch.manual_seed(GOLDEN["prune_seed"])
    model.start_epoch(0)
    close(model.graph("train").to_dense(), mmrec_pruned_adj())


def test_loss_gradients_and_scores_match_mmrec():
    terms, total, grads, scores = run(build())
    close(terms["bpr"], GOLDEN["terms"]["bpr"])
    close(terms["bpr.image"], GOLDEN["terms"]["bpr.image"])
    close(terms["bpr.text"], GOLDEN["terms"]["bpr.text"])
    close(terms["modal_bpr"], GOLDEN["settings"]["modal_bpr_weight"]
          * (GOLDEN["terms"]["bpr.text"] + GOLDEN["terms"]["bpr.image"]))
    close(total, GOLDEN["total"])
    for name, g in grads.items():
        close(g, GOLDEN["grads"][name])
    close(scores, GOLDEN["scores"])


def test_loss_returns_its_weighted_terms():
    model = build()
    replay_pruning(model)
    total, terms = model.loss(batch())
    assert set(terms) == {"bpr", "modal_bpr"}
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)
    assert float(total.detach()) == pytest.approx(GOLDEN["total"], rel=RTOL)


def test_every_parameter_gets_a_gradient_even_at_weight_zero():
    """DDP runs without find_unused_parameters: modal_bpr_weight = 0 must still reach every parameter."""
    golden = {**GOLDEN, "settings": {**GOLDEN["settings"], "modal_bpr_weight": 0.0}}
    model = build(golden)
    replay_pruning(model)
    model.loss(batch())[0].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_loss_before_start_epoch_is_refused():
    with pytest.raises(RuntimeError, match="start_epoch"):
        build().loss(batch())
