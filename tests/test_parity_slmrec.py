"""SLMRec against MMRec's own class: the user-item graph, loss terms, gradients, one optimiser step and scores.

The golden file ``tests/golden/slmrec.json`` is written by ``tools/parity/slmrec.py`` (which runs MMRec's
``src/models/slmrec.py``; its docstring says how and against which commit). Here mentor_ray's model is
built from the same inputs, its graph by mentor_ray's own graph stage, MMRec's weights are loaded, and
everything MMRec computed must agree to float32 precision. FAC draws no random numbers: nothing is replayed.
Two reference runs: two modalities (image, text), and one (image; MMRec's ``kwai`` branch).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mentor_ray.common.config import validate
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model.slmrec import SLMRec
from tests.model_checks import RTOL, close, f32, golden_batch, load_golden, pairs_dataset

GOLDEN = load_golden("slmrec")
# MMRec parameter name -> mentor_ray's (v = image, the first modality; t = text, the second). FAC's chain for
# two modalities: g_i_iv, g_iv_iva, g_iva_ivat; its heads: g_v_iv, g_t_ivat. MMRec's g_a_iva is unused.
NAMES = {
    "embedding_user.weight": "user_embedding",
    "embedding_item.weight": "item_embedding",
    "v_dense.weight": "dense.0.weight",
    "v_dense.bias": "dense.0.bias",
    "t_dense.weight": "dense.1.weight",
    "t_dense.bias": "dense.1.bias",
    "embedding_item_after_GCN.weight": "item_fusion.weight",
    "embedding_item_after_GCN.bias": "item_fusion.bias",
    "embedding_user_after_GCN.weight": "user_fusion.weight",
    "embedding_user_after_GCN.bias": "user_fusion.bias",
    "g_i_iv.weight": "fac_chain.0.weight",
    "g_i_iv.bias": "fac_chain.0.bias",
    "g_iv_iva.weight": "fac_chain.1.weight",
    "g_iv_iva.bias": "fac_chain.1.bias",
    "g_iva_ivat.weight": "fac_chain.2.weight",
    "g_iva_ivat.bias": "fac_chain.2.bias",
    "g_v_iv.weight": "fac_heads.0.weight",
    "g_v_iv.bias": "fac_heads.0.bias",
    "g_t_ivat.weight": "fac_heads.1.weight",
    "g_t_ivat.bias": "fac_heads.1.bias",
}
# One modality (MMRec's kwai branch): the ID and image parts, FAC's first stage only
NAMES_ONE = {k: v for k, v in NAMES.items() if k.split(".")[0] in ("embedding_user", "embedding_item", "v_dense",
             "embedding_item_after_GCN", "embedding_user_after_GCN", "g_i_iv", "g_v_iv")}
CASES = {"two": (GOLDEN, NAMES), "one": ({**GOLDEN, **GOLDEN["one_modality"]}, NAMES_ONE)}


def build(case: str = "two", weight_decay: float = 0.0) -> SLMRec:
    """mentor_ray's SLMRec on the golden input of ``case``, with mentor_ray's graph and MMRec's weights."""
    golden, names = CASES[case]
    cfg = validate({"variant": "slmrec", "embedding_dim": golden["embedding_dim"], **golden["settings"],
                    "slmrec_weight_decay": weight_decay})
    features = {m: f32(f) for m, f in golden["features"].items()}
    n_u, n_i = golden["n_users"], golden["n_items"]
    model = SLMRec(cfg, n_u, n_i, features)
    users, items = (np.array(golden["pairs"][k]) for k in ("users", "items"))
    model.set_graphs(normalized_ui_adjacency_torch(pairs_dataset(n_u, n_i, users, items)), {})
    params = dict(model.named_parameters())
    assert set(params) == set(names.values())  # every parameter is one of MMRec's
    with torch.no_grad():
        for theirs, ours in names.items():
            params[ours].copy_(f32(golden["weights"][theirs]))
    return model


def test_user_item_graph_matches_mmrec():
    close(build().graph("ui").to_dense(), GOLDEN["norm_adj"])


@pytest.mark.parametrize("case", CASES)
def test_loss_terms_and_gradients_match_mmrec(case):
    golden, names = CASES[case]
    model = build(case)
    batch = golden_batch(golden["batch"])
    _, items_per = model()
    fac = {f"fac.{m}": float(v.detach()) for m, v in model.fac(items_per, batch).items()}
    total, terms = model.loss(batch)
    assert set(terms) == {"infonce", "ssl", "weight_decay"} and terms["weight_decay"] == 0.0
    want = golden["terms"]
    want_fac = {k: v for k, v in want.items() if k.startswith("fac.")}  # one per modality
    assert terms["infonce"] == pytest.approx(want["infonce"], rel=RTOL)
    assert fac == pytest.approx(want_fac, rel=RTOL)
    want_fac = sum(want_fac.values())
    assert terms["ssl"] == pytest.approx(golden["settings"]["slmrec_ssl_alpha"] * want_fac, rel=RTOL)
    close(total, golden["total"])
    total.backward()
    params = dict(model.named_parameters())
    assert set(golden["grads"]) == set(names)  # MMRec's parameters that get a gradient are exactly ours
    for theirs, ours in names.items():
        close(params[ours].grad, golden["grads"][theirs], msg=theirs)


@pytest.mark.parametrize("case", CASES)
def test_weight_decay_term_is_mmrecs_adam_weight_decay(case):
    """One Adam step on the loss with the weight-decay term equals MMRec's step (Adam's coupled weight_decay)."""
    golden, names = CASES[case]
    step = golden["step"]
    model = build(case, weight_decay=step["weight_decay"])
    total, terms = model.loss(golden_batch(golden["batch"]))
    decay = sum(f32(golden["weights"][n]).square().sum() for n in names)
    assert terms["weight_decay"] == pytest.approx(0.5 * step["weight_decay"] * float(decay), rel=RTOL)
    total.backward()
    params = dict(model.named_parameters())
    for theirs, ours in names.items():  # MMRec's gradient + w theta
        close(params[ours].grad, f32(golden["grads"][theirs]) + step["weight_decay"] * f32(golden["weights"][theirs]),
              msg=theirs)
    torch.optim.Adam(model.parameters(), lr=step["lr"]).step()
    for theirs, ours in names.items():
        close(params[ours], golden["stepped"][theirs], msg=theirs)


@pytest.mark.parametrize("case", CASES)
def test_scores_are_mmrecs_from_the_last_training_batch(case):
    """MMRec's full_sort_predict after the step uses the embeddings calculate_loss saved (before the step)."""
    golden, _ = CASES[case]
    step = golden["step"]
    model = build(case, weight_decay=step["weight_decay"])
    model.loss(golden_batch(golden["batch"]))[0].backward()
    torch.optim.Adam(model.parameters(), lr=step["lr"]).step()
    u, i = model.user_item_embeddings()
    close(torch.sigmoid(u @ i.T), golden["scores"])  # MMRec returns the sigmoid of the scores
    fresh_u, fresh_i = model()[0]
    assert not torch.allclose(fresh_u @ fresh_i.T, u @ i.T)  # the step moved them: the stale ones are MMRec's
