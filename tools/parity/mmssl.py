"""Golden values of the authors' MMSSL for ``tests/test_parity_mmssl.py``: whole training batches, then scores.

Runs the authors' own code (github.com/HKUDS/MMSSL: ``MMSSL/Models.py``'s ``MMSSL`` and ``Discriminator`` and
the training loop ``Trainer.train`` of ``MMSSL/main.py``, unmodified) on a tiny fixed input, on CPU, and
records what ``mentor_ray.model.mmssl.MMSSL`` must reproduce, batch after batch: every random draw in the
order drawn (dropout masks, the Gumbel uniforms, the gradient penalty's interpolation weights), the critic
step's terms (the critic's mean on the fake and the real rows, the gradient penalty) and the critic's
gradients, the recommender's terms (BPR, the embedding and feature L2 terms, each modality's contrastive
loss, the critic's mean on the generator's rows) and the gradient of every parameter, and the generated
graphs after each batch (the count matrices, the pairs gathered since the last rebuild, and the normalised
graphs). After the last batch the authors' ``test`` runs: its embeddings give the score matrix, and the
final weights are recorded (the test replays the authors' optimisers: Adam with betas (0.5, 0.9) for the
critic, AdamW for the rest).

Nothing is transcribed: the script imports the authors' modules with their imports stubbed where they reach
outside the computation (``visdom``, ``dgl``, ``torch.utils.tensorboard``; ``utility.batch_test``, which
loads a dataset at import, replaced by a fake ``data_generator`` that returns fixed batches and a
``test_torch`` that records the embeddings), ``.cuda()`` made the identity, their ``argparse`` read from a
command line that the script sets, and their data files written to a temporary directory. Draws are recorded
by wrapping ``F.dropout`` (the mask drawn as CPU dropout draws it, checked against torch's own output),
``Tensor.uniform_`` and ``torch.rand``; the terms by wrapping the trainer's loss methods and forward hooks on
the critic; the gradients by wrapping the optimisers' ``step``. Not part of the package (it is a test tool:
the package never imports ``tools/``). Run it with the repository's environment::

    .venv/bin/python tools/parity/mmssl.py --ref /tmp/ref/MMSSL/MMSSL --out tests/golden/mmssl.json

The checked-in golden file was made against HKUDS/MMSSL commit f8d8955af0bf1b0286c2e6aa0d4835e9260bf634,
torch 2.2.1, CPU (the versions are recorded in the file).

Two runs, each from weights drawn under ``torch.manual_seed(SEED)`` and draws under ``DRAW_SEED``: ``t1``,
the authors' defaults (T = 1) except ``m_topk_rate`` 0.2 (k = 2 of 12 items, so that pairs are gathered;
their 1e-4 gives k = 0 here), one epoch of 3 batches; ``t2``, T = 2, two epochs of 4 batches (pairs gathered,
rebuilt every other batch, and carried over the epoch boundary). The input: 6 users, 12 items, 30 training
pairs (every user and item present), embedding 4, two modalities (image 6 columns, text 5), batches of 4
distinct users with one positive and one negative each (as the authors' sampler draws them).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
import _mmrec  # noqa: E402  (features, JSON helpers)

REF_COMMIT = "f8d8955af0bf1b0286c2e6aa0d4835e9260bf634"
SEED, DRAW_SEED = 0, 7
N_USERS, N_ITEMS, DIM, B = 6, 12, 4, 4
PAIRS = [(0, 0), (0, 1), (0, 2), (0, 9), (0, 11), (1, 2), (1, 3), (1, 4), (1, 10), (2, 4), (2, 5), (2, 6),
         (2, 8), (3, 6), (3, 7), (3, 0), (3, 11), (4, 1), (4, 3), (4, 5), (4, 9), (5, 7), (5, 2), (5, 6),
         (5, 10), (0, 7), (3, 5), (1, 8), (4, 11), (2, 0)]
# (users, positives, negatives): distinct users, positives from their training items, negatives not
BATCHES = [
    ([0, 2, 5, 3], [1, 5, 7, 0], [3, 1, 4, 2]),
    ([4, 1, 0, 2], [3, 10, 9, 8], [7, 0, 5, 11]),
    ([3, 5, 4, 1], [11, 2, 1, 4], [9, 11, 0, 7]),
    ([2, 0, 1, 5], [6, 11, 3, 10], [3, 4, 6, 1]),
    ([1, 3, 2, 4], [8, 7, 4, 9], [11, 10, 1, 2]),
    ([5, 4, 3, 0], [6, 5, 6, 2], [8, 6, 9, 10]),
    ([0, 1, 4, 3], [7, 2, 11, 5], [8, 5, 10, 1]),
    ([2, 5, 0, 1], [0, 7, 9, 3], [10, 9, 6, 11]),
]
RUNS = {"t1": {"argv": ["--T", "1", "--m_topk_rate", "0.2"], "epochs": 1, "per_epoch": 3},
        "t2": {"argv": ["--T", "2", "--m_topk_rate", "0.2"], "epochs": 2, "per_epoch": 4}}
# the keys of the authors' argparse the computation reads, recorded with each run
# the authors' parameters that never reach a loss (no gradient in any batch: checked): not recorded
UNUSED = ("common_trans.weight", "common_trans.bias", "image_embedding.weight", "text_embedding.weight",
          "batch_norm.weight", "batch_norm.bias", "weight_dict.w_k", "weight_dict.w_v",
          "weight_dict.w_self_attention_item", "weight_dict.w_self_attention_user")
KEYS = ("embed_size", "weight_size", "drop_rate", "regs", "lr", "batch_size", "tau", "cl_rate", "G_rate",
        "feat_reg_decay", "model_cat_rate", "id_cat_rate", "head_num", "D_lr", "G_drop1", "G_drop2", "gp_rate",
        "log_log_scale", "real_data_tau", "ui_pre_scale", "T", "m_topk_rate", "layers", "sparse")


def f9(x, digits: int = 9) -> object:
    """Numbers (a tensor or array) as nested lists of floats with 9 significant digits (float32 exact; 8 for
    values only compared, within 1e-8 relative, to keep the file small)."""
    a = np.asarray(x.detach().cpu() if torch.is_tensor(x) else x, dtype=np.float64)
    fmt = f"{{:.{digits}g}}"
    return (np.vectorize(lambda v: float(fmt.format(v)), otypes=[float])(a).tolist() if a.ndim
            else float(fmt.format(float(a))))


def f8(x) -> object:
    return f9(x, 8)


class Stop(Exception):
    """Raised by the fake ``test_torch`` at the end of the last epoch."""


class FakeData:
    """The authors' ``data_generator`` as ``Trainer.train`` reads it: fixed batches, dummy splits."""

    def __init__(self, batches, per_epoch: int, on_sample):
        self.batches, self.n = iter(batches), per_epoch
        self.n_train = (per_epoch - 1) * B  # train() runs n_train // batch_size + 1 batches per epoch
        self.test_set = self.val_set = {0: [1]}
        self.on_sample = on_sample

    def sample(self):
        self.on_sample()
        return [list(x) for x in next(self.batches)]


