"""MMGCN against MMRec's own class (torch_geometric's MessagePassing inside): the golden values of
``tools/parity/mmgcn.py`` -- each loss term, the gradient of every parameter, the score matrix, and the
initial weights of a seed. The graph is built by our model from the same training pairs."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mentor_ray.model.mmgcn import MMGCN
from tests.model_checks import backward_and_scores, check_terms, f32, golden_batch, load_golden

GOLDEN = load_golden("mmgcn")
# Gradients and scores are small here (1e-4 to 2e-2: BPR near log 2), so an absolute 1e-6 would let a
# small tensor be 1% off: each tensor is compared with rtol 1e-5 and an atol of 1e-5 of its largest entry
# (float32 sums in another order -- PyG's scatter mean against a sparse matmul -- differ by 4e-6 of it).


def _close(actual: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()), msg=msg)
MODALITY = {"v": "image", "t": "text"}  # MMRec's v_feat, t_feat: the dataset's image, text


def _ours(name: str) -> str:
    """MMRec's name of a weight -> ours (``v_gcn.conv_embed_2.weight`` -> ``gcn.image.layers.1.conv``)."""
    if name == "id_embedding":
        return name
    mod, rest = re.fullmatch(r"([vt])_gcn\.(.+)", name).groups()
    rest = rest.replace("MLP.", "mlp.")
    if m := re.fullmatch(r"(conv_embed_|linear_layer|g_layer)(\d)\.(weight|bias)", rest):
        kind, layer, what = m.groups()
        part = {"conv_embed_": "conv", "linear_layer": "linear.", "g_layer": "combine."}[kind]
        rest = f"layers.{int(layer) - 1}.{part}" + ("" if kind == "conv_embed_" else what)
    return f"gcn.{MODALITY[mod]}.{rest}"


def _model() -> MMGCN:
    g = GOLDEN
    cfg = SimpleNamespace(embedding_dim=g["embedding_dim"], reg_weight=g["reg_weight"])
    features = {m: f32(f) for m, f in g["features"].items()}  # dataset order: image, text
    return MMGCN(cfg, g["n_users"], g["n_items"], features, np.array(g["train"]["users"]),
                 np.array(g["train"]["items"]), latent_dim=g["latent_dim"])


def _run():
    """Our model with MMRec's weights and frozen tensors: loss terms, gradients and scores."""
    m = _model()
    state = {_ours(k): f32(v) for k, v in {**GOLDEN["weights"], **GOLDEN["frozen"]}.items()}
    m.load_state_dict(state)  # strict: every parameter and buffer named
    total, terms = m.loss(golden_batch(GOLDEN["batch"]))
    return m, total, terms, backward_and_scores(m, total)


@pytest.fixture(scope="module")
def run():
    return _run()


def test_loss_terms_match_mmrec(run):
    _, total, terms, _ = run
    check_terms(total, terms, GOLDEN["terms"], GOLDEN["total"])


def test_gradients_match_mmrec(run):
    names = dict(run[0].named_parameters())
    assert set(names) == {_ours(k) for k in GOLDEN["grads"]}  # the same trained parameters, no more
    for k, g in GOLDEN["grads"].items():
        _close(names[_ours(k)].grad, f32(g), msg=k)


def test_scores_match_mmrec(run):
    _close(run[3], f32(GOLDEN["scores"]))


def test_same_seed_gives_mmrecs_initial_weights():
    """Weights and frozen tensors are drawn in MMRec's order: one torch seed gives MMRec's initialisation."""
    torch.manual_seed(GOLDEN["seed"])
    state = _model().state_dict()
    for k, w in {**GOLDEN["weights"], **GOLDEN["frozen"]}.items():
        torch.testing.assert_close(state[_ours(k)], f32(w), rtol=0, atol=0, msg=k)
