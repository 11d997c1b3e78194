"""Golden values of MMRec's SLMRec for ``tests/test_parity_slmrec.py``: graph, loss terms, gradients, a step, scores.

Runs MMRec's own class (``src/models/slmrec.py``, GPL-3.0: run here, never copied) on a tiny fixed input
and writes what ``mentor_ray.model.slmrec.SLMRec`` must reproduce. Run it in an environment that has
MMRec's dependencies::

    PYTHONPATH=/tmp/parity-pyg:/tmp/mmrec/src .venv/bin/python tools/parity/slmrec.py \
        --mmrec /tmp/mmrec --out tests/golden/slmrec.json

The checked-in golden file was made against MMRec commit e775373b3ab1354a92165b0885ce4ab3dc4d7497
(github.com/enoche/MMRec), torch 2.2.1, CPU. MMRec's ``slmrec.py`` imports ``torch_scatter`` and
``sklearn.cluster.KMeans`` at the top and uses neither (only its commented TikTok branch would): both are
stubbed here when absent.

The input: 6 users, 8 items, 21 training pairs (every user and item present), embedding 4, two modalities
(``image`` -> MMRec's ``v_feat``, 6 columns; ``text`` -> ``t_feat``, 5 columns), 3 layers, ``ssl_task``
FAC, temp 0.2, ssl_temp 0.5, ssl_alpha 0.3, and a batch of 7 pairs with a repeated positive item (a
negative of itself in both in-batch InfoNCE terms). Weights are MMRec's initialisation under
``torch.manual_seed(SEED)``. FAC draws no random numbers, so nothing needs pinning. The JSON holds the
inputs, MMRec's ``norm_adj`` (dense), every weight, each loss term (the main InfoNCE, and FAC's visual and
textual InfoNCE: each call of ``infonce_criterion``), ``calculate_loss``, the gradient of every parameter
after its ``backward``, every parameter after one step of MMRec's optimiser (``Adam(lr, weight_decay)``, as
``common/trainer.py``'s ``_build_optimizer``, with a large weight decay so that it shows), and
``full_sort_predict`` for all users after that step (MMRec scores with the embeddings ``calculate_loss``
saved, from before the step). ``one_modality`` repeats the run with the image features only, under
MMRec's ``dataset: kwai`` branch (IDs and ``v_feat``; FAC's visual stage only).
"""

from __future__ import annotations

import importlib.machinery
import sys
import tempfile
import types
from pathlib import Path

import _mmrec
import numpy as np
import torch

SEED = 0
N_USERS, N_ITEMS, DIM = 6, 8, 4
PAIRS = [(0, 0), (1, 1), (2, 2), (3, 0), (4, 4), (5, 0), (0, 1), (1, 4), (2, 6), (3, 3), (4, 6),
         (5, 2), (0, 2), (1, 5), (2, 7), (3, 5), (4, 7), (5, 5), (0, 3), (4, 1), (5, 7)]
SETTINGS = {"n_layers": 3, "tau": 0.2, "slmrec_ssl_temp": 0.5, "slmrec_ssl_alpha": 0.3}
STEP = {"lr": 0.01, "weight_decay": 0.05}  # the optimiser step: MMRec's Adam with its coupled weight decay
BATCH = {"users": [0, 1, 2, 3, 4, 0, 5], "pos": [1, 4, 6, 5, 7, 3, 5], "neg": [5, 0, 3, 1, 2, 6, 1]}


def _stub_unused_imports() -> None:
    """``torch_scatter.scatter`` and ``sklearn.cluster.KMeans``, imported by MMRec's slmrec.py, used by nothing
    SLMRec runs: empty stand-ins where the packages are absent."""
    for name, attr in (("torch_scatter", "scatter"), ("sklearn.cluster", "KMeans")):
        try:
            __import__(name)
        except ImportError:
            parts = name.split(".")
            for k in range(1, len(parts) + 1):
                stub = types.ModuleType(".".join(parts[:k]))
                stub.__spec__ = importlib.machinery.ModuleSpec(stub.__name__, None)  # torch._dynamo looks
                sys.modules.setdefault(stub.__name__, stub)
            setattr(sys.modules[name], attr, None)