def load_reference(ref: Path):
    """The authors' ``main`` and ``Models`` modules, importable on CPU without their outside world."""
    sys.path.insert(0, str(ref))
    for name in ("visdom", "dgl"):
        sys.modules[name] = types.ModuleType(name)
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = object
    sys.modules["torch.utils.tensorboard"] = tb
    bt = types.ModuleType("utility.batch_test")  # its import loads a dataset: replaced
    bt.data_generator = bt.test_torch = None
    sys.modules["utility.batch_test"] = bt
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    sys.argv = ["main.py", "--dataset", "tiny", "--debug"]
    import main  # noqa: F401  (the authors' MMSSL/main.py)
    import Models  # noqa: F401
    return sys.modules["main"], sys.modules["Models"]


class Recorder:
    """Every draw of the training loop, in order: ``F.dropout`` masks (0/1; checked against torch's output),
    ``Tensor.uniform_`` and ``torch.rand`` results."""

    def __init__(self):
        self.draws: list[tuple[str, torch.Tensor]] = []
        self._dropout, self._uniform, self._rand = F.dropout, torch.Tensor.uniform_, torch.rand

    def dropout(self, x, p=0.5, training=True, inplace=False):
        if training and p > 0:
            state = torch.get_rng_state()
            mask = torch.empty_like(x).bernoulli_(1 - p)  # as CPU dropout draws it
            torch.set_rng_state(state)
        out = self._dropout(x, p, training, inplace)
        if training and p > 0:
            assert torch.equal(out, x * mask.div(1 - p)), "recorded dropout mask is not torch's"
            self.draws.append(("drop", mask))
        return out

    def uniform(self, t, *a, **k):
        out = self._uniform(t, *a, **k)
        self.draws.append(("uniform", out.clone()))
        return out

    def rand(self, *a, **k):
        out = self._rand(*a, **k)
        self.draws.append(("rand", out.clone()))
        return out

    def __enter__(self):
        F.dropout, torch.rand = self.dropout, self.rand
        torch.Tensor.uniform_ = lambda t, *a, **k: self.uniform(t, *a, **k)  # a method: a plain function
        return self

    def __exit__(self, *exc):
        F.dropout, torch.Tensor.uniform_, torch.rand = self._dropout, self._uniform, self._rand


