"""Golden values of MMRec's LayerGCN for ``tests/test_parity_layergcn.py``: graphs, one loss, gradients, scores.

Runs MMRec's own class (``src/models/layergcn.py``) on a tiny fixed input and writes what
``mentor_ray.model.layergcn.LayerGCN`` must reproduce: the inputs, MMRec's full user-item graph as a dense
matrix, its edge list and per-edge sampling weights, the edges its first ``pre_epoch_processing`` kept
(degree-sensitive, under ``torch.manual_seed(PRUNE_SEED)``, in the order drawn) with their re-normalised
values, every weight, each loss term, the gradient of every parameter after ``backward`` of
``calculate_loss``, the full score matrix of ``full_sort_predict``, and the edges its second
``pre_epoch_processing`` kept (uniform, Python's ``random``) with their values. Not part of the package
(MMRec is GPL-3.0: it is run, never copied). Run it in an environment that has MMRec's dependencies::

    PYTHONPATH=/tmp/parity-pyg:/tmp/mmrec/src .venv/bin/python tools/parity/layergcn.py \
        --mmrec /tmp/mmrec --out tests/golden/layergcn.json

The checked-in golden file was made against MMRec commit e775373b3ab1354a92165b0885ce4ab3dc4d7497
(github.com/enoche/MMRec), torch 2.2.1, CPU. MMRec's ``layergcn.py`` imports ``models.common...``, which
that commit does not have; the script aliases it to ``common`` (the same files).

The input: 6 users, 8 items, 21 training pairs (every user and item present), embedding 4, 4 layers (MMRec's
value), edge-dropout ratio 0.5 (10 of 21 edges kept), reg_weight 0.1, and a batch of 6 triplets. Weights
are MMRec's initialisation under ``torch.manual_seed(SEED)``.
"""

from __future__ import annotations

import random

import _mmrec
import numpy as np
import torch

SEED, PRUNE_SEED = 0, 7
N_USERS, N_ITEMS, DIM = 6, 8, 4
# Training pairs, in the order of the interaction table (the golden file records MMRec's edge order).
PAIRS = [(0, 0), (1, 1), (2, 2), (3, 0), (4, 4), (5, 0), (0, 1), (1, 4), (2, 6), (3, 3), (4, 6),
         (5, 2), (0, 2), (1, 5), (2, 7), (3, 5), (4, 7), (5, 5), (0, 3), (4, 1), (5, 7)]
SETTINGS = {"n_layers": 4, "dropout": 0.5, "reg_weight": 0.1}
BATCH = {"users": [0, 1, 2, 3, 4, 0], "pos": [1, 4, 6, 5, 7, 3], "neg": [5, 0, 3, 1, 2, 6]}


def main(argv: list[str] | None = None) -> None:
    args = _mmrec.parse_args(__doc__, argv)
    from models.layergcn import LayerGCN  # MMRec's class (via the models.common alias: see _mmrec)

    users = np.array([u for u, _ in PAIRS])
    items = np.array([i for _, i in PAIRS])
    config = _mmrec.config(len(BATCH["users"]), embedding_size=DIM, **SETTINGS)
    torch.manual_seed(SEED)
    model = LayerGCN(config, _mmrec.Loader(N_USERS, N_ITEMS, users, items, dtype=np.float64))
    n_keep = int(len(PAIRS) * (1 - SETTINGS["dropout"]))

    torch.manual_seed(PRUNE_SEED)
    model.pre_epoch_processing()  # first call: degree-sensitive (torch.multinomial)
    kept = _mmrec.kept_edges(model, n_keep)

    # calculate_loss returns bpr_loss + reg_weight * emb_loss: record each
    seen: dict[str, torch.Tensor] = {}
    bpr, emb = model.bpr_loss, model.emb_loss
    model.bpr_loss = lambda *a: seen.setdefault("bpr", bpr(*a))
    model.emb_loss = lambda *a: seen.setdefault("emb", emb(*a))
    interaction = _mmrec.interaction(BATCH)
    weights = {n: _mmrec.floats(p) for n, p in model.named_parameters()}
    total = model.calculate_loss(interaction)
    total.backward()
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict([torch.arange(N_USERS)])

    random.seed(PRUNE_SEED)
    model.pre_epoch_processing()  # second call: uniform (random.sample)
    kept_uniform = _mmrec.kept_edges(model, n_keep)

    out = {
        "model": "LayerGCN",
        "mmrec_commit": args.commit,
        "torch": torch.__version__,
        "seed": SEED, "prune_seed": PRUNE_SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM, "settings": SETTINGS,
        "pairs": {"users": users.tolist(), "items": items.tolist()},
        "batch": BATCH,
        "norm_adj": _mmrec.floats(model.norm_adj_matrix.to_dense()),
        **_mmrec.pruning_edges(model),  # MMRec's edge list and sampling weights
        "kept": kept,
        "kept_uniform": kept_uniform,
        "weights": weights,
        "terms": {"bpr": float(seen["bpr"]), "reg": SETTINGS["reg_weight"] * float(seen["emb"])},
        "total": float(total),
        "grads": {n: _mmrec.floats(p.grad) for n, p in model.named_parameters()},
        "scores": _mmrec.floats(scores),
    }
    _mmrec.write(args.out, out)


if __name__ == "__main__":
    main()