def main(argv: list[str] | None = None) -> None:
    args = _mmrec.parse_args(__doc__, argv)
    _stub_unused_imports()
    features = _mmrec.features(SEED, N_ITEMS)  # _mmrec.FEAT_DIMS: image -> MMRec's v_feat, text -> t_feat
    with _mmrec.dataset_dir(features) as data:
        out = run(data, features, args.commit)
    # One modality: MMRec's "kwai" branch (ID and v_feat only; FAC's visual stage only)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kwai").mkdir()
        np.save(Path(tmp) / "kwai" / "image_feat.npy", features["image"])
        data = {"data_path": tmp + "/", "dataset": "kwai", "vision_feature_file": "image_feat.npy",
                "text_feature_file": "absent.npy"}
        one = run(data, {"image": features["image"]}, args.commit)
    used = one["grads"]  # the parameters the one-modality loss reaches (the others are MMRec's, unused)
    out["one_modality"] = {**{k: one[k] for k in ("features", "terms", "total", "grads", "no_grad", "scores")},
                           **{k: {n: v for n, v in one[k].items() if n in used} for k in ("weights", "stepped")}}
    _mmrec.write(args.out, out)


def run(data: dict, features: dict[str, np.ndarray], commit: str) -> dict:
    """MMRec's SLMRec on the dataset directory ``data``: the record (see the module docstring)."""
    from models.slmrec import SLMRec  # MMRec's class

    users = np.array([u for u, _ in PAIRS])
    items = np.array([i for _, i in PAIRS])
    config = _mmrec.config(
        len(BATCH["users"]), data, recdim=DIM, layer_num=SETTINGS["n_layers"], ssl_task="FAC",
        ssl_temp=SETTINGS["slmrec_ssl_temp"], ssl_alpha=SETTINGS["slmrec_ssl_alpha"], temp=SETTINGS["tau"],
        dropout_rate=0.3, mm_fusion_mode="concat", init="xavier", adj_type="pre", reg=1e-4)
    torch.manual_seed(SEED)
    model = SLMRec(config, _mmrec.Loader(N_USERS, N_ITEMS, users, items))

    # calculate_loss = infonce(main) + ssl_alpha * fac, fac = v_loss + t_loss: record each criterion call
    calls: list[torch.Tensor] = []
    model.infonce_criterion.register_forward_hook(lambda _mod, _inp, out: calls.append(out))
    interaction = _mmrec.interaction(BATCH)
    weights = {n: _mmrec.floats(p) for n, p in model.named_parameters()}
    total = model.calculate_loss(interaction)
    assert len(calls) == 1 + len(features)
    total.backward()
    grads = {n: _mmrec.floats(p.grad) for n, p in model.named_parameters() if p.grad is not None}
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    optimizer = torch.optim.Adam(model.parameters(), lr=STEP["lr"], weight_decay=STEP["weight_decay"])
    optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict([torch.arange(N_USERS)])

    return {
        "model": "SLMRec",
        "mmrec_commit": commit,
        "torch": torch.__version__,
        "seed": SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM, "settings": SETTINGS, "step": STEP,
        "pairs": {"users": users.tolist(), "items": items.tolist()},
        "features": _mmrec.arrays(features),
        "batch": BATCH,
        "norm_adj": _mmrec.floats(model.norm_adj.to_dense()),
        "weights": weights,
        "terms": {"infonce": float(calls[0]), **{f"fac.{m}": float(c) for m, c in zip(features, calls[1:])}},
        "total": float(total),
        "grads": grads,
        "no_grad": unused,  # parameters calculate_loss does not reach (g_a_iva: the acoustic head)
        "stepped": {n: _mmrec.floats(p) for n, p in model.named_parameters()},
        "scores": _mmrec.floats(scores),
    }


if __name__ == "__main__":
    main()
