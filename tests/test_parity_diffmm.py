"""DiffMM against the authors' own code: one denoiser epoch, one generation, the generated graphs, each loss
term, every gradient and the scores.

The golden file ``tests/golden/diffmm.json`` is written by ``tools/parity/diffmm.py``, which runs the authors'
``Model.py`` classes and ``Main.py``'s ``Coach.trainEpoch`` (github.com/HKUDS/DiffMM; its docstring says how
and against which commit) for two settings: ``tiktok`` (image, text, audio; TikTok's published flags) and
``baby`` (image, text; Baby's flags with every other branch switched on). Here mentor_ray's model is built
from the same inputs (its user-item graph by its own code), the authors' initial weights are loaded, their
recorded draws (shuffles, timesteps, noise, dropout masks, edge-dropout uniforms) are replayed through the
``DiffMM._draw_*`` hooks, and ``start_epoch`` (the denoisers' epoch and the generation) and one loss must
reproduce what the authors computed. A second pair of tests checks that the same torch seeds build the
authors' initial weights and draw their samples, under the golden file's torch.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from mentor_ray.common.config import validate
from mentor_ray.model.diffmm import DiffMM, generated_edges
from mentor_ray.model.losses import contrast_all as contrast
from tests.model_checks import RTOL, close, f32, golden_batch, load_golden

GOLDEN = load_golden("diffmm")
RUNS = tuple(GOLDEN["runs"])


def names(run: dict) -> dict[str, str]:
    """The authors' parameter names -> mentor_ray's, for the run's modalities (in the authors' order)."""
    out = {"uEmbeds": "user_embedding", "iEmbeds": "item_embedding", "modal_weight": "modal_weight"}
    for k, m in enumerate(run["modalities"]):
        if run["settings"]["diffmm_trans"] == "linear":
            out.update({f"{m}_trans.weight": f"projections.{k}.weight", f"{m}_trans.bias": f"projections.{k}.bias"})
        else:
            out[f"{m}_trans"] = f"projections.{k}.weight"
        for theirs, ours in (("emb_layer", "time_layer"), ("in_layers.0", "in_layer"), ("out_layers.0", "out_layer")):
            for p in ("weight", "bias"):
                out[f"{m}.{theirs}.{p}"] = f"denoisers.{k}.{ours}.{p}"
    return out


def build(name: str, load: bool = True, **settings) -> DiffMM:
    """mentor_ray's DiffMM on the golden input of run ``name``, with the authors' initial weights (``load``)."""
    run = GOLDEN["runs"][name]
    s = {**run["settings"], **settings}
    lr, batch_size = s.pop("lr"), s.pop("batch_size")
    cfg = validate({"variant": "diffmm", **s})
    feats = {m: f32(GOLDEN["features"][m]) for m in run["modalities"]}
    pairs = GOLDEN["pairs"]
    model = DiffMM(cfg, GOLDEN["n_users"], GOLDEN["n_items"], feats, np.array(pairs["users"]),
                   np.array(pairs["items"]), lr=lr, batch_size=batch_size)
    if load:
        params = dict(model.named_parameters())
        mapping = names(run)
        assert set(params) == set(mapping.values()) and set(run["weights"]) == set(mapping)
        with torch.no_grad():
            for theirs, ours in mapping.items():
                params[ours].copy_(f32(run["weights"][theirs]))
    return model


def replay(model: DiffMM, run: dict) -> None:
    """The ``_draw_*`` hooks return the authors' recorded draws, in the order drawn."""
    d = run["draws"]
    orders = iter(run["orders"])
    steps, normal, masks, uniform = (iter(d[k]) for k in ("timesteps", "normal", "dropout", "uniform"))
    q = 1.0 - 0.5  # the denoisers' input dropout keeps half
    model._draw_order = lambda n: torch.tensor(next(orders))
    model._draw_timesteps = lambda n: torch.tensor(next(steps))
    model._draw_normal = lambda x: f32(next(normal))
    model._dropout = lambda x: x * f32(next(masks)) / q
    model._draw_uniform = lambda n: f32(next(uniform))


