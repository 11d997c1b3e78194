"""Golden values of MMRec's LATTICE for ``tests/test_parity_lattice.py``: two training steps of an epoch and the scores.

Runs MMRec's own class (``src/models/lattice.py``) on a tiny fixed input and writes what
``mentor_ray.model.lattice.Lattice`` must reproduce: the inputs, every weight, and for each of two batches
of one epoch each loss term, the total and the gradient of every parameter (the first batch rebuilds the
learned item graph with gradients, the second uses it detached, so the graph-side parameters get none),
then the full score matrix. Not part of the package (MMRec is GPL-3.0: it is run, never copied). Run it
in an environment with MMRec's dependencies::

    PYTHONPATH=/tmp/parity-pyg:/tmp/mmrec/src .venv/bin/python tools/parity/lattice.py \\
        --mmrec /tmp/mmrec --out tests/golden/lattice.json

The checked-in golden file was made against MMRec commit e775373b3ab1354a92165b0885ce4ab3dc4d7497
(github.com/enoche/MMRec), torch 2.2.1, CPU. MMRec moves its frozen feature graphs to the GPU with
``.cuda()``; this script makes ``Tensor.cuda`` the identity while it builds the model, so it runs on a CPU.

The input: 6 users, 8 items, 20 training pairs (every user and item present), embedding 4, projected
features of width 3, two modalities (``image`` -> ``v_feat``, 6 columns; ``text`` -> ``t_feat``, 5 columns),
k = 3, two user-item layers, two item-graph layers, lambda 0.6, reg_weight 0.5, two batches of 5 triplets.
Weights are MMRec's initialisation under ``torch.manual_seed(SEED)``, except ``modal_weight``, drawn so that
the two modalities weigh differently. No optimiser step is taken between the batches (the gradients of
the second are those of the same weights, with the graph detached).
"""

from __future__ import annotations

import _mmrec
import torch

SEED = 0
N_USERS, N_ITEMS, DIM, FEAT_DIM = 6, 8, 4, 3
KNN_K, UI_LAYERS, ITEM_LAYERS, LAMBDA, REG_WEIGHT = 3, 2, 2, 0.6, 0.5
TRAIN = {  # (user, item) pairs: every user and every item at least once
    "users": [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 5],
    "items": [0, 1, 2, 2, 3, 4, 7, 0, 5, 6, 1, 3, 6, 4, 5, 7, 0, 2, 6, 7],
}
BATCHES = [
    {"users": [0, 1, 2, 3, 0], "pos": [1, 3, 5, 6, 2], "neg": [4, 5, 7, 0, 6]},
    {"users": [4, 5, 1, 2, 5], "pos": [5, 0, 2, 6, 7], "neg": [1, 3, 0, 4, 1]},
]


def main(argv: list[str] | None = None) -> None:
    args = _mmrec.parse_args(__doc__, argv)
    from models.lattice import LATTICE  # MMRec's class

    features = _mmrec.features(SEED, N_ITEMS)  # _mmrec.FEAT_DIMS: image -> MMRec's v_feat, text -> t_feat
    # LATTICE caches its feature graphs in the dataset directory as image_adj_<k>.pt
    with _mmrec.dataset_dir(features) as data:
        config = _mmrec.config(
            len(BATCHES[0]["users"]), data, embedding_size=DIM, feat_embed_dim=FEAT_DIM, weight_size=[DIM] * UI_LAYERS,
            knn_k=KNN_K, lambda_coeff=LAMBDA, cf_model="lightgcn", n_layers=ITEM_LAYERS, reg_weight=REG_WEIGHT,
            mess_dropout=[0.1] * UI_LAYERS)
        cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda self, *a, **k: self  # MMRec's .cuda() on the feature graphs: stay on the CPU
        try:
            torch.manual_seed(SEED)
            model = LATTICE(config, _mmrec.Loader(N_USERS, N_ITEMS, TRAIN["users"], TRAIN["items"]))
        finally:
            torch.Tensor.cuda = cuda
    with torch.no_grad():
        model.modal_weight.copy_(torch.tensor([0.2, 0.9]))

    weights = {n: _mmrec.floats(p) for n, p in model.named_parameters()}
    steps = []
    model.pre_epoch_processing()  # the epoch's first batch rebuilds the item graph
    for batch in BATCHES:
        interaction = _mmrec.interaction(batch)
        build = model.build_item_graph
        # calculate_loss sums the terms: recompute them from its own forward and bpr_loss, on the graph the
        # batch uses (forward with build_item_graph=False detaches the graph it holds; rebuilding is idempotent)
        with torch.no_grad():
            ua, ia = model.forward(model.norm_adj, build_item_graph=build)
            mf, emb, reg = model.bpr_loss(ua[interaction[0]], ia[interaction[1]], ia[interaction[2]])
        model.zero_grad(set_to_none=True)
        total = model.calculate_loss(interaction)
        total.backward()
        steps.append({
            "rebuilds_graph": build,
            "batch": batch,
            "terms": {"bpr": float(mf), "reg": float(emb) + float(reg)},
            "total": float(total),
            "grads": {n: None if p.grad is None else _mmrec.floats(p.grad) for n, p in model.named_parameters()},
        })
    with torch.no_grad():
        scores = model.full_sort_predict([torch.arange(N_USERS)])

    out = {
        "model": "LATTICE",
        "mmrec_commit": args.commit,
        "torch": torch.__version__,
        "seed": SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM, "feat_dim": FEAT_DIM, "knn_k": KNN_K,
        "n_layers": UI_LAYERS, "item_layers": ITEM_LAYERS, "lambda": LAMBDA, "reg_weight": REG_WEIGHT,
        "train": TRAIN,
        "features": _mmrec.arrays(features),
        "weights": weights,
        "steps": steps,
        "scores": _mmrec.floats(scores),
    }
    _mmrec.write(args.out, out)


if __name__ == "__main__":
    main()
