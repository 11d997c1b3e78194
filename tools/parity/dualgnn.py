"""Golden values of MMRec's DualGNN for ``tests/test_parity_dualgnn.py``: user graph, loss, gradients, scores.

Runs MMRec's own code on a tiny fixed input and writes what ``mentor_ray.model.dualgnn.DualGNN`` must
reproduce: the user co-occurrence lists of MMRec's preprocessing (``preprocessing/dualgnn-gen-u-u-matrix.py``:
its ``gen_user_matrix``, then each user's nonzero counts by ``torch.topk``, at most 200, as its main block
does), the epoch's sampled user graph (``pre_epoch_processing``), every weight, each loss term, the gradient of
every parameter after ``backward`` of the total, and the full score matrix. Not part of the package (MMRec is
GPL-3.0: it is run, never copied). Run it where MMRec's dependencies and torch_geometric import::

    PYTHONPATH=/tmp/parity-pyg:/tmp/mmrec/src .venv/bin/python tools/parity/dualgnn.py \\
        --mmrec /tmp/mmrec --out tests/golden/dualgnn.json

The checked-in golden file was made against MMRec commit e775373b3ab1354a92165b0885ce4ab3dc4d7497
(github.com/enoche/MMRec), torch 2.2.1, torch_geometric 2.8, CPU.

The input: 6 users, 8 items, 20 training pairs (every item present; user 5 shares no item with anyone, user 4
shares items with two users, user 2 with four, with a tie at the third place), two modalities (``image`` ->
``v_feat``, 6 columns; ``text`` -> ``t_feat``, 5 columns), reg_weight 0.5, a batch of 6 triplets.

MMRec's class hard-codes its width (``dim_latent = 64``) and its neighbour count (``self.k = 40``); to keep the
golden file small and to exercise both full and padded neighbour lists, this script swaps in width-4 layers
(each modality's ``preference`` 6 x 4, ``MLP`` 6|5 -> 16, ``MLP_1`` 16 -> 4, drawn under a fixed seed) and sets
``k = 3`` before ``pre_epoch_processing``; the forward code run is MMRec's, unchanged. MMRec's
``result_embed`` is a parameter on a CPU (``nn.Parameter(...).to(device)`` returns the parameter itself) and
its forward then fails to assign a tensor to it; as on a GPU (where ``.to`` returns a plain tensor) it is made
a plain attribute. ``pre_epoch_processing`` leaves the user graph a list of lists, with which
``User_Graph_sample`` indexes a tensor: torch reads a list of fewer than 32 lists as a tuple of indices (and
fails), of 32 or more as one index tensor; here the list is made that tensor. Numpy's global generator
(MMRec's, for its unused item dropping and its padding) is seeded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import _mmrec
import numpy as np
import torch
import torch.nn as nn

SEED = 0
N_USERS, N_ITEMS, DIM, USER_K = 6, 8, 4, 3
REG_WEIGHT = 0.5  # large enough that the L2 term's gradient is of the size of BPR's
ITEMS_OF = {0: [0, 1, 2, 3, 4], 1: [0, 1, 2, 4], 2: [0, 2, 5, 6], 3: [1, 3, 4, 6], 4: [5, 6], 5: [7]}
TRAIN = {"users": [u for u, its in ITEMS_OF.items() for _ in its],
         "items": [i for its in ITEMS_OF.values() for i in its]}
BATCH = {"users": [0, 1, 2, 3, 4, 5], "pos": [1, 4, 6, 3, 5, 7], "neg": [5, 3, 1, 7, 0, 2]}
MAX_NEIGHBOURS = 200  # the preprocessing script's cap


def _user_graph_dict(mmrec: Path) -> dict[int, list]:
    """MMRec's ``user_graph_dict``: its ``gen_user_matrix``, then per user the nonzero counts by ``torch.topk``."""
    path = mmrec / "preprocessing" / "dualgnn-gen-u-u-matrix.py"
    spec = importlib.util.spec_from_file_location("dualgnn_gen_uu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines gen_user_matrix; its main block does not run
    counts = module.gen_user_matrix(np.column_stack([TRAIN["users"], TRAIN["items"]]), N_USERS)
    out = {}
    for u in range(N_USERS):
        top = torch.topk(counts[u], min(int((counts[u] != 0).sum()), MAX_NEIGHBOURS))
        out[u] = [top.indices.tolist(), top.values.tolist()]
    return out


def main(argv: list[str] | None = None) -> None:
    args = _mmrec.parse_args(__doc__, argv)
    from models.dualgnn import DualGNN  # MMRec's class

    features = _mmrec.features(SEED, N_ITEMS)  # _mmrec.FEAT_DIMS: image -> MMRec's v_feat, text -> t_feat
    user_graph_dict = _user_graph_dict(args.mmrec)
    # DualGNN loads its user graph from the dataset directory too
    with _mmrec.dataset_dir(features, {"user_graph_dict.npy": user_graph_dict}) as data:
        config = _mmrec.config(len(BATCH["users"]), data, user_graph_dict_file="user_graph_dict.npy",
                               embedding_size=DIM, aggr_mode="add", reg_weight=REG_WEIGHT)
        np.random.seed(SEED)
        torch.manual_seed(SEED)
        model = DualGNN(config, _mmrec.Loader(N_USERS, N_ITEMS, TRAIN["users"], TRAIN["items"]))
    del model._parameters["result_embed"]  # a plain attribute, as on a GPU (see the module docstring)
    model.result_embed = None
    torch.manual_seed(SEED + 1)
    for gcn in (model.v_gcn, model.t_gcn):  # width 4 instead of the hard-coded 64 (see the module docstring)
        gcn.dim_latent = DIM
        gcn.preference = nn.Parameter(nn.init.xavier_normal_(torch.empty(N_USERS, DIM)))
        gcn.MLP = nn.Linear(gcn.dim_feat, 4 * DIM)
        gcn.MLP_1 = nn.Linear(4 * DIM, DIM)
    model.dim_latent = DIM
    model.k = USER_K
    np.random.seed(SEED)
    model.pre_epoch_processing()
    sampled = [list(map(int, row)) for row in model.epoch_user_graph]
    model.epoch_user_graph = torch.tensor(sampled)  # as torch reads a list of 32+ lists (see the docstring)

    # by module path (forward also registers each GCN's preference as v_preference / t_preference); MMRec's
    # MLP_v, MLP_t and MLP_user take no part in the loss: their names only, and that they get no gradient
    params = {n: p for n, p in model.named_parameters(remove_duplicate=False) if "_preference" not in n}
    unused = [n for n in params if n.startswith(("MLP_v.", "MLP_t.", "MLP_user."))]
    params = {n: p for n, p in params.items() if n not in unused}
    weights = {n: _mmrec.floats(p) for n, p in params.items()}
    interaction = _mmrec.interaction(BATCH)
    # calculate_loss returns BPR + L2: BPR alone with reg_weight 0, the L2 term as the difference
    model.reg_weight = 0.0
    with torch.no_grad():
        bpr = float(model.calculate_loss([t.clone() for t in interaction]))  # its forward shifts item ids in place
    model.reg_weight = REG_WEIGHT
    total = model.calculate_loss([t.clone() for t in interaction])
    total.backward()
    with torch.no_grad():
        scores = model.full_sort_predict([torch.arange(N_USERS)])

    out = {
        "model": "DualGNN",
        "mmrec_commit": args.commit,
        "torch": torch.__version__,
        "seed": SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM, "n_layers": 2, "user_k": USER_K,
        "reg_weight": REG_WEIGHT,
        "train": TRAIN,
        "features": _mmrec.arrays(features),
        "user_graph_dict": {str(u): v for u, v in user_graph_dict.items()},
        "epoch_user_graph": sampled,
        "user_weight_matrix": _mmrec.floats(model.user_weight_matrix),
        "batch": BATCH,
        "weights": weights,
        "terms": {"bpr": bpr, "reg": float(total) - bpr},
        "total": float(total),
        "grads": {n: _mmrec.floats(p.grad) for n, p in params.items()},
        "unused_without_grad": [n for n in unused if dict(model.named_parameters())[n].grad is None],
        "scores": _mmrec.floats(scores),
    }
    _mmrec.write(args.out, out)


if __name__ == "__main__":
    main()