def record(model: DiffMM) -> dict:
    """Wraps the model to record each denoiser step's losses and gradients (before the step) and each sample."""
    out: dict = {"steps": [], "samples": []}
    real_loss, real_sample = model.denoiser_loss, model.sample

    def loss(k, *a):
        total, parts = real_loss(k, *a)
        m = model.modalities[k]
        if not out["steps"] or m in out["steps"][-1]:
            out["steps"].append({})
        out["steps"][-1][m] = {key: float(v.detach()) for key, v in parts.items()}
        return total, parts

    model.denoiser_loss = loss
    model.sample = lambda k, x: out["samples"].append(real_sample(k, x)) or out["samples"][-1]
    for name, opt in model.aux_optimizers().items():
        m = name.removeprefix("denoiser.")
        den = model.denoisers[model.modalities.index(m)]
        real_step = opt.step

        def step(*a, _m=m, _den=den, _real=real_step, **k):
            out["steps"][-1][_m]["grads"] = {n: p.grad.clone() for n, p in _den.named_parameters()}
            return _real(*a, **k)

        opt.step = step
    return out


@functools.lru_cache(maxsize=None)
def epoch(name: str) -> tuple[DiffMM, dict, dict, torch.Tensor, torch.Tensor]:
    """One replayed epoch of run ``name``: (model, recorded denoiser steps and samples, terms with parts,
    total, scores); the main loss has been back-propagated."""
    run = GOLDEN["runs"][name]
    model = build(name)
    replay(model, run)
    rec = record(model)
    model.start_epoch(0)
    for p in model.denoisers.parameters():
        p.grad = None  # the last denoiser step's; the main loss must leave none
    terms = model.loss_terms(golden_batch(GOLDEN["batch"]), parts=True)
    total = terms["bpr"] + terms["reg"] + terms["cl"]
    total.backward()
    u, i = model.user_item_embeddings()
    return model, rec, terms, total, u @ i.T


def denoiser_grad(rec: dict, step: int, m: str, theirs: str) -> torch.Tensor:
    """Our gradient of the authors' denoiser parameter ``theirs`` (``emb_layer.weight``, ...) at a step."""
    ours = {"emb_layer": "time_layer", "in_layers.0": "in_layer", "out_layers.0": "out_layer"}
    layer, _, p = theirs.rpartition(".")
    return rec["steps"][step][m]["grads"][f"{ours[layer]}.{p}"]


@pytest.mark.parametrize("name", RUNS)
def test_user_item_graph_matches_the_authors(name):
    close(build(name).graph("ui").to_dense(), GOLDEN["runs"][name]["norm_adj"])


@pytest.mark.parametrize("name", RUNS)
def test_denoiser_steps_match_the_authors(name):
    """Both diffusion batches: each modality's two losses and its gradients before each Adam step."""
    run = GOLDEN["runs"][name]
    _, rec, _, _, _ = epoch(name)
    assert len(rec["steps"]) == len(run["denoiser_steps"]) == 2
    for k, (ours, theirs) in enumerate(zip(rec["steps"], run["denoiser_steps"])):
        assert set(ours) == set(theirs) == set(run["modalities"])
        for m, want in theirs.items():
            assert ours[m]["diff"] == pytest.approx(want["diff"], rel=RTOL), (k, m)
            assert ours[m]["gc"] == pytest.approx(want["gc"], rel=RTOL), (k, m)
            for p, g in want["grads"].items():
                close(denoiser_grad(rec, k, m, p), g, msg=f"step {k} {m} {p}")


