"""Golden values of MMRec's FREEDOM for ``tests/test_parity_freedom.py``: graphs, one loss, gradients, scores.

Runs MMRec's own class (``src/models/freedom.py``) on a tiny fixed input and writes what
``mentor_ray.model.freedom.Freedom`` must reproduce: the inputs, MMRec's fused item-item graph
(``mm_adj``) and full user-item graph (``norm_adj``) as dense matrices, the per-edge sampling weights of
its degree-sensitive pruning, the edges one ``pre_epoch_processing`` kept (under ``torch.manual_seed
(PRUNE_SEED)``, in the order drawn) with their re-normalised values, every weight, each loss term, the
gradient of every parameter after ``backward`` of ``calculate_loss``, and the full score matrix of
``full_sort_predict``. Not part of the package (MMRec is GPL-3.0: it is run, never copied). Run it in an
environment that has MMRec's dependencies::

    PYTHONPATH=/tmp/parity-pyg:/tmp/mmrec/src .venv/bin/python tools/parity/freedom.py \
        --mmrec /tmp/mmrec --out tests/golden/freedom.json

The checked-in golden file was made against MMRec commit e775373b3ab1354a92165b0885ce4ab3dc4d7497
(github.com/enoche/MMRec), torch 2.2.1, CPU.

The input: 6 users, 8 items, 21 training pairs (every user and item present, degrees 2 to 4), embedding
4, two modalities (``image`` -> MMRec's ``v_feat``, 6 columns; ``text`` -> ``t_feat``, 5 columns), knn_k 3,
2 user-item and 2 item-item layers, edge-pruning ratio 0.5 (10 of 21 edges kept), mm_image_weight 0.1,
reg_weight (the modality BPR weight) 0.1, and a batch of 6 triplets. Weights are MMRec's initialisation
under ``torch.manual_seed(SEED)``, except the projections' biases, redrawn so that they are not tiny.
"""

from __future__ import annotations

import _mmrec
import numpy as np
import torch

SEED, PRUNE_SEED = 0, 7
N_USERS, N_ITEMS, DIM = 6, 8, 4
# Training pairs, in the order of the interaction table (the golden file records MMRec's edge order).
PAIRS = [(0, 0), (1, 1), (2, 2), (3, 0), (4, 4), (5, 0), (0, 1), (1, 4), (2, 6), (3, 3), (4, 6),
         (5, 2), (0, 2), (1, 5), (2, 7), (3, 5), (4, 7), (5, 5), (0, 3), (4, 1), (5, 7)]
SETTINGS = {"knn_k": 3, "n_layers": 2, "item_layers": 2, "dropout": 0.5, "mm_image_weight": 0.1,
            "modal_bpr_weight": 0.1}
BATCH = {"users": [0, 1, 2, 3, 4, 0], "pos": [1, 4, 6, 5, 7, 3], "neg": [5, 0, 3, 1, 2, 6]}


def main(argv: list[str] | None = None) -> None:
    args = _mmrec.parse_args(__doc__, argv)
    from models.freedom import FREEDOM  # MMRec's class

    features = _mmrec.features(SEED, N_ITEMS)  # _mmrec.FEAT_DIMS: image -> MMRec's v_feat, text -> t_feat
    users = np.array([u for u, _ in PAIRS])
    items = np.array([i for _, i in PAIRS])
    with _mmrec.dataset_dir(features) as data:  # FREEDOM caches mm_adj there
        config = _mmrec.config(
            len(BATCH["users"]), data, embedding_size=DIM, feat_embed_dim=DIM, knn_k=SETTINGS["knn_k"],
            lambda_coeff=0.9, cf_model="lightgcn", n_mm_layers=SETTINGS["item_layers"],
            n_ui_layers=SETTINGS["n_layers"], reg_weight=SETTINGS["modal_bpr_weight"],
            mm_image_weight=SETTINGS["mm_image_weight"], dropout=SETTINGS["dropout"], degree_ratio=1.0)
        torch.manual_seed(SEED)
        model = FREEDOM(config, _mmrec.Loader(N_USERS, N_ITEMS, users, items, dtype=np.float64))
    with torch.no_grad():
        g = torch.Generator().manual_seed(SEED + 1)
        for lin in (model.image_trs, model.text_trs):
            lin.bias.copy_(torch.randn(DIM, generator=g))

    torch.manual_seed(PRUNE_SEED)
    model.pre_epoch_processing()
    n_keep = int(len(PAIRS) * (1 - SETTINGS["dropout"]))
    kept = _mmrec.kept_edges(model, n_keep)

    # calculate_loss returns bpr(ID) + reg_weight * (bpr(text) + bpr(image)): record each call of bpr_loss
    calls: list[torch.Tensor] = []
    bpr = model.bpr_loss
    model.bpr_loss = lambda *a: calls.append(bpr(*a)) or calls[-1]
    interaction = _mmrec.interaction(BATCH)
    weights = {n: _mmrec.floats(p) for n, p in model.named_parameters()}
    total = model.calculate_loss(interaction)
    total.backward()
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict([torch.arange(N_USERS)])

    out = {
        "model": "FREEDOM",
        "mmrec_commit": args.commit,
        "torch": torch.__version__,
        "seed": SEED, "prune_seed": PRUNE_SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM, "settings": SETTINGS,
        "pairs": {"users": users.tolist(), "items": items.tolist()},
        "features": _mmrec.arrays(features),
        "batch": BATCH,
        "mm_adj": _mmrec.floats(model.mm_adj.to_dense()),
        "norm_adj": _mmrec.floats(model.norm_adj.to_dense()),
        **_mmrec.pruning_edges(model),  # MMRec's edge list and sampling weights
        "kept": kept,
        "weights": weights,
        "terms": {"bpr": float(calls[0]), "bpr.text": float(calls[1]), "bpr.image": float(calls[2])},
        "total": float(total),
        "grads": {n: _mmrec.floats(p.grad) for n, p in model.named_parameters()},
        "scores": _mmrec.floats(scores),
    }
    _mmrec.write(args.out, out)


if __name__ == "__main__":
    main()
