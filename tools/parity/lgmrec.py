"""Reference numbers of MMRec's LGMRec on a tiny fixed input, for ``tests/test_parity_lgmrec.py``.

Runs MMRec's own class (``src/models/lgmrec.py``, GPL-3.0: run here, never copied) in a throwaway
environment that has MMRec's imports::

    PYTHONPATH=/tmp/parity-pyg:/tmp/mmrec/src .venv/bin/python tools/parity/lgmrec.py \
        --mmrec /tmp/mmrec --out tests/golden/lgmrec.json

``--commit`` is the MMRec commit recorded in the JSON (default: the one below). Last run against MMRec commit
e775373b3ab1354a92165b0885ce4ab3dc4d7497 (torch 2.2.1, CPU, scipy 1.17: ``dok_matrix._update``, which
MMRec calls and scipy 1.12 removed, is shimmed as item assignment by ``_mmrec``).

Input: 6 users, 8 items, 20 training pairs (every user and item present), embedding 4, two modalities
(``v`` 6-d, ``t`` 5-d), 3 hyperedges, 2 hypergraph layers, 2 + 2 graph layers, keep_rate 0.5, and loss
weights large enough (cl 0.5, reg 0.1) that every term moves the gradients. MMRec's randomness is pinned by
recording it: every ``F.gumbel_softmax`` call's Gumbel noise and every dropout mask (the RNG state is saved,
the noise drawn as torch draws it, the state restored, then torch's own function runs and its output is
checked against the recorded noise). The JSON holds the inputs, every weight, the recorded noise of the
training forward (Gumbel: iv, uv, it, ut; masks: iv, uv, it, ut) and of the scoring forward (Gumbel only:
eval mode), each loss term (MMRec's own ``bpr_loss``, ``ssl_triple_loss``, ``reg_loss`` on one forward, checked
to sum to ``calculate_loss`` under the same RNG state), the gradient of every parameter of
``calculate_loss().backward()``, and ``full_sort_predict`` for all users.
"""

from __future__ import annotations

import _mmrec
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

USERS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 0, 3]
ITEMS = [0, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 0, 1, 3, 5, 7, 2, 6, 7, 5]
N_USERS, N_ITEMS = 6, 8
BATCH = {"users": [0, 2, 5, 3, 0], "pos": [1, 5, 7, 0, 2], "neg": [3, 0, 4, 2, 6]}
SETTINGS = {"embedding_size": 4, "feat_embed_dim": 4, "cf_model": "lightgcn", "n_mm_layers": 2, "n_ui_layers": 2,
            "n_hyper_layer": 2, "hyper_num": 3, "keep_rate": 0.5, "alpha": 0.3, "cl_weight": 0.5,
            "reg_weight": 0.1}
SEED_INIT, SEED_TRAIN, SEED_PREDICT = 3, 11, 12


class Recorder:
    """Records the randomness of MMRec's forward without changing it."""

    def __init__(self):
        self.gumbel: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self._real = F.gumbel_softmax

    def gumbel_softmax(self, logits, tau=1, hard=False, eps=1e-10, dim=-1):
        state = torch.get_rng_state()
        g = -torch.empty_like(logits, memory_format=torch.legacy_contiguous_format).exponential_().log()
        torch.set_rng_state(state)
        out = self._real(logits, tau=tau, hard=hard, dim=dim)
        assert torch.equal(out, ((logits + g) / tau).softmax(dim)), "recorded Gumbel noise is not torch's"
        self.gumbel.append(g.detach().clone())
        return out

    def __enter__(self):
        F.gumbel_softmax = self.gumbel_softmax  # MMRec's module calls F.gumbel_softmax at run time
        return self

    def __exit__(self, *exc):
        F.gumbel_softmax = self._real