@pytest.mark.parametrize("name", RUNS)
def test_generation_and_generated_graphs_match_the_authors(name):
    """The reverse chain after the Adam steps (every batch and modality), the edges in the authors' order,
    and the edge-dropped graphs."""
    run = GOLDEN["runs"][name]
    model, rec, _, _, _ = epoch(name)
    assert len(rec["samples"]) == len(run["samples"])
    for ours, theirs in zip(rec["samples"], run["samples"]):
        close(ours, theirs)
    for items, (rows, cols) in zip(model.gen_items, run["edges"], strict=True):
        r, c, _ = generated_edges(items, model.n_users, model.n_items)
        assert r.tolist() == rows and c.tolist() == cols
    for (g, g_t), m in zip(model.generated_graphs(), run["modalities"]):
        close(g.to_dense(), run["graphs"][m], msg=m)
        close(g_t.to_dense(), f32(run["graphs"][m]).T, msg=m)


@pytest.mark.parametrize("name", RUNS)
def test_loss_terms_gradients_and_scores_match_the_authors(name):
    run = GOLDEN["runs"][name]
    model, _, terms, total, scores = epoch(name)
    for k in ("bpr", "reg", "cl"):
        assert float(terms[k].detach()) == pytest.approx(run["terms"][k], rel=RTOL), k
    assert float(total.detach()) == pytest.approx(sum(run["terms"].values()), rel=RTOL)
    # every contrastive call of the authors' step, those of both cl_methods (one of them unused in the loss)
    views = dict(zip(model.modalities, model.views()))
    views["main"] = model()
    batch = golden_batch(GOLDEN["batch"])
    for key, want in run["contrast"].items():
        pair, _, side = key.rpartition(".")
        a, b = pair.split("~")
        if f"cl.{key}" in terms:
            assert float(terms[f"cl.{key}"].detach()) == pytest.approx(want, rel=RTOL), key
        s = 0 if side == "users" else 1
        got = contrast(views[a][s], views[b][s], batch.users if side == "users" else batch.pos, model.cfg.tau)
        assert float(got.detach()) == pytest.approx(want, rel=RTOL), key
    params = dict(model.named_parameters())
    for theirs, ours in names(run).items():
        if theirs in run["grads"]:
            close(params[ours].grad, run["grads"][theirs], msg=theirs)
        else:  # the denoisers: no gradient from the main loss (their own optimiser trains them)
            assert params[ours].grad is None, ours
    close(scores, run["scores"])


@pytest.mark.skipif(torch.__version__ != GOLDEN["torch"], reason="torch's draws are those of the golden file's "
                    f"torch {GOLDEN['torch']} only")
@pytest.mark.parametrize("name", RUNS)
def test_same_seeds_build_the_authors_weights_and_draw_their_samples(name):
    run = GOLDEN["runs"][name]
    torch.manual_seed(GOLDEN["seed"])
    fresh = dict(build(name, load=False).named_parameters())
    for theirs, ours in names(run).items():
        if theirs != "modal_weight":  # 1/M here, the authors' 0.5 or 0.3333: a softmax is blind to it
            assert torch.equal(fresh[ours].detach(), f32(run["weights"][theirs])), theirs
    model = build(name)
    drawn: dict = {"timesteps": [], "normal": [], "dropout": [], "uniform": []}
    real = {k: getattr(model, k) for k in ("_draw_timesteps", "_draw_normal", "_dropout", "_draw_uniform")}
    model._draw_timesteps = lambda n: drawn["timesteps"].append(real["_draw_timesteps"](n)) or drawn["timesteps"][-1]
    model._draw_normal = lambda x: drawn["normal"].append(real["_draw_normal"](x)) or drawn["normal"][-1]
    model._draw_uniform = lambda n: drawn["uniform"].append(real["_draw_uniform"](n)) or drawn["uniform"][-1]
    model._dropout = lambda x: drawn["dropout"].append(y := real["_dropout"](x)) or y
    real_order = model._draw_order
    model._draw_order = lambda n: drawn.setdefault("orders", []).append(real_order(n)) or drawn["orders"][-1]
    torch.manual_seed(GOLDEN["draw_seed"])
    model.start_epoch(0)
    d = run["draws"]
    assert [o.tolist() for o in drawn["orders"]] == run["orders"]
    assert [t.tolist() for t in drawn["timesteps"]] == d["timesteps"]
    assert all(torch.equal(a, f32(b)) for a, b in zip(drawn["normal"], d["normal"], strict=True))
    assert all(torch.equal(a, f32(b)) for a, b in zip(drawn["uniform"], d["uniform"], strict=True))
    # the kept entries (the noised rows have no zeros, so a zero output is a dropped entry)
    assert [(y != 0).int().tolist() for y in drawn["dropout"]] == d["dropout"]
    replayed, _, _, _, _ = epoch(name)
    assert torch.equal(model.gen_items, replayed.gen_items) and torch.equal(model.gen_keep, replayed.gen_keep)


