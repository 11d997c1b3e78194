"""Golden values of MMRec's MMGCN for ``tests/test_parity_mmgcn.py``: one loss, its gradients and the scores.

Runs MMRec's own class (``src/models/mmgcn.py``, with torch_geometric's ``MessagePassing``) on a tiny fixed
input and writes what ``mentor_ray.model.mmgcn.MMGCN`` (plain torch sparse ops) must reproduce: the inputs,
every weight (parameters, and the frozen ID embeddings and preferences), each loss term, the gradient of
every parameter after ``backward`` of the total, and the full score matrix. Not part of the package (MMRec
is GPL-3.0: it is run, never copied). Run it where MMRec's dependencies (torch_geometric, scipy) import::

    PYTHONPATH=/tmp/parity-pyg:/tmp/mmrec/src .venv/bin/python tools/parity/mmgcn.py --mmrec /tmp/mmrec \
        --out tests/golden/mmgcn.json

The checked-in golden file was made against MMRec commit e775373b3ab1354a92165b0885ce4ab3dc4d7497
(github.com/enoche/MMRec), torch 2.2.1, torch_geometric 2.8, CPU.

The input: 6 users, 8 items (item 7 has no training pair: its aggregation is PyG's empty mean, 0),
20 training pairs, embedding 4, two modalities (``image`` -> MMRec's ``v_feat``, 6 columns; ``text`` ->
``t_feat``, 5 columns), a batch of 6 triplets with repeats. Weights are MMRec's initialisation under
``torch.manual_seed(SEED)`` (recorded, so the test can also check that the same seed gives mentor_ray the
same initial weights). One change, in memory only: the image GCN's hard-coded ``dim_latent=256`` becomes
``LATENT`` (its 256 x 256 first-layer weight would make the file megabytes; the computation is the same).
The loss terms: ``bpr`` is ``calculate_loss`` with ``reg_weight = 0``; ``reg`` is ``calculate_loss`` with
``REG_WEIGHT`` minus ``bpr``, in float64 (``calculate_loss`` returns their sum only).
"""

from __future__ import annotations

import _mmrec
import torch

SEED = 0
N_USERS, N_ITEMS, DIM, LATENT = 6, 8, 4, 7
REG_WEIGHT = 0.1
# every user has a training pair, every item but 7 (a cold item)
TRAIN = {"users": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 0, 2],
         "items": [0, 1, 2, 2, 3, 4, 4, 5, 6, 0, 3, 6, 1, 5, 6, 0, 2, 4, 5, 3]}
BATCH = {"users": [0, 1, 2, 3, 4, 0], "pos": [1, 3, 5, 6, 5, 2], "neg": [3, 7, 0, 1, 7, 6]}


def main(argv: list[str] | None = None) -> None:
    args = _mmrec.parse_args(__doc__, argv)
    import models.mmgcn as mmgcn  # MMRec's module (imports torch_geometric)
    import torch_geometric

    gcn_class = mmgcn.GCN

    def small_latent_gcn(*a, dim_latent=None, **k):
        # MMGCN looks GCN up in its module when it builds one, and GCN.__init__ calls super(GCN, self):
        # the class itself is back in place while it is built
        mmgcn.GCN = gcn_class
        try:
            return gcn_class(*a, dim_latent=LATENT if dim_latent else None, **k)
        finally:
            mmgcn.GCN = small_latent_gcn

    mmgcn.GCN = small_latent_gcn

    features = _mmrec.features(SEED, N_ITEMS)  # _mmrec.FEAT_DIMS: image -> MMRec's v_feat, text -> t_feat
    with _mmrec.dataset_dir(features) as data:
        config = _mmrec.config(len(BATCH["users"]), data, embedding_size=DIM, n_layers=2, reg_weight=REG_WEIGHT)
        torch.manual_seed(SEED)
        model = mmgcn.MMGCN(config, _mmrec.Loader(N_USERS, N_ITEMS, TRAIN["users"], TRAIN["items"]))

    frozen = {"id_embedding": model.id_embedding, "v_gcn.preference": model.v_gcn.preference,
              "t_gcn.preference": model.t_gcn.preference}  # plain tensors: not in MMRec's optimiser
    weights = {n: _mmrec.floats(p) for n, p in model.named_parameters()}
    interaction = _mmrec.interaction(BATCH)
    model.reg_weight = 0.0
    bpr = float(model.calculate_loss(interaction).detach().reshape(()))
    model.reg_weight = REG_WEIGHT
    total = model.calculate_loss(interaction)
    total.backward()
    with torch.no_grad():
        scores = model.full_sort_predict([torch.arange(N_USERS)])  # the representation of that forward

    out = {
        "model": "MMGCN",
        "mmrec_commit": args.commit,
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "seed": SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM, "latent_dim": LATENT,
        "reg_weight": REG_WEIGHT,
        "features": _mmrec.arrays(features),
        "train": TRAIN,
        "batch": BATCH,
        "weights": weights,
        "frozen": {k: _mmrec.floats(v) for k, v in frozen.items()},
        "terms": {"bpr": bpr, "reg": float(total.detach().reshape(())) - bpr},
        "total": float(total.detach().reshape(())),
        "grads": {n: _mmrec.floats(p.grad) for n, p in model.named_parameters()},
        "scores": _mmrec.floats(scores),
    }
    _mmrec.write(args.out, out)


if __name__ == "__main__":
    main()
