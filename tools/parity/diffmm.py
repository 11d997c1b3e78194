"""Golden values of the authors' DiffMM for ``tests/test_parity_diffmm.py``: a denoiser epoch, a generation,
the generated graphs, every loss term, every gradient and the scores.

The reference is the authors' code (github.com/HKUDS/DiffMM; MMRec has no DiffMM): ``Model.py``'s classes
AND ``Main.py``'s ``Coach.trainEpoch``, run as they are, on CPU. ``Params.py`` parses the command line at
import, so a ``Params`` module holding the run's ``args`` stands in for it; ``setproctitle`` (imported by
``Main.py``, unused) is stubbed; ``.cuda()`` of tensors and modules is the identity. The data handler is a
fake with the authors' own pieces: ``DataHandler.makeTorchAdj`` for the user-item graph, ``DiffusionData``
in a shuffling ``DataLoader`` for the denoisers' rows; the BPR loader yields one fixed batch of triplets and
samples nothing. Not part of the package (this is a test tool; nothing of the authors' is copied).

One call of ``trainEpoch`` is one epoch: two diffusion batches (5 users, then 1) with one Adam step of each
modality's denoiser per batch, the re-built per-modality user-item graphs (reverse diffusion, top-k, edge
dropout), then one BPR step. Every random draw is recorded in the order drawn, without changing it (each
wrapper calls the real function, or draws what torch would from a saved state and checks it): the two
users' shuffles, the timesteps (``torch.randint``), the normal noise (``torch.randn_like``), the denoisers'
input dropout masks (``F.dropout``) and the edge-dropout uniforms (``torch.rand``). Also recorded: every
initial weight, each denoiser step's two losses and gradients, every ``p_sample`` output, the edge order and
the dense generated graphs, each ``contrastLoss`` call, the BPR, regularisation and contrastive terms, the
main model's gradients, and the score matrix (``forward_MM`` with the epoch's graphs, before the step).

Two runs: ``tiktok`` (three modalities, image/text/audio; the published TikTok flags ``--reg 1e-4 --ssl_reg
1e-2 --trans 1 --e_loss 0.1 --cl_method 1``, keepRate 0.5) and ``baby`` (two modalities; the published Baby
flags ``--reg 1e-5 --ssl_reg 1e-1 --keepRate 1 --e_loss 0.01``, trans 0, cl_method 0, with sampling noise,
2 sampling steps, rebuild_k 2, 2 layers, normalised denoiser input, ris_lambda 0.1 and an odd timestep
width, so that every branch runs). Tiny sizes: 6 users, 8 items, 20 training pairs, embedding 4, denoiser
hidden width 8, batch 5 (the BPR batch holds 4 triplets: a short last batch, over which the authors divide
by 5). Run it with the project's environment (torch 2.2.1, numpy, scipy)::

    .venv/bin/python tools/parity/diffmm.py --ref /tmp/ref/DiffMM --out tests/golden/diffmm.json

The checked-in golden file was made against HKUDS/DiffMM commit fae20e642aeeaad4284be6f7fb3432ebb551da8e,
torch 2.2.1, scipy 1.17.1, CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REF_COMMIT = "fae20e642aeeaad4284be6f7fb3432ebb551da8e"
SEED, DRAW_SEED = 0, 7
N_USERS, N_ITEMS, DIM = 6, 8, 4
PAIRS = [(0, 0), (0, 1), (0, 2), (1, 2), (1, 3), (1, 4), (2, 4), (2, 5), (2, 6), (3, 6), (3, 7), (3, 0),
         (4, 1), (4, 3), (4, 5), (5, 7), (5, 2), (5, 6), (0, 7), (3, 5)]
FEAT_DIMS = {"image": 6, "text": 5, "audio": 4}
BATCH = {"users": [0, 2, 5, 3], "pos": [1, 5, 7, 0], "neg": [3, 0, 4, 2]}
COMMON = {"lr": 1e-3, "batch": 5, "latdim": DIM, "temp": 0.5, "ris_adj_lambda": 0.2, "steps": 5,
          "noise_scale": 0.1, "noise_min": 0.0001, "noise_max": 0.02, "dims": "[8]", "seed": 421, "gpu": "0",
          "epoch": 1, "tstEpoch": 1, "tstBat": 256, "topk": 20}
RUNS = {
    "tiktok": {"data": "tiktok", "reg": 1e-4, "ssl_reg": 1e-2, "trans": 1, "e_loss": 0.1, "cl_method": 1,
               "keepRate": 0.5, "ris_lambda": 0.5, "gnn_layer": 1, "rebuild_k": 1, "sampling_steps": 0,
               "sampling_noise": False, "norm": False, "d_emb_size": 4},
    "baby": {"data": "baby", "reg": 1e-5, "ssl_reg": 1e-1, "trans": 0, "e_loss": 0.01, "cl_method": 0,
             "keepRate": 1.0, "ris_lambda": 0.1, "gnn_layer": 2, "rebuild_k": 2, "sampling_steps": 2,
             "sampling_noise": True, "norm": True, "d_emb_size": 5},
}


def settings(a: dict) -> dict:
    """The authors' flags as mentor_ray's config keys (and the run's lr and batch_size)."""
    return {"embedding_dim": a["latdim"], "n_layers": a["gnn_layer"], "reg_weight": a["reg"],
            "dropout": 1.0 - a["keepRate"], "tau": a["temp"], "diffmm_ssl_reg": a["ssl_reg"],
            "diffmm_cl_method": {1: "main", 0: "modal"}[a["cl_method"]],
            "diffmm_trans": {1: "linear", 0: "matrix"}[a["trans"]], "diffmm_e_loss": a["e_loss"],
            "diffmm_ris_lambda": a["ris_lambda"], "diffmm_ris_adj_lambda": a["ris_adj_lambda"],
            "diffmm_rebuild_k": a["rebuild_k"], "diffmm_steps": a["steps"],
            "diffmm_noise_scale": a["noise_scale"], "diffmm_noise_min": a["noise_min"],
            "diffmm_noise_max": a["noise_max"], "diffmm_sampling_steps": a["sampling_steps"],
            "diffmm_sampling_noise": a["sampling_noise"], "diffmm_hidden": json.loads(a["dims"])[0],
            "diffmm_time_dim": a["d_emb_size"], "diffmm_norm": a["norm"], "lr": a["lr"], "batch_size": a["batch"]}


def f32(t) -> list | float:
    """A tensor as nested lists of floats, each the shortest decimal that reads back as the same float32."""
    a = np.asarray(t.detach().cpu().float() if isinstance(t, torch.Tensor) else t, dtype=np.float32)
    flat = np.array([float(str(v)) for v in a.ravel()], dtype=object)
    return flat.reshape(a.shape).tolist() if a.shape else float(flat[0])


class Recorder:
    """Every random draw of the authors' epoch, recorded without changing it."""

    def __init__(self):
        self.draws: dict[str, list] = {"timesteps": [], "normal": [], "dropout": [], "uniform": []}
        self._real = {"randint": torch.randint, "randn_like": torch.randn_like, "rand": torch.rand,
                      "dropout": F.dropout}

    def randint(self, *a, **k):
        out = self._real["randint"](*a, **k)
        self.draws["timesteps"].append(out.tolist())
        return out

    def randn_like(self, *a, **k):
        out = self._real["randn_like"](*a, **k)
        self.draws["normal"].append(f32(out))
        return out

    def rand(self, *a, **k):
        out = self._real["rand"](*a, **k)
        self.draws["uniform"].append(f32(out))
        return out

    def dropout(self, x, p=0.5, training=True, inplace=False):
        state = torch.get_rng_state()
        mask = torch.empty_like(x).bernoulli_(1 - p)  # as CPU dropout draws it
        torch.set_rng_state(state)
        out = self._real["dropout"](x, p, training, inplace)
        assert torch.equal(out, x * mask.div(1 - p)), "recorded dropout mask is not torch's"
        self.draws["dropout"].append(mask.int().tolist())
        return out

    def __enter__(self):
        torch.randint, torch.randn_like, torch.rand, F.dropout = self.randint, self.randn_like, self.rand, \
            self.dropout
        return self

    def __exit__(self, *exc):
        torch.randint, torch.randn_like, torch.rand = (self._real[k] for k in ("randint", "randn_like", "rand"))
        F.dropout = self._real["dropout"]


class OrderRecorder:
    """The diffusion loader, recording each pass's users in the order its shuffle gave them."""

    def __init__(self, loader):
        self.loader, self.dataset, self.passes = loader, loader.dataset, []

    def __iter__(self):
        self.passes.append([])
        for rows, index in self.loader:
            self.passes[-1].extend(index.tolist())
            yield rows, index


class OneBatch:
    """The BPR loader: one fixed batch of triplets; ``negSampling`` samples nothing; one step per epoch."""

    def __init__(self, batch: dict, size: int):
        self.batch, self.dataset = batch, self
        self.size = size

    def negSampling(self):  # noqa: N802 (the authors' name)
        pass

    def __len__(self):
        return self.size

    def __iter__(self):
        yield tuple(torch.tensor(self.batch[k]) for k in ("users", "pos", "neg"))


def setup(ref: Path) -> types.SimpleNamespace:
    """The authors' modules importable on CPU; returns the ``args`` object they share (filled per run)."""
    sys.path.insert(0, str(ref))
    args = types.SimpleNamespace()
    params = types.ModuleType("Params")
    params.args = args
    sys.modules["Params"] = params
    sys.modules.setdefault("setproctitle", types.ModuleType("setproctitle"))
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    return args


def run(args: types.SimpleNamespace, flags: dict, feats: dict[str, np.ndarray]) -> dict:
    import DataHandler
    import Main
    import scipy.sparse as sp
    from torch.utils.data import DataLoader

    vars(args).clear()
    vars(args).update({**COMMON, **flags, "user": N_USERS, "item": N_ITEMS})
    modalities = ["image", "text", "audio"] if flags["data"] == "tiktok" else ["image", "text"]
    for m in modalities:
        setattr(args, f"{m}_feat_dim", feats[m].shape[1])
    users, items = (np.array(x) for x in zip(*PAIRS))
    trn = sp.coo_matrix((np.ones(len(PAIRS), dtype=np.float32), (users, items)), shape=(N_USERS, N_ITEMS))

    handler = types.SimpleNamespace()
    for m in modalities:
        setattr(handler, f"{m}_feats", torch.tensor(feats[m]))
    handler.torchBiAdj = DataHandler.DataHandler().makeTorchAdj(trn)
    diffusion = DataLoader(DataHandler.DiffusionData(torch.FloatTensor(trn.toarray())), batch_size=args.batch,
                           shuffle=True, num_workers=0)
    handler.diffusionLoader = OrderRecorder(diffusion)
    handler.trnLoader = OneBatch(BATCH, args.batch)
    coach = Main.Coach(handler)
    torch.manual_seed(SEED)
    coach.prepareModel()
    model, diff = coach.model, coach.diffusion_model
    denoisers = {m: getattr(coach, f"denoise_model_{m}") for m in modalities}
    weights = {n: f32(p) for n, p in model.named_parameters()}
    weights.update({f"{m}.{n}": f32(p) for m, d in denoisers.items() for n, p in d.named_parameters()})

    # the denoisers: each training_losses call's two losses; each optimiser step's gradients
    steps: list[dict] = []
    real_losses = diff.training_losses

    def training_losses(model_, *a, **k):
        d, g = real_losses(model_, *a, **k)
        name = next(m for m, den in denoisers.items() if den is model_)
        if not steps or name in steps[-1]:
            steps.append({})
        steps[-1][name] = {"diff": float(d.mean()), "gc": float(g.mean())}
        return d, g

    diff.training_losses = training_losses
    for m, den in denoisers.items():
        opt = getattr(coach, f"denoise_opt_{m}")
        real_step = opt.step

        def step(*a, _m=m, _den=den, _real=real_step, **k):
            steps[-1][_m]["grads"] = {n: f32(p.grad) for n, p in _den.named_parameters()}
            return _real(*a, **k)

        opt.step = step
    samples: list = []
    real_sample = diff.p_sample
    diff.p_sample = lambda *a, **k: samples.append(real_sample(*a, **k)) or samples[-1]
    built: list = []
    real_build = coach.buildUIMatrix
    coach.buildUIMatrix = lambda *a: built.append(real_build(*a)) or built[-1]
    # the main step: each contrastLoss call, the regulariser, and (before the step) gradients and scores
    cl_calls: list = []
    real_contrast = Main.contrastLoss
    Main.contrastLoss = lambda *a: cl_calls.append(real_contrast(*a)) or cl_calls[-1]
    regs: list = []
    real_reg = model.reg_loss
    model.reg_loss = lambda: regs.append(real_reg()) or regs[-1]
    main: dict = {}
    real_main_step = coach.opt.step

    def main_step(*a, **k):
        main["grads"] = {n: f32(p.grad) for n, p in model.named_parameters()}
        graphs = [getattr(coach, f"{m}_UI_matrix") for m in modalities]
        with torch.no_grad():
            u, i = model.forward_MM(handler.torchBiAdj, *graphs)
        main["scores"] = f32(u @ i.T)
        main["graphs"] = {m: f32(g.to_dense()) for m, g in zip(modalities, graphs)}
        return real_main_step(*a, **k)

    coach.opt.step = main_step
    torch.manual_seed(DRAW_SEED)
    with Recorder() as rec:
        ret = coach.trainEpoch()
    Main.contrastLoss = real_contrast

    names = [(a, b) for k, a in enumerate(modalities) for b in modalities[k + 1 :]]
    names += [("main", m) for m in modalities]
    assert len(cl_calls) == 2 * len(names) and len(regs) == 1
    contrast = {}
    for (a, b), (cu, ci) in zip(names, zip(cl_calls[::2], cl_calls[1::2])):
        contrast[f"{a}~{b}.users"], contrast[f"{a}~{b}.items"] = float(cu), float(ci)
    reg = regs[0] * args.reg
    assert len(samples) == len(modalities) * -(-N_USERS // args.batch)  # per batch, per modality
    return {
        "args": {k: v for k, v in vars(args).items() if not k.endswith("_feat_dim")},
        "settings": settings(vars(args)),
        "modalities": modalities,
        "weights": weights,
        "orders": handler.diffusionLoader.passes,
        "draws": rec.draws,
        "denoiser_steps": steps,
        "samples": [f32(s) for s in samples],
        "edges": [[g._indices()[0].tolist(), g._indices()[1].tolist()] for g in built],
        "graphs": main["graphs"],
        "norm_adj": f32(handler.torchBiAdj.to_dense()),
        "terms": {"bpr": float(ret["BPR Loss"]), "reg": float(reg), "cl": float(ret["CL loss"])},
        "contrast": contrast,
        "grads": main["grads"],
        "scores": main["scores"],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", type=Path, required=True, help="a checkout of HKUDS/DiffMM")
    ap.add_argument("--out", type=Path, required=True, help="the golden JSON to write")
    ap.add_argument("--commit", default=REF_COMMIT, help="the commit of --ref, recorded in the JSON")
    a = ap.parse_args(argv)
    args = setup(a.ref)
    rng = np.random.default_rng(SEED)
    feats = {m: rng.standard_normal((N_ITEMS, k)).astype(np.float32) for m, k in FEAT_DIMS.items()}
    import scipy

    out = {
        "model": "DiffMM", "reference": "github.com/HKUDS/DiffMM", "commit": a.commit,
        "torch": torch.__version__, "scipy": scipy.__version__, "seed": SEED, "draw_seed": DRAW_SEED,
        "n_users": N_USERS, "n_items": N_ITEMS,
        "pairs": {"users": [u for u, _ in PAIRS], "items": [i for _, i in PAIRS]},
        "features": {m: f32(f) for m, f in feats.items()},
        "batch": BATCH,
        "runs": {name: run(args, flags, feats) for name, flags in RUNS.items()},
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {a.out} ({a.out.stat().st_size} bytes), DiffMM {a.commit}")


if __name__ == "__main__":
    main()
