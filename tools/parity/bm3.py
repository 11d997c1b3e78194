"""Golden values of MMRec's BM3 for ``tests/test_parity_bm3.py``: one loss (each term), gradients, scores.

Runs MMRec's own class (``src/models/bm3.py``) on a tiny fixed input and writes what ``mentor_ray.model.bm3.BM3``
must reproduce: the inputs, MMRec's user-item graph (``norm_adj``, dense), every weight, the dropout masks
its ``calculate_loss`` drew (under ``torch.manual_seed(DROP_SEED)``: users, items, text, image; 0/1, in the
order drawn), each loss term (every ``cosine_similarity`` call's batch mean and the ``EmbLoss`` value,
checked to give ``calculate_loss``), the gradient of every parameter after its ``backward``, and the full
score matrix of ``full_sort_predict``. The masks are recorded without changing them: ``F.dropout`` is
wrapped to save the RNG state, draw the mask as CPU dropout draws it, restore the state, run torch's own
dropout and check its output against the mask. Not part of the package (MMRec is GPL-3.0: it is run, never
copied). Run it in an environment that has MMRec's dependencies::

    PYTHONPATH=/tmp/parity-pyg:/tmp/mmrec/src .venv/bin/python tools/parity/bm3.py \
        --mmrec /tmp/mmrec --out tests/golden/bm3.json

The checked-in golden file was made against MMRec commit e775373b3ab1354a92165b0885ce4ab3dc4d7497
(github.com/enoche/MMRec), torch 2.2.1, CPU.

The input: 6 users, 8 items, 20 training pairs (every user and item present), embedding 4, two modalities
(``image`` -> MMRec's ``v_feat``, 6 columns; ``text`` -> ``t_feat``, 5 columns), 2 user-item layers,
dropout 0.3, reg_weight 0.1, cl_weight 2.0 (MMRec's), and a batch of 6 (user, item) pairs (BM3 trains
without negatives: MMRec reads the first two rows of the interaction; a third row is given and unused).
Weights are MMRec's initialisation under ``torch.manual_seed(SEED)``.
"""

from __future__ import annotations

import _mmrec
import numpy as np
import torch
import torch.nn.functional as F

SEED, DROP_SEED = 0, 5
N_USERS, N_ITEMS, DIM = 6, 8, 4
PAIRS = [(0, 0), (0, 1), (0, 2), (1, 2), (1, 3), (1, 4), (2, 4), (2, 5), (2, 6), (3, 6), (3, 7), (3, 0),
         (4, 1), (4, 3), (4, 5), (5, 7), (5, 2), (5, 6), (0, 7), (3, 5)]
SETTINGS = {"n_layers": 2, "dropout": 0.3, "reg_weight": 0.1, "cl_weight": 2.0}
BATCH = {"users": [0, 2, 5, 3, 0, 4], "pos": [1, 5, 7, 0, 2, 3], "neg": [3, 0, 4, 2, 6, 7]}


class DropoutRecorder:
    """Records the masks of every ``F.dropout`` call (0/1, float32) without changing the draws."""

    def __init__(self):
        self.masks: list[torch.Tensor] = []
        self._real = F.dropout

    def dropout(self, x, p=0.5, training=True, inplace=False):
        state = torch.get_rng_state()
        mask = torch.empty_like(x).bernoulli_(1 - p)  # as CPU dropout draws it
        torch.set_rng_state(state)
        out = self._real(x, p, training, inplace)
        assert torch.equal(out, x * mask.div(1 - p)), "recorded dropout mask is not torch's"
        self.masks.append(mask)
        return out

    def __enter__(self):
        F.dropout = self.dropout  # MMRec's module calls F.dropout at run time
        return self

    def __exit__(self, *exc):
        F.dropout = self._real


def main(argv: list[str] | None = None) -> None:
    args = _mmrec.parse_args(__doc__, argv)
    import models.bm3 as mmrec_bm3  # MMRec's module

    features = _mmrec.features(SEED, N_ITEMS)  # _mmrec.FEAT_DIMS: image -> MMRec's v_feat, text -> t_feat
    users = np.array([u for u, _ in PAIRS])
    items = np.array([i for _, i in PAIRS])
    with _mmrec.dataset_dir(features) as data:
        config = _mmrec.config(len(BATCH["users"]), data, embedding_size=DIM, feat_embed_dim=DIM, **SETTINGS)
        torch.manual_seed(SEED)
        model = mmrec_bm3.BM3(config, _mmrec.Loader(N_USERS, N_ITEMS, users, items))
    weights = {n: _mmrec.floats(p) for n, p in model.named_parameters()}

    # calculate_loss = (ui + iu) + reg_weight * EmbLoss + cl_weight * (t + v + tv + vt): record every
    # cosine_similarity call (in MMRec's order: t, tv, v, vt, ui, iu) and the EmbLoss value
    cosines: list[torch.Tensor] = []
    real_cos = mmrec_bm3.cosine_similarity
    mmrec_bm3.cosine_similarity = lambda *a, **k: cosines.append(real_cos(*a, **k)) or cosines[-1]
    regs: list[torch.Tensor] = []
    model.reg_loss.register_forward_hook(lambda mod, inp, out: regs.append(out))
    torch.manual_seed(DROP_SEED)
    with DropoutRecorder() as rec:
        total = model.calculate_loss(_mmrec.interaction(BATCH))
    mmrec_bm3.cosine_similarity = real_cos
    total.backward()
    assert len(cosines) == 6 and len(regs) == 1 and len(rec.masks) == 4
    names = ("align.text", "mask.text", "align.image", "mask.image", "rec.ui", "rec.iu")
    pieces = {k: 1 - c.mean() for k, c in zip(names, cosines)}
    pieces["reg.norms"] = regs[0].reshape(())
    check = (pieces["rec.ui"] + pieces["rec.iu"] + SETTINGS["reg_weight"] * pieces["reg.norms"]
             + SETTINGS["cl_weight"] * sum(pieces[k] for k in names[:4]))
    assert torch.allclose(check, total, rtol=1e-6), (float(check), float(total))
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict([torch.arange(N_USERS)])

    out = {
        "model": "BM3",
        "mmrec_commit": args.commit,
        "torch": torch.__version__,
        "seed": SEED, "drop_seed": DROP_SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM, "settings": SETTINGS,
        "pairs": {"users": users.tolist(), "items": items.tolist()},
        "features": _mmrec.arrays(features),
        "batch": BATCH,
        "norm_adj": _mmrec.floats(model.norm_adj.to_dense()),
        "weights": weights,
        "masks": {k: m.int().tolist() for k, m in zip(("users", "items", "text", "image"), rec.masks)},
        "parts": {k: float(v) for k, v in pieces.items()},
        "total": float(total),
        "grads": {n: _mmrec.floats(p.grad) for n, p in model.named_parameters()},
        "scores": _mmrec.floats(scores),
    }
    _mmrec.write(args.out, out, compact=True)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), MMRec {args.commit}")


if __name__ == "__main__":
    main()