def coo(t) -> dict:
    """A sparse graph (torch sparse or SciPy) as its nonzero entries, row-major."""
    if torch.is_tensor(t):
        t = t.coalesce()
        r, c = t.indices().tolist()
        v = t.values()
    else:
        m = sp.coo_matrix(t)
        m.sum_duplicates()
        r, c, v = m.row.tolist(), m.col.tolist(), m.data
    order = sorted(range(len(r)), key=lambda k: (r[k], c[k]))
    vals = f9(np.asarray(v, dtype=np.float64))
    return {"rows": [r[k] for k in order], "cols": [c[k] for k in order], "values": [vals[k] for k in order]}


def run(main, models, data_dir: str, spec: dict) -> dict:
    sys.argv = ["main.py", "--dataset", "tiny", "--debug", "--data_path", data_dir + "/", "--batch_size", str(B),
                "--embed_size", str(DIM), "--epoch", str(spec["epochs"]), *spec["argv"]]
    fresh = main.parse_args()
    for mod in (main, models):  # both modules parsed their own args at import: give them this run's
        vars(mod.args).update(vars(fresh))
    args = main.args
    batches_out: list[dict] = []
    state: dict = {}

    def graphs(trainer) -> dict:
        tmp = {m: getattr(trainer, f"{m}_ui_graph_tmp") for m in ("image", "text")}
        return {
            "counts": {m: coo(sp.csr_matrix(t.numpy()) if torch.is_tensor(t) else t) for m, t in tmp.items()},
            "pending": {m: {"users": [int(x) for x in getattr(trainer, f"{m}_ui_index")["x"]],
                            "items": [int(y) for y in getattr(trainer, f"{m}_ui_index")["y"]]}
                        for m in ("image", "text")},
            "normalised": {f"{m}_{s}": coo(getattr(trainer, f"{m}_{s}_graph")) for m in ("image", "text")
                           for s in ("ui", "iu")},
        }

    def on_sample():  # the start of a batch: close the previous one with the graphs it left
        if batches_out:
            batches_out[-1]["graphs_after"] = graphs(state["trainer"])
        batches_out.append({"critic": [], "first_draw": len(rec.draws)})

    per_epoch = spec["per_epoch"]
    epochs = spec["epochs"]
    calls = {"test": 0}

    def test_torch(ua, ia, users, is_val):
        calls["test"] += 1
        if calls["test"] < epochs:
            z = np.zeros(4)
            return {"recall": z, "precision": z, "ndcg": z, "hit_ratio": z}
        state["scores"] = ua @ ia.T
        raise Stop

    main.data_generator = FakeData(BATCHES[: per_epoch * epochs], per_epoch, on_sample)
    main.test_torch = test_torch
    torch.manual_seed(SEED)
    trainer = main.Trainer({})
    state["trainer"] = trainer
    weights0 = {**{n: f9(p) for n, p in trainer.model.named_parameters() if n not in UNUSED},
                **{f"D.{n}": f9(p) for n, p in trainer.D.named_parameters()}}
    graphs0 = graphs(trainer)

    def wrap(name, key):
        real = getattr(trainer, name)

        def inner(*a, **k):
            out = real(*a, **k)
            batches_out[-1].setdefault(key, []).append(out)
            return out
        setattr(trainer, name, inner)

    for name in ("gradient_penalty", "bpr_loss", "feat_reg_loss_calculation", "batched_contrastive_loss"):
        wrap(name, name)
    trainer.D.register_forward_hook(lambda mod, inp, out: batches_out[-1]["critic"].append(out.detach().clone()))

    def wrap_step(opt, key, params):
        real = opt.step

        def step(*a, **k):
            batches_out[-1][key] = {n: f8(p.grad) for n, p in params if p.grad is not None}
            return real(*a, **k)
        opt.step = step

    wrap_step(trainer.optim_D, "grads_D", [(f"D.{n}", p) for n, p in trainer.D.named_parameters()])
    wrap_step(trainer.optimizer_D, "grads", list(trainer.model.named_parameters()))
    torch.manual_seed(DRAW_SEED)
    with Recorder() as rec:
        try:
            trainer.train()
        except Stop:
            pass
    batches_out[-1]["graphs_after"] = graphs(trainer)
    out_batches = []
    for b in batches_out:
        assert not set(UNUSED) & set(b["grads"]), "a parameter taken as unused got a gradient"
    ends = [b["first_draw"] for b in batches_out[1:]] + [len(rec.draws)]
    for n_b, (b, end) in enumerate(zip(batches_out, ends)):
        mine = rec.draws[b["first_draw"]:end]  # the draws from this batch's sample() to the next's
        critic = b["critic"]  # D(fake), D(real), D(interpolates), D(generator's fake)
        assert len(critic) == 4
        gp = b["gradient_penalty"][0]
        mf, emb, _ = b["bpr_loss"][0]
        feat = b["feat_reg_loss_calculation"][0]
        cl1, cl2 = b["batched_contrastive_loss"]
        out_batches.append({
            "users": BATCHES[n_b][0], "pos": BATCHES[n_b][1], "neg": BATCHES[n_b][2],
            # masks as strings of 0 and 1 (row-major), uniforms as floats
            "draws": [{"kind": kd, "shape": list(t.shape),
                       "values": "".join(map(str, t.int().reshape(-1).tolist())) if kd == "drop"
                       else f9(t.reshape(-1))} for kd, t in mine],
            "critic_terms": {"fake": f9(critic[0].mean()), "real": f9(critic[1].mean()), "gp": f9(gp)},
            "disc": f9(critic[0].mean() - critic[1].mean() + args.gp_rate * gp),
            "terms": {"bpr": f9(mf), "reg": f9(emb), "feat_reg": f9(feat), "cl.image": f9(cl1),
                      "cl.text": f9(cl2), "critic": f9(critic[3].mean())},
            "grads_D": b["grads_D"], "grads": b["grads"], "graphs_after": b["graphs_after"],
        })
    weights1 = {**{n: f8(p) for n, p in trainer.model.named_parameters() if n not in UNUSED},
                **{f"D.{n}": f8(p) for n, p in trainer.D.named_parameters()}}
    last = graphs0["normalised"]
    for b in out_batches:  # the normalised graphs only where they changed
        now = b["graphs_after"]["normalised"]
        b["graphs_after"]["normalised"] = None if now == last else now
        last = now
    return {"args": {k: getattr(args, k) for k in KEYS}, "epochs": epochs, "per_epoch": per_epoch,
            "weights": weights0, "graphs_before": graphs0, "batches": out_batches, "weights_after": weights1,
            "scores": f9(state["scores"])}


