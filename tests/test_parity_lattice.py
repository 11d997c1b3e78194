"""LATTICE against MMRec's own class: the golden values of ``tools/parity/lattice.py`` (MMRec's LATTICE run on a
tiny input). The model builds every graph itself (the self-loop user-item graph, the frozen feature kNN graphs,
the learned item graph), so their construction is compared too. Two batches of one epoch: the first rebuilds
the learned graph with gradients, the second uses it detached (the graph-side parameters get no gradient);
then the scores, which rebuild the graph from the current weights."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mentor_ray.model.lattice import Lattice
from tests.model_checks import check_terms, close, f32, golden_batch, load_golden

GOLDEN = load_golden("lattice")
MODALITIES = ("image", "text")  # MMRec's v_feat, t_feat
# mentor_ray's parameter -> MMRec's
NAMES = {"user_emb": "user_embedding.weight", "item_emb": "item_id_embedding.weight",
         "modal_weight": "modal_weight",
         **{f"feat.{m}": f"{m}_embedding.weight" for m in MODALITIES},
         **{f"trs.{m}.{p}": f"{m}_trs.{p}" for m in MODALITIES for p in ("weight", "bias")}}


def _model() -> Lattice:
    g = GOLDEN
    cfg = SimpleNamespace(embedding_dim=g["embedding_dim"], n_layers=g["n_layers"], item_layers=g["item_layers"],
                          reg_weight=g["reg_weight"], lattice_feat_dim=g["feat_dim"], lattice_knn_k=g["knn_k"],
                          lattice_lambda=g["lambda"])
    features = {m: f32(g["features"][m]) for m in MODALITIES}  # dataset order: image, text
    m = Lattice(cfg, g["n_users"], g["n_items"], features, torch.tensor(g["train"]["users"]),
                torch.tensor(g["train"]["items"]))
    m.load_state_dict({k: f32(g["weights"][v]) for k, v in NAMES.items()})
    return m


def _run():
    """Our model with MMRec's weights: per batch the loss terms, total and gradients; then the scores."""
    m = _model()
    m.start_epoch(0)
    steps = []
    for step in GOLDEN["steps"]:
        batch = golden_batch(step["batch"])
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
    check_terms(total, terms, want["terms"], want["total"])


@pytest.mark.parametrize("k", range(len(GOLDEN["steps"])))
def test_gradients_match_mmrec(run, k):
    grads = run[1][k][2]
    want = GOLDEN["steps"][k]["grads"]
    for ours, theirs in NAMES.items():
        if want[theirs] is None:  # the detached graph: no gradient at all, as in MMRec (Adam skips them)
            assert grads[ours] is None, ours
        else:
            close(grads[ours], want[theirs], msg=ours)


def test_first_batch_rebuilds_the_graph_and_the_second_does_not():
    assert [s["rebuilds_graph"] for s in GOLDEN["steps"]] == [True, False]
    assert all(v is not None for v in GOLDEN["steps"][0]["grads"].values())


def test_scores_match_mmrec(run):
    close(run[2], GOLDEN["scores"])
