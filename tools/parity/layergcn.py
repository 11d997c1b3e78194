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

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

MMREC_COMMIT = "e775373b3ab1354a92165b0885ce4ab3dc4d7497"  # the checkout the golden file was made with
SEED, PRUNE_SEED = 0, 7
N_USERS, N_ITEMS, DIM = 6, 8, 4
# Training pairs, in the order of the interaction table (the golden file records MMRec's edge order).
PAIRS = [(0, 0), (1, 1), (2, 2), (3, 0), (4, 4), (5, 0), (0, 1), (1, 4), (2, 6), (3, 3), (4, 6),
         (5, 2), (0, 2), (1, 5), (2, 7), (3, 5), (4, 7), (5, 5), (0, 3), (4, 1), (5, 7)]
SETTINGS = {"n_layers": 4, "dropout": 0.5, "reg_weight": 0.1}
BATCH = {"users": [0, 1, 2, 3, 4, 0], "pos": [1, 4, 6, 5, 7, 3], "neg": [5, 0, 3, 1, 2, 6]}


def _floats(t: torch.Tensor) -> list:
    return t.detach().double().tolist()


def _kept(model, n_keep: int) -> dict:
    """The edges of MMRec's masked_adj: its first n_keep entries are (user, item + n_users), as drawn."""
    idx = model.masked_adj._indices()[:, :n_keep]
    return {"users": idx[0].tolist(), "items": (idx[1] - N_USERS).tolist(),
            "values": _floats(model.masked_adj._values()[:n_keep])}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mmrec", type=Path, required=True, help="an MMRec checkout")
    ap.add_argument("--out", type=Path, required=True, help="the golden JSON to write")
    ap.add_argument("--commit", default=MMREC_COMMIT, help="the MMRec commit of --mmrec, recorded in the JSON")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.mmrec / "src"))
    import common
    import common.abstract_recommender
    import common.loss
    import models

    # layergcn.py imports models.common.*; at this commit those modules are src/common/*
    sys.modules["models.common"] = models.common = common
    sys.modules["models.common.abstract_recommender"] = common.abstract_recommender
    sys.modules["models.common.loss"] = common.loss
    from models.layergcn import LayerGCN  # MMRec's class

    if not hasattr(sp.dok_matrix, "_update"):  # removed in newer SciPy; MMRec's get_norm_adj_mat calls it
        def _update(self, data):
            for (r, c), v in data.items():
                self[r, c] = v
        sp.dok_matrix._update = _update

    users = np.array([u for u, _ in PAIRS])
    items = np.array([i for _, i in PAIRS])
    config = {
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "NEG_PREFIX": "neg__",
        "train_batch_size": len(BATCH["users"]), "device": "cpu", "end2end": False,
        "is_multimodal_model": False, "embedding_size": DIM, **SETTINGS,
    }

    class _Loader:  # the train dataloader MMRec passes: sizes and the interaction matrix
        class dataset:  # noqa: N801
            @staticmethod
            def get_user_num():
                return N_USERS

            @staticmethod
            def get_item_num():
                return N_ITEMS

        @staticmethod
        def inter_matrix(form="coo"):
            assert form == "coo"
            return sp.coo_matrix((np.ones(len(PAIRS)), (users, items)), shape=(N_USERS, N_ITEMS))

    torch.manual_seed(SEED)
    model = LayerGCN(config, _Loader())
    n_keep = int(len(PAIRS) * (1 - SETTINGS["dropout"]))

    torch.manual_seed(PRUNE_SEED)
    model.pre_epoch_processing()  # first call: degree-sensitive (torch.multinomial)
    kept = _kept(model, n_keep)

    # calculate_loss returns bpr_loss + reg_weight * emb_loss: record each
    seen: dict[str, torch.Tensor] = {}
    bpr, emb = model.bpr_loss, model.emb_loss
    model.bpr_loss = lambda *a: seen.setdefault("bpr", bpr(*a))
    model.emb_loss = lambda *a: seen.setdefault("emb", emb(*a))
    interaction = [torch.tensor(BATCH[k]) for k in ("users", "pos", "neg")]
    weights = {n: _floats(p) for n, p in model.named_parameters()}
    total = model.calculate_loss(interaction)
    total.backward()
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict([torch.arange(N_USERS)])

    random.seed(PRUNE_SEED)
    model.pre_epoch_processing()  # second call: uniform (random.sample)
    kept_uniform = _kept(model, n_keep)

    out = {
        "model": "LayerGCN",
        "mmrec_commit": args.commit,
        "torch": torch.__version__,
        "seed": SEED, "prune_seed": PRUNE_SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM, "settings": SETTINGS,
        "pairs": {"users": users.tolist(), "items": items.tolist()},
        "batch": BATCH,
        "norm_adj": _floats(model.norm_adj_matrix.to_dense()),
        # MMRec's edge list (its order depends on SciPy: 1.17's astype sorts a COO matrix) and weights
        "edges": {"users": model.edge_indices[0].tolist(), "items": model.edge_indices[1].tolist()},
        "edge_values": _floats(model.edge_values),
        "kept": kept,
        "kept_uniform": kept_uniform,
        "weights": weights,
        "terms": {"bpr": float(seen["bpr"]), "reg": SETTINGS["reg_weight"] * float(seen["emb"])},
        "total": float(total),
        "grads": {n: _floats(p.grad) for n, p in model.named_parameters()},
        "scores": _floats(scores),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