def max_relative_differences() -> dict[str, float]:
    """The largest |ours - authors'| / |authors'| of the terms (loss terms, contrastive calls, denoiser
    losses), the gradients (main and denoisers; also absolute, and relative to each tensor's largest entry),
    the samples and the scores (also absolute), and the largest absolute difference of the graphs (for the
    docs)."""
    def golden32(b) -> torch.Tensor:  # the golden numbers are float32 values: read them as such
        return torch.as_tensor(b, dtype=torch.float32).double()

    def ab(a, b) -> float:
        return float((torch.as_tensor(a).double() - golden32(b)).abs().max())

    def rel(a, b) -> float:
        return float(((torch.as_tensor(a).double() - golden32(b)).abs() / golden32(b).abs().clamp_min(1e-30)).max())

    def of_max(a, b) -> float:
        return ab(a, b) / float(golden32(b).abs().max())

    out = {"terms": 0.0, "denoiser_terms": 0.0, "grads": 0.0, "grads_abs": 0.0, "grads_of_max": 0.0,
           "denoiser_grads": 0.0, "denoiser_grads_abs": 0.0, "denoiser_grads_of_max": 0.0, "samples": 0.0,
           "graphs_abs": 0.0, "scores": 0.0, "scores_abs": 0.0}
    for name in RUNS:
        run = GOLDEN["runs"][name]
        model, rec, terms, _, scores = epoch(name)
        out["terms"] = max([out["terms"], *(rel(float(terms[k].detach()), v) for k, v in run["terms"].items()),
                            *(rel(float(terms[f"cl.{k}"].detach()), v) for k, v in run["contrast"].items()
                              if f"cl.{k}" in terms)])
        params = dict(model.named_parameters())
        for theirs, g in run["grads"].items():
            ours = params[names(run)[theirs]].grad.detach()
            out["grads"], out["grads_abs"] = max(out["grads"], rel(ours, g)), max(out["grads_abs"], ab(ours, g))
            out["grads_of_max"] = max(out["grads_of_max"], of_max(ours, g))
        for k, step in enumerate(run["denoiser_steps"]):
            for m, want in step.items():
                out["denoiser_terms"] = max(out["denoiser_terms"], rel(rec["steps"][k][m]["diff"], want["diff"]),
                                            rel(rec["steps"][k][m]["gc"], want["gc"]))
                for p, g in want["grads"].items():
                    ours = denoiser_grad(rec, k, m, p)
                    out["denoiser_grads"] = max(out["denoiser_grads"], rel(ours, g))
                    out["denoiser_grads_abs"] = max(out["denoiser_grads_abs"], ab(ours, g))
                    out["denoiser_grads_of_max"] = max(out["denoiser_grads_of_max"], of_max(ours, g))
        out["samples"] = max([out["samples"], *(rel(a, b) for a, b in zip(rec["samples"], run["samples"]))])
        graphs = zip(model.generated_graphs(), run["modalities"])
        out["graphs_abs"] = max([out["graphs_abs"], *(ab(g.to_dense(), run["graphs"][m]) for (g, _), m in graphs)])
        out["scores"] = max(out["scores"], rel(scores, run["scores"]))
        out["scores_abs"] = max(out["scores_abs"], ab(scores, run["scores"]))
    return out
