"""VBPR against MMRec's own class: the golden values of ``tools/parity/vbpr.py`` (MMRec's VBPR run on a tiny
input) -- each loss term, the gradient of every parameter, the score matrix, and the initial weights of a seed."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mentor_ray.model.vbpr import VBPR
from tests.model_checks import backward_and_scores, check_terms, close, f32, golden_batch, load_golden

GOLDEN = load_golden("vbpr")


def _model() -> VBPR:
    g = GOLDEN
    cfg = SimpleNamespace(embedding_dim=g["embedding_dim"], reg_weight=g["reg_weight"])
    features = {m: f32(f) for m, f in g["features"].items()}  # dataset order: image, text
    return VBPR(cfg, g["n_users"], g["n_items"], features)


def _run():
    """Our model with MMRec's weights (same parameter names): loss terms, gradients and scores."""
    m = _model()
    m.load_state_dict({k: f32(v) for k, v in GOLDEN["weights"].items()})
    total, terms = m.loss(golden_batch(GOLDEN["batch"]))
    return m, total, terms, backward_and_scores(m, total)


@pytest.fixture(scope="module")
def run():
    return _run()


def test_loss_terms_match_mmrec(run):
    _, total, terms, _ = run
    check_terms(total, terms, GOLDEN["terms"], GOLDEN["total"])


def test_gradients_match_mmrec(run):
    m = run[0]
    names = dict(m.named_parameters())
    assert set(names) == set(GOLDEN["grads"])
    for k, g in GOLDEN["grads"].items():
        close(names[k].grad, g, msg=k)


def test_scores_match_mmrec(run):
    close(run[3], GOLDEN["scores"])


def test_same_seed_gives_mmrecs_initial_weights():
    """Parameters are drawn in MMRec's order, so one torch seed gives MMRec's initialisation (the golden
    file's bias alone was redrawn, and MMRec's is zero)."""
    torch.manual_seed(GOLDEN["seed"])
    m = _model()
    for k, w in GOLDEN["weights"].items():
        expected = torch.zeros(len(w)) if k == "item_linear.bias" else f32(w)
        torch.testing.assert_close(dict(m.named_parameters())[k].detach(), expected, rtol=0, atol=0, msg=k)
