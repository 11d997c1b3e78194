"""LATTICE against MMRec's own class: the golden values of ``tools/parity/lattice.py`` (MMRec's LATTICE run on a
tiny input). The model builds every graph itself (the self-loop user-item graph, the frozen feature kNN graphs,
the learned item graph), so their construction is compared too. Two batches of one epoch: the first rebuilds
the learned graph with gradients, the second uses it detached (the graph-side parameters get no gradient);
then the scores, which rebuild the graph from the current weights."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mentor_ray.model import Batch
from mentor_ray.model.lattice import Lattice

GOLDEN = json.loads((Path(__file__).parent / "golden" / "lattice.json").read_text())
TOL = {"rtol": 1e-5, "atol": 1e-6}
MODALITIES = ("image", "text")  # MMRec's v_feat, t_feat
# mentor_ray's parameter -> MMRec's
NAMES = {"user_emb": "user_embedding.weight", "item_emb": "item_id_embedding.weight",
         "modal_weight": "modal_weight",
         **{f"feat.{m}": f"{m}_embedding.weight" for m in MODALITIES},
         **{f"trs.{m}.{p}": f"{m}_trs.{p}" for m in MODALITIES for p in ("weight", "bias")}}


def _t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def _model() -> Lattice:
    g = GOLDEN
    cfg = SimpleNamespace(embedding_dim=g["embedding_dim"], n_layers=g["n_layers"], item_layers=g["item_layers"],
                          reg_weight=g["reg_weight"], lattice_feat_dim=g["feat_dim"], lattice_knn_k=g["knn_k"],
                          lattice_lambda=g["lambda"])
    features = {m: _t(g["features"][m]) for m in MODALITIES}  # dataset order: image, text
    m = Lattice(cfg, g["n_users"], g["n_items"], features, torch.tensor(g["train"]["users"]),
                torch.tensor(g["train"]["items"]))
    m.load_state_dict({k: _t(g["weights"][v]) for k, v in NAMES.items()})
    return m


def _run():
    """Our model with MMRec's weights: per batch the loss terms, total and gradients; then the scores."""
    m = _model()
    m.start_epoch(0)
    steps = []
    for step in GOLDEN["steps"]:
        batch = Batch(*(torch.tensor(step["batch"][k]) for k in ("users", "pos", "neg")))
        m.zero_grad(set_to_none=True)
        total, terms = m.loss(batch)
        total.backward()
        steps.append((total, terms, {n: None if p.grad is None else p.grad.clone() for n, p in m.named_parameters()}))
    u, i = m.user_item_embeddings()
    return m, steps, u @ i.T


@pytest.fixture(scope="module")
def run():
    return _run()


def test_parameters_are_mmrecs():
    assert set(dict(_model().named_parameters())) == set(NAMES)
    assert set(NAMES.values()) == set(GOLDEN["weights"])


@pytest.mark.parametrize("k", range(len(GOLDEN["steps"])))
def test_loss_terms_match_mmrec(run, k):
    total, terms, _ = run[1][k]
    want = GOLDEN["steps"][k]
    assert set(terms) == set(want["terms"])
    for name, v in want["terms"].items():
        assert terms[name] == pytest.approx(v, rel=TOL["rtol"], abs=TOL["atol"]), name
    assert float(total.detach()) == pytest.approx(want["total"], rel=TOL["rtol"])


@pytest.mark.parametrize("k", range(len(GOLDEN["steps"])))
def test_gradients_match_mmrec(run, k):
    grads = run[1][k][2]
    want = GOLDEN["steps"][k]["grads"]
    for ours, theirs in NAMES.items():
        if want[theirs] is None:  # the detached graph: no gradient at all, as in MMRec (Adam skips them)
            assert grads[ours] is None, ours
        else:
            torch.testing.assert_close(grads[ours], _t(want[theirs]), **TOL, msg=ours)


def test_first_batch_rebuilds_the_graph_and_the_second_does_not():
    assert [s["rebuilds_graph"] for s in GOLDEN["steps"]] == [True, False]
    assert all(v is not None for v in GOLDEN["steps"][0]["grads"].values())


def test_scores_match_mmrec(run):
    torch.testing.assert_close(run[2], _t(GOLDEN["scores"]), **TOL)