class RecordingDropout(nn.Module):
    def __init__(self, p: float, recorder: Recorder):
        super().__init__()
        self.p, self.recorder = p, recorder

    def forward(self, x):
        if not self.training:
            return F.dropout(x, self.p, False)
        state = torch.get_rng_state()
        mask = torch.empty_like(x).bernoulli_(1 - self.p)
        torch.set_rng_state(state)
        out = F.dropout(x, self.p, True)
        assert torch.equal(out, x * mask.div(1 - self.p)), "recorded dropout mask is not torch's"
        self.recorder.masks.append(mask.detach().clone())
        return out


def main(argv: list[str] | None = None) -> None:
    args = _mmrec.parse_args(__doc__, argv)
    from models.lgmrec import LGMRec  # MMRec's class

    gen = torch.Generator().manual_seed(0)
    feats = {"v": torch.rand(N_ITEMS, 6, generator=gen), "t": torch.randn(N_ITEMS, 5, generator=gen)}
    with _mmrec.dataset_dir({"image": feats["v"].numpy(), "text": feats["t"].numpy()}) as data:
        config = _mmrec.config(len(BATCH["users"]), data, **SETTINGS)
        torch.manual_seed(SEED_INIT)
        model = LGMRec(config, _mmrec.Loader(N_USERS, N_ITEMS, USERS, ITEMS, dtype=np.float64))
    rec = Recorder()
    model.drop = RecordingDropout(1 - SETTINGS["keep_rate"], rec)
    model.train()
    batch = _mmrec.interaction(BATCH)

    # the terms, by MMRec's own methods on one forward (calculate_loss sums them)
    torch.manual_seed(SEED_TRAIN)
    with torch.no_grad(), rec:
        ua, ia, (uv, iv, ut, it) = model.forward()
    u, p, n = ua[batch[0]], ia[batch[1]], ia[batch[2]]
    terms = {"bpr": model.bpr_loss(u, p, n),
             "cl": SETTINGS["cl_weight"] * (model.ssl_triple_loss(uv[batch[0]], ut[batch[0]], ut)
                                            + model.ssl_triple_loss(iv[batch[1]], it[batch[1]], it)),
             "reg": SETTINGS["reg_weight"] * model.reg_loss(u, p, n)}
    train_gumbel, train_masks = rec.gumbel, rec.masks
    # the loss and its gradients, replaying the same draws (same RNG state)
    rec.gumbel, rec.masks = [], []
    torch.manual_seed(SEED_TRAIN)
    with rec:
        loss = model.calculate_loss(batch)
    loss.backward()
    assert all(torch.equal(a, b) for a, b in zip(rec.gumbel + rec.masks, train_gumbel + train_masks))
    total = sum(terms.values())
    assert torch.allclose(total, loss, rtol=1e-6), (float(total), float(loss))

    model.eval()
    rec.gumbel, rec.masks = [], []
    torch.manual_seed(SEED_PREDICT)
    with torch.no_grad(), rec:
        scores = model.full_sort_predict([torch.arange(N_USERS)])
    assert not rec.masks and len(rec.gumbel) == 4

    trainable = [(k, v) for k, v in model.named_parameters() if v.requires_grad]  # not the frozen features
    out = {
        "mmrec_commit": args.commit, "torch": torch.__version__, "settings": SETTINGS,
        "seeds": {"init": SEED_INIT, "train": SEED_TRAIN, "predict": SEED_PREDICT},
        "n_users": N_USERS, "n_items": N_ITEMS, "train_users": USERS, "train_items": ITEMS, "batch": BATCH,
        "features": {k: _mmrec.floats(v) for k, v in feats.items()},
        "weights": {k: _mmrec.floats(v) for k, v in trainable},
        "noise_train": {"gumbel": [_mmrec.floats(g) for g in train_gumbel],
                        "masks": [_mmrec.floats(m) for m in train_masks]},
        "noise_predict": {"gumbel": [_mmrec.floats(g) for g in rec.gumbel]},
        "terms": {k: float(v) for k, v in terms.items()}, "loss": float(loss),
        "grads": {k: _mmrec.floats(v.grad) for k, v in trainable},
        "scores": _mmrec.floats(scores),
    }
    _mmrec.write(args.out, out, compact=True)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), MMRec {args.commit}")


if __name__ == "__main__":
    main()
