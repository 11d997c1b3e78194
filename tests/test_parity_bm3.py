"""BM3 against MMRec's own class: the user-item graph, each loss term, every gradient and the scores.

The golden file ``tests/golden/bm3.json`` is written by ``tools/parity/bm3.py`` (which runs MMRec's
``src/models/bm3.py``; its docstring says how and against which commit). Here mentor_ray's model is built from
the same inputs, its user-item graph by mentor_ray's own graph stage, MMRec's weights are loaded, MMRec's
recorded dropout masks are replayed through ``BM3._dropout``, and everything MMRec computed must agree to
float32 precision. A second test checks that the same torch seed draws MMRec's masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mentor_ray.common.config import validate
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model.base import Batch
from mentor_ray.model.bm3 import BM3
from tests.model_checks import RTOL, backward_and_scores, close, f32, golden_batch, load_golden, pairs_dataset

GOLDEN = load_golden("bm3")
# MMRec parameter name -> mentor_ray's (image = the first modality, text = the second)
NAMES = {
    "user_embedding.weight": "user_embedding",
    "item_id_embedding.weight": "item_embedding",
    "predictor.weight": "predictor.weight",
    "predictor.bias": "predictor.bias",
    "image_embedding.weight": "feature_tables.0",
    "image_trs.weight": "projections.0.weight",
    "image_trs.bias": "projections.0.bias",
    "text_embedding.weight": "feature_tables.1",
    "text_trs.weight": "projections.1.weight",
    "text_trs.bias": "projections.1.bias",
}
MASK_ORDER = ("users", "items", "text", "image")  # as MMRec draws them


def build(golden: dict = GOLDEN, **settings) -> BM3:
    """mentor_ray's BM3 on the golden input, with mentor_ray's user-item graph and MMRec's weights."""
    s = {**golden["settings"], **settings}
    cfg = validate({"variant": "bm3", "embedding_dim": golden["embedding_dim"], "n_layers": s["n_layers"],
                    "dropout": s["dropout"], "reg_weight": s["reg_weight"], "bm3_cl_weight": s["cl_weight"]})
    features = {m: f32(f) for m, f in golden["features"].items()}
    assert list(features) == ["image", "text"]
    n_u, n_i = golden["n_users"], golden["n_items"]
    model = BM3(cfg, n_u, n_i, features)
    users, items = (np.array(golden["pairs"][k]) for k in ("users", "items"))
    model.set_graphs(normalized_ui_adjacency_torch(pairs_dataset(n_u, n_i, users, items)), {})
    params = dict(model.named_parameters())
    assert set(params) == set(NAMES.values())
    with torch.no_grad():
        for theirs, ours in NAMES.items():
            params[ours].copy_(f32(golden["weights"][theirs]))
    return model


def replay_masks(model: BM3, golden: dict = GOLDEN) -> None:
    """``model._dropout`` returns MMRec's recorded masks (scaled by 1 / (1 - p)), in the order drawn."""
    q = 1.0 - golden["settings"]["dropout"]
    masks = iter([f32(golden["masks"][k]).div(q) for k in MASK_ORDER])
    model._dropout = lambda x: next(masks)


def batch(golden: dict = GOLDEN) -> Batch:
    return golden_batch(golden["batch"])


def run(model: BM3) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """(terms and parts, total, gradients by MMRec name, scores) of one loss on the golden batch."""
    terms = model.loss_terms(batch(), parts=True)
    total = sum(terms[k] for k in ("rec", "align", "mask", "reg"))
    scores = backward_and_scores(model, total)
    params = dict(model.named_parameters())
    return terms, total, {theirs: params[ours].grad for theirs, ours in NAMES.items()}, scores


def max_relative_differences() -> dict[str, float]:
    """The largest |ours - MMRec| / |MMRec| of the terms, the gradients and the scores (for the docs)."""
    model = build()
    replay_masks(model)
    terms, total, grads, scores = run(model)
    rel = lambda a, b: float(((a.detach().double() - b).abs() / b.abs().clamp_min(1e-30)).max())  # noqa: E731
    d = torch.as_tensor
    out = {"terms": max([rel(terms[k], d(v, dtype=torch.float64)) for k, v in GOLDEN["parts"].items()]
                        + [rel(total, d(GOLDEN["total"], dtype=torch.float64))]),
           "grads": max(rel(g, d(GOLDEN["grads"][k], dtype=torch.float64)) for k, g in grads.items()),
           "grads_abs": max(float((g.double() - d(GOLDEN["grads"][k], dtype=torch.float64)).abs().max())
                            for k, g in grads.items()),
           "scores": rel(scores, d(GOLDEN["scores"], dtype=torch.float64)),
           "graph": rel(build().graph("ui").to_dense(), d(GOLDEN["norm_adj"], dtype=torch.float64))}
    return out


def test_user_item_graph_matches_mmrec():
    close(build().graph("ui").to_dense(), GOLDEN["norm_adj"])


def test_loss_gradients_and_scores_match_mmrec():
    model = build()
    replay_masks(model)
    terms, total, grads, scores = run(model)
    for k, v in GOLDEN["parts"].items():
        close(terms[k], v, msg=k)
    s = GOLDEN["settings"]
    p = GOLDEN["parts"]
    close(terms["rec"], p["rec.ui"] + p["rec.iu"])
    close(terms["align"], s["cl_weight"] * (p["align.text"] + p["align.image"]))
    close(terms["mask"], s["cl_weight"] * (p["mask.text"] + p["mask.image"]))
    close(terms["reg"], s["reg_weight"] * p["reg.norms"])
    close(total, GOLDEN["total"])
    for name, g in grads.items():
        close(g, GOLDEN["grads"][name], msg=name)
    close(scores, GOLDEN["scores"])


@pytest.mark.skipif(torch.__version__ != GOLDEN["torch"], reason="dropout's draws are those of the golden "
                    f"file's torch {GOLDEN['torch']} only")
def test_same_seed_draws_mmrecs_masks():
    model = build()
    drawn = []
    real = model._dropout
    model._dropout = lambda x: drawn.append(real(x)) or drawn[-1]
    torch.manual_seed(GOLDEN["drop_seed"])
    total, _ = model.loss(batch())
    q = 1.0 - GOLDEN["settings"]["dropout"]
    assert [torch.equal(m, f32(GOLDEN["masks"][k]).div(q)) for m, k in zip(drawn, MASK_ORDER)] == [True] * 4
    assert float(total.detach()) == pytest.approx(GOLDEN["total"], rel=RTOL)


def test_loss_returns_its_weighted_terms_and_ignores_negatives():
    model = build()
    replay_masks(model)
    total, terms = model.loss(batch())
    assert set(terms) == {"rec", "align", "mask", "reg"}
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)
    assert float(total.detach()) == pytest.approx(GOLDEN["total"], rel=RTOL)
    other = batch()
    other.neg = other.neg.flip(0)  # BM3 trains without negatives: batch.neg is never read
    replay_masks(model)
    assert float(model.loss(other)[0].detach()) == float(total.detach())


def test_every_parameter_gets_a_gradient_even_at_weight_zero():
    """DDP runs without find_unused_parameters: cl_weight = reg_weight = 0 must still reach every parameter."""
    model = build(cl_weight=0.0, reg_weight=0.0)
    replay_masks(model)
    model.loss(batch())[0].backward()
    assert all(p.grad is not None for p in model.parameters())
