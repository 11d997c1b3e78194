"""Golden values of MMRec's VBPR for ``tests/test_parity_vbpr.py``: one loss, its gradients and the scores.

Runs MMRec's own class (``src/models/vbpr.py``) on a tiny fixed input and writes what
``mentor_ray.model.vbpr.VBPR`` must reproduce: the inputs, every weight, each loss term, the gradient
of every parameter after ``backward`` of the total, and the full score matrix. Not part of the package
(MMRec is GPL-3.0: it is run, never copied). Run it in an environment that has MMRec's dependencies::

    PYTHONPATH=/tmp/mmrec/src .venv/bin/python tools/parity/vbpr.py --mmrec /tmp/mmrec --out tests/golden/vbpr.json

The checked-in golden file was made against MMRec commit e775373b3ab1354a92165b0885ce4ab3dc4d7497
(github.com/enoche/MMRec), torch 2.2.1, CPU.

The input: 6 users, 8 items, embedding 4, two modalities (``image`` -> MMRec's ``v_feat``, 6 columns;
``text`` -> ``t_feat``, 5 columns), a batch of 6 triplets with repeated users and items. Weights are
MMRec's initialisation under ``torch.manual_seed(SEED)`` (recorded, so the test can also check that the
same seed gives mentor_ray the same initial weights), except the projection's bias, which MMRec sets to
0 and which is drawn here so that its part in the scores and gradients is exercised.
"""

from __future__ import annotations

import _mmrec
import torch

SEED = 0
N_USERS, N_ITEMS, DIM = 6, 8, 4
REG_WEIGHT = 0.5  # large enough that the reg term's gradient is of the size of BPR's
BATCH = {"users": [0, 1, 2, 3, 4, 0], "pos": [1, 3, 5, 7, 0, 1], "neg": [2, 4, 6, 0, 3, 5]}


def main(argv: list[str] | None = None) -> None:
    args = _mmrec.parse_args(__doc__, argv)
    from models.vbpr import VBPR  # MMRec's class

    features = _mmrec.features(SEED, N_ITEMS)  # _mmrec.FEAT_DIMS: image -> MMRec's v_feat, text -> t_feat
    with _mmrec.dataset_dir(features) as data:
        config = _mmrec.config(len(BATCH["users"]), data, embedding_size=DIM, reg_weight=REG_WEIGHT)
        torch.manual_seed(SEED)
        model = VBPR(config, _mmrec.Loader(N_USERS, N_ITEMS))
    with torch.no_grad():
        model.item_linear.bias.copy_(torch.randn(DIM, generator=torch.Generator().manual_seed(SEED + 1)))

    # calculate_loss returns mf_loss + reg_weight * reg_loss: record each from its loss module
    seen: dict[str, torch.Tensor] = {}
    model.loss.register_forward_hook(lambda mod, inp, out: seen.__setitem__("bpr", out))
    model.reg_loss.register_forward_hook(lambda mod, inp, out: seen.__setitem__("reg", REG_WEIGHT * out))
    interaction = _mmrec.interaction(BATCH)
    weights = {n: _mmrec.floats(p) for n, p in model.named_parameters()}
    total = model.calculate_loss(interaction)
    total.backward()
    with torch.no_grad():
        scores = model.full_sort_predict([torch.arange(N_USERS)])

    out = {
        "model": "VBPR",
        "mmrec_commit": args.commit,
        "torch": torch.__version__,
        "seed": SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM, "reg_weight": REG_WEIGHT,
        "features": _mmrec.arrays(features),
        "batch": BATCH,
        "weights": weights,
        "terms": {k: float(v.reshape(())) for k, v in seen.items()},
        "total": float(total.reshape(())),
        "grads": {n: _mmrec.floats(p.grad) for n, p in model.named_parameters()},
        "scores": _mmrec.floats(scores),
    }
    _mmrec.write(args.out, out)


if __name__ == "__main__":
    main()