def main_(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, default=Path("/tmp/ref/MMSSL/MMSSL"), help="the authors' MMSSL/ folder")
    ap.add_argument("--out", type=Path, required=True, help="the golden JSON to write")
    ap.add_argument("--commit", default=REF_COMMIT, help="the HKUDS/MMSSL commit of --ref, recorded in the JSON")
    a = ap.parse_args(argv)
    saved_argv = sys.argv
    main, models = load_reference(a.ref)
    sys.argv = saved_argv
    features = _mmrec.features(SEED, N_ITEMS)  # image 6 columns, text 5
    users = np.array([u for u, _ in PAIRS])
    items = np.array([i for _, i in PAIRS])
    assert set(users) == set(range(N_USERS)) and set(items) == set(range(N_ITEMS)) and len(set(PAIRS)) == len(PAIRS)
    train_mat = sp.csr_matrix((np.ones(len(PAIRS), dtype=np.float32), (users, items)), shape=(N_USERS, N_ITEMS))
    for us, ps, ns in BATCHES:
        assert len(set(us)) == len(us) == B
        assert all(train_mat[u, p] == 1 and train_mat[u, n] == 0 for u, p, n in zip(us, ps, ns))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tiny").mkdir()
        np.save(Path(tmp) / "tiny" / "image_feat.npy", features["image"])
        np.save(Path(tmp) / "tiny" / "text_feat.npy", features["text"])
        with open(Path(tmp) / "tiny" / "train_mat", "wb") as f:
            pickle.dump(train_mat, f)
        runs = {name: run(main, models, tmp, spec) for name, spec in RUNS.items()}
    # the same seed: the same initial weights and graphs in both runs, recorded once
    first = runs["t1"]
    for r in runs.values():
        assert r["weights"] == first["weights"] and r["graphs_before"] == first["graphs_before"]
    weights, graphs_before = first["weights"], first["graphs_before"]
    for r in runs.values():
        del r["weights"], r["graphs_before"]
    out = {
        "model": "MMSSL",
        "reference": "github.com/HKUDS/MMSSL", "commit": a.commit, "torch": torch.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__,
        "seed": SEED, "draw_seed": DRAW_SEED,
        "n_users": N_USERS, "n_items": N_ITEMS, "embedding_dim": DIM,
        "pairs": {"users": users.tolist(), "items": items.tolist()},
        "features": {m: f9(x) for m, x in features.items()},
        "weights": weights, "graphs_before": graphs_before,
        "runs": runs,
    }
    _mmrec.write(a.out, out, compact=True)
    print(f"wrote {a.out} ({a.out.stat().st_size} bytes), HKUDS/MMSSL {a.commit}")


if __name__ == "__main__":
    main_()
