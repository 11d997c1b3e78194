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

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

MMREC_COMMIT = "e775373b3ab1354a92165b0885ce4ab3dc4d7497"  # the checkout the golden file was made with
SEED, PRUNE_SEED = 0, 7
N_USERS, N_ITEMS, DIM = 6, 8, 4
FEAT_DIMS = {"image": 6, "text": 5}  # dataset order; MMRec: image = v_feat, text = t_feat
# Training pairs, in the order of the interaction table (the golden file records MMRec's edge order).
PAIRS = [(0, 0), (1, 1), (2, 2), (3, 0), (4, 4), (5, 0), (0, 1), (1, 4), (2, 6), (3, 3), (4, 6),
         (5, 2), (0, 2), (1, 5), (2, 7), (3, 5), (4, 7), (5, 5), (0, 3), (4, 1), (5, 7)]
SETTINGS = {"knn_k": 3, "n_layers": 2, "item_layers": 2, "dropout": 0.5, "mm_image_weight": 0.1,
            "modal_bpr_weight": 0.1}
BATCH = {"users": [0, 1, 2, 3, 4, 0], "pos": [1, 4, 6, 5, 7, 3], "neg": [5, 0, 3, 1, 2, 6]}


def _floats(t: torch.Tensor) -> list:
    return t.detach().double().tolist()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mmrec", type=Path, required=True, help="an MMRec checkout")
    ap.add_argument("--out", type=Path, required=True, help="the golden JSON to write")
    ap.add_argument("--commit", default=MMREC_COMMIT, help="the MMRec commit of --mmrec, recorded in the JSON")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(args.mmrec / "src"))
    from models.freedom import FREEDOM  # MMRec's class

    if not hasattr(sp.dok_matrix, "_update"):  # removed in newer SciPy; MMRec's get_norm_adj_mat calls it
        def _update(self, data):
            for (r, c), v in data.items():
                self[r, c] = v
        sp.dok_matrix._update = _update

    rng = np.random.default_rng(SEED)
    features = {m: rng.standard_normal((N_ITEMS, k)).astype(np.float32) for m, k in FEAT_DIMS.items()}
    users = np.array([u for u, _ in PAIRS])
    items = np.array([i for _, i in PAIRS])
    with tempfile.TemporaryDirectory() as tmp:
        # GeneralRecommender loads <data_path><dataset>/<vision|text>_feature_file; FREEDOM caches mm_adj there
        (Path(tmp) / "tiny").mkdir()
        np.save(Path(tmp) / "tiny" / "image_feat.npy", features["image"])
        np.save(Path(tmp) / "tiny" / "text_feat.npy", features["text"])
        config = {
            "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "NEG_PREFIX": "neg__",
            "train_batch_size": len(BATCH["users"]), "device": "cpu", "end2end": False,
            "is_multimodal_model": True, "data_path": tmp + "/", "dataset": "tiny",
            "vision_feature_file": "image_feat.npy", "text_feature_file": "text_feat.npy",
            "embedding_size": DIM, "feat_embed_dim": DIM, "knn_k": SETTINGS["knn_k"], "lambda_coeff": 0.9,
            "cf_model": "lightgcn", "n_mm_layers": SETTINGS["item_layers"], "n_ui_layers": SETTINGS["n_layers"],
            "reg_weight": SETTINGS["modal_bpr_weight"], "mm_image_weight": SETTINGS["mm_image_weight"],
            "dropout": SETTINGS["dropout"], "degree_ratio": 1.0,
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
        model = FREEDOM(config, _Loader())
    with torch.no_grad():
        g = torch.Generator().manual_seed(SEED + 1)
        for lin in (model.image_trs, model.text_trs):
            lin.bias.copy_(torch.randn(DIM, generator=g))

    torch.manual_seed(PRUNE_SEED)
    model.pre_epoch_processing()
    n_keep = int(len(PAIRS) * (1 - SETTINGS["dropout"]))
    masked = model.masked_adj
    kept_idx = masked._indices()[:, :n_keep]  # (user, item + n_users), in the order drawn
    kept = {"users": kept_idx[0].tolist(), "items": (kept_idx[1] - N_USERS).tolist(),
            "values": _floats(masked._values()[:n_keep])}

    # calculate_loss returns bpr(ID) + reg_weight * (bpr(text) + bpr(image)): record each call of bpr_loss
    calls: list[torch.Tensor] = []
    bpr = model.bpr_loss
    model.bpr_loss = lambda *a: calls.append(bpr(*a)) or calls[-1]
    interaction = [torch.tensor(BATCH[k]) for k in ("users", "pos", "neg")]
    weights = {n: _floats(p) for n, p in model.named_parameters()}
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
        "features": {m: f.astype(np.float64).tolist() for m, f in features.items()},
        "batch": BATCH,
        "mm_adj": _floats(model.mm_adj.to_dense()),
        "norm_adj": _floats(model.norm_adj.to_dense()),
        # MMRec's edge list (its order depends on SciPy: 1.17's astype sorts a COO matrix) and weights
        "edges": {"users": model.edge_indices[0].tolist(), "items": model.edge_indices[1].tolist()},
        "edge_values": _floats(model.edge_values),
        "kept": kept,
        "weights": weights,
        "terms": {"bpr": float(calls[0]), "bpr.text": float(calls[1]), "bpr.image": float(calls[2])},
        "total": float(total),
        "grads": {n: _floats(p.grad) for n, p in model.named_parameters()},
        "scores": _floats(scores),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
