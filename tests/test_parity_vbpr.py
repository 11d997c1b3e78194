"""VBPR against MMRec's own class: the golden values of ``tools/parity/vbpr.py`` (MMRec's VBPR run on a tiny
input) -- each loss term, the gradient of every parameter, the score matrix, and the initial weights of a seed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mentor_ray.model import Batch
from mentor_ray.model.vbpr import VBPR

GOLDEN = json.loads((Path(__file__).parent / "golden" / "vbpr.json").read_text())
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def _model() -> VBPR:
    g = GOLDEN
    cfg = SimpleNamespace(embedding_dim=g["embedding_dim"], reg_weight=g["reg_weight"])
    features = {m: _t(f) for m, f in g["features"].items()}  # dataset order: image, text
    return VBPR(cfg, g["n_users"], g["n_items"], features)


def _run():
    """Our model with MMRec's weights (same parameter names): loss terms, gradients and scores."""
    m = _model()
    m.load_state_dict({k: _t(v) for k, v in GOLDEN["weights"].items()})
    batch = Batch(*(torch.tensor(GOLDEN["batch"][k]) for k in ("users", "pos", "neg")))
    total, terms = m.loss(batch)
    total.backward()
    u, i = m.user_item_embeddings()
    return m, total, terms, u @ i.T


@pytest.fixture(scope="module")
def run():
    return _run()


def test_loss_terms_match_mmrec(run):
    _, total, terms, _ = run
    assert set(terms) == set(GOLDEN["terms"])
    for k, v in GOLDEN["terms"].items():
        assert terms[k] == pytest.approx(v, rel=TOL["rtol"], abs=TOL["atol"]), k
    assert float(total.detach()) == pytest.approx(GOLDEN["total"], rel=TOL["rtol"])


def test_gradients_match_mmrec(run):
    m = run[0]
    names = dict(m.named_parameters())
    assert set(names) == set(GOLDEN["grads"])
    for k, g in GOLDEN["grads"].items():
        torch.testing.assert_close(names[k].grad, _t(g), **TOL, msg=k)


def test_scores_match_mmrec(run):
    torch.testing.assert_close(run[3], _t(GOLDEN["scores"]), **TOL)


def test_same_seed_gives_mmrecs_initial_weights():
    """Parameters are drawn in MMRec's order, so one torch seed gives MMRec's initialisation (the golden
    file's bias alone was redrawn, and MMRec's is zero)."""
    torch.manual_seed(GOLDEN["seed"])
    m = _model()
    for k, w in GOLDEN["weights"].items():
        expected = torch.zeros(len(w)) if k == "item_linear.bias" else _t(w)
        torch.testing.assert_close(dict(m.named_parameters())[k].detach(), expected, rtol=0, atol=0, msg=k)
