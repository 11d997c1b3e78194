"""MMSSL against the authors' own code: whole training batches (the critic's step with its gradient penalty,
the recommender's step with the adversarial term), the generated graphs after each batch, and the scores.

The golden file ``tests/golden/mmssl.json`` is written by ``tools/parity/mmssl.py``, which runs the authors'
``MMSSL/main.py`` training loop and ``Models.py`` classes (github.com/HKUDS/MMSSL; its docstring says how and
against which commit). Here mentor_ray's model is built from the same inputs (its graphs by its own code),
the authors' initial weights are loaded, their recorded draws (dropout masks, Gumbel uniforms, interpolation
weights) are replayed through ``MMSSL._draw``, and the authors' optimisers are replayed (the critic's Adam
from ``aux_optimizers``, betas (0.5, 0.9); AdamW for the rest, as theirs): every batch's critic terms and
critic gradients, recommender terms and gradients, and generated graphs (count matrices, gathered pairs,
normalised graphs) must agree, and then the scores and the final weights. Two runs: the authors' T = 1
(3 batches) and T = 2 (two epochs of 4 batches: pairs carried over the epoch boundary). A last test checks
that the same torch seed draws the authors' first batch (under the golden file's torch).
"""

from __future__ import annotations

import pytest
import torch

from mentor_ray.common.config import validate
from mentor_ray.model.base import Batch
from mentor_ray.model.mmssl import MMSSL
from tests.model_checks import f32, load_golden

GOLDEN = load_golden("mmssl")
RTOL, ATOL = 1e-5, 1e-6
# The critic's gradients (of order 1e4: the gradient penalty's) are compared to 2e-5 of each tensor's largest
# entry: the authors' own float32 values are up to 7e-6 of it away from a float64 evaluation (batch-norm
# biases, sums that cancel), and so are ours.
CRITIC_ATOL = 2e-5
# The authors' parameter name -> mentor_ray's (image = the first modality, text = the second; D = the critic)
NAMES = {
    "user_id_embedding.weight": "user_embedding",
    "item_id_embedding.weight": "item_embedding",
    "image_trans.weight": "projections.0.weight",
    "image_trans.bias": "projections.0.bias",
    "text_trans.weight": "projections.1.weight",
    "text_trans.bias": "projections.1.bias",
    "weight_dict.w_self_attention_cat": "w_cat",
    "D.net.0.weight": "critic.linears.0.weight",
    "D.net.0.bias": "critic.linears.0.bias",
    "D.net.2.weight": "critic.norm_weight.0",
    "D.net.2.bias": "critic.norm_bias.0",
    "D.net.4.weight": "critic.linears.1.weight",
    "D.net.4.bias": "critic.linears.1.bias",
    "D.net.6.weight": "critic.norm_weight.1",
    "D.net.6.bias": "critic.norm_bias.1",
    "D.net.8.weight": "critic.linears.2.weight",
    "D.net.8.bias": "critic.linears.2.bias",
}
# Linear layers followed by batch norm: their bias cancels exactly, its gradient is rounding noise in both
CANCELLED = {"D.net.0.bias", "D.net.4.bias"}


def settings(args: dict) -> dict:
    """mentor_ray's settings for a run of the authors' code (their argparse values)."""
    return {"variant": "mmssl", "embedding_dim": args["embed_size"], "n_layers": len(eval(args["weight_size"])),
            "dropout": args["drop_rate"], "reg_weight": eval(args["regs"])[0], "lr": args["lr"],
            "batch_size": args["batch_size"], "tau": args["tau"], "mmssl_cl_weight": args["cl_rate"],
            "mmssl_adv_weight": args["G_rate"], "mmssl_feat_reg": args["feat_reg_decay"],
            "mmssl_model_cat": args["model_cat_rate"], "mmssl_id_cat": args["id_cat_rate"],
            "mmssl_heads": args["head_num"], "mmssl_d_lr": args["D_lr"], "mmssl_d_dropout1": args["G_drop1"],
            "mmssl_d_dropout2": args["G_drop2"], "mmssl_gp_weight": args["gp_rate"],
            "mmssl_gumbel_scale": args["log_log_scale"] / args["real_data_tau"],
            "mmssl_ui_pre_scale": args["ui_pre_scale"], "mmssl_rebuild_every": args["T"],
            "mmssl_topk_rate": args["m_topk_rate"]}


def build(run: str) -> MMSSL:
    """mentor_ray's MMSSL on the golden input with the authors' initial weights."""
    args = GOLDEN["runs"][run]["args"]
    assert args["layers"] == 1 and args["sparse"] == 1  # their feature-graph loop runs once either way
    cfg = validate(settings(args))
    features = {m: f32(f) for m, f in GOLDEN["features"].items()}
    assert list(features) == ["image", "text"]
    p = GOLDEN["pairs"]
    model = MMSSL(cfg, GOLDEN["n_users"], GOLDEN["n_items"], features, p["users"], p["items"])
    params = dict(model.named_parameters())
    assert set(params) == set(NAMES.values())
    with torch.no_grad():
        for theirs, ours in NAMES.items():
            params[ours].copy_(f32(GOLDEN["weights"][theirs]))
    return model


def replay(model: MMSSL, draws: list[dict]) -> list:
    """``model._draw`` returns the authors' recorded draws, in order (kind and shape checked); returns the
    list of those left, to check that a batch consumed all of its own."""
    left = list(draws)

    def draw(kind, shape, p=0.0):
        d = left.pop(0)
        assert (d["kind"], tuple(d["shape"])) == (kind, tuple(shape)), (d["kind"], d["shape"], kind, shape)
        if kind == "drop":
            return torch.tensor([float(c) for c in d["values"]]).view(*shape) / (1 - p)
        return f32(d["values"]).view(*shape)

    model._draw = draw
    return left


def graph_counts(edges: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    return torch.zeros(n_users, n_items).index_put_((edges[0], edges[1]), torch.ones(edges.shape[1]),
                                                    accumulate=True)


def dense(coo: dict, shape) -> torch.Tensor:
    return torch.zeros(shape).index_put_((torch.tensor(coo["rows"], dtype=torch.long),
                                          torch.tensor(coo["cols"], dtype=torch.long)), f32(coo["values"]))


class Diff:
    """The largest differences seen: relative for terms and scores, relative to the tensor's largest entry
    for gradients and weights (for the docs' parity table)."""

    def __init__(self):
        self.max: dict[str, float] = {}

    def note(self, key: str, ours: torch.Tensor, theirs, scale: bool = False, atol: float = ATOL) -> None:
        """Assert ``ours`` close to ``theirs`` (rtol RTOL, atol ``atol`` times the larger of 1 and the tensor's
        largest entry) and keep the largest difference (relative to the tensor's largest entry with
        ``scale``, else elementwise relative)."""
        t = f32(theirs).double()
        o = ours.detach().double()
        den = t.abs().max().clamp_min(1e-30) if scale else t.abs().clamp_min(1e-30)
        self.max[key] = max(self.max.get(key, 0.0), float(((o - t).abs() / den).max()))
        torch.testing.assert_close(o.float(), t.float(), rtol=RTOL, atol=atol * max(1.0, float(t.abs().max())),
                                   msg=key)


def run_golden(run: str) -> Diff:
    """Replay one of the authors' runs batch by batch; every comparison asserts (see the module docstring)."""
    g = GOLDEN["runs"][run]
    diff = Diff()
    model = build(run)
    n_u, n_i = GOLDEN["n_users"], GOLDEN["n_items"]
    for key, (k, side) in {"image_ui": (0, 0), "image_iu": (0, 2)}.items():  # R's graphs, by our own code
        diff.note("graphs", model.generated_graph(k)[side].to_dense(), dense(GOLDEN["graphs_before"]["normalised"][key],
                  (n_u, n_i) if side == 0 else (n_i, n_u)))
    main = [p for n, p in model.named_parameters() if not n.startswith("critic.")]
    opt = torch.optim.AdamW(main, lr=g["args"]["lr"])  # the authors' optimizer_D (weight decay 0.01)
    opt_d = model.aux_optimizers()["disc"]
    assert opt_d.defaults["betas"] == (0.5, 0.9) and opt_d.defaults["lr"] == g["args"]["D_lr"]
    params = dict(model.named_parameters())
    batches = iter(g["batches"])
    for epoch in range(g["epochs"]):
        model.start_epoch(epoch)
        for _ in range(g["per_epoch"]):
            b = next(batches)
            batch = Batch(*(torch.tensor(b[k]) for k in ("users", "pos", "neg")))
            left = replay(model, b["draws"])
            # the critic's step (before the recommender's, as the authors)
            crit = model.critic_terms(batch)
            for k, v in b["critic_terms"].items():
                diff.note("critic terms", crit[k], v)
            loss_d = crit["fake"] - crit["real"] + model.cfg.mmssl_gp_weight * crit["gp"]
            diff.note("critic terms", loss_d, b["disc"])
            opt_d.zero_grad()
            loss_d.backward()
            for theirs, grad in b["grads_D"].items():
                if theirs in CANCELLED:  # rounding noise in both: only its size, against the layer's weights'
                    weight = params[NAMES[theirs].replace("bias", "weight")].grad.abs().max()
                    assert params[NAMES[theirs]].grad.abs().max() < 1e-6 * weight
                    assert f32(grad).abs().max() < 1e-6 * weight
                    continue
                diff.note("critic gradients", params[NAMES[theirs]].grad, grad, scale=True, atol=CRITIC_ATOL)
            opt_d.step()
            # the recommender's step
            terms = model.loss_terms(batch, parts=True)
            for k, v in b["terms"].items():
                diff.note("terms", terms[k], v)
            a = g["args"]
            diff.note("terms", terms["cl"], a["cl_rate"] * (b["terms"]["cl.image"] + b["terms"]["cl.text"]))
            diff.note("terms", terms["adv"], -a["G_rate"] * b["terms"]["critic"])
            assert not left, f"{len(left)} draws not consumed"
            opt.zero_grad()
            sum(terms[k] for k in ("bpr", "reg", "feat_reg", "cl", "adv")).backward()
            for theirs, grad in b["grads"].items():
                if theirs == "weight_dict.w_q":  # not a parameter here: its gradient is rounding noise
                    w_cat = f32(b["grads"]["weight_dict.w_self_attention_cat"])
                    assert f32(grad).abs().max() < 1e-6 * w_cat.abs().max()
                    continue
                diff.note("gradients", params[NAMES[theirs]].grad, grad, scale=True)
            opt.step()
            # the generated graphs it left
            after = b["graphs_after"]
            for k, m in enumerate(("image", "text")):
                ours = graph_counts(model._buffers[f"gen_edges_{k}"], n_u, n_i)
                assert torch.equal(ours, dense(after["counts"][m], (n_u, n_i))), (m, "counts")
                pend = model._buffers[f"gen_pending_{k}"]
                assert pend[0].tolist() == after["pending"][m]["users"], (m, "pending users")
                assert pend[1].tolist() == after["pending"][m]["items"], (m, "pending items")
                if after["normalised"] is not None:
                    gr = model.generated_graph(k)
                    diff.note("graphs", gr[0].to_dense(), dense(after["normalised"][f"{m}_ui"], (n_u, n_i)))
                    diff.note("graphs", gr[2].to_dense(), dense(after["normalised"][f"{m}_iu"], (n_i, n_u)))
    model.eval()
    u, i = model.user_item_embeddings()
    diff.note("scores", u @ i.T, g["scores"], scale=True)
    for theirs, w in g["weights_after"].items():
        if theirs in NAMES and theirs not in CANCELLED:
            diff.note("weights after", params[NAMES[theirs]], w, scale=True)
    return diff


@pytest.mark.parametrize("run", ["t1", "t2"])
def test_batches_graphs_and_scores_match_the_authors(run):
    run_golden(run)


def max_relative_differences() -> dict[str, float]:
    """The largest differences over both runs (for the docs)."""
    out: dict[str, float] = {}
    for run in GOLDEN["runs"]:
        for k, v in run_golden(run).max.items():
            out[k] = max(out.get(k, 0.0), v)
    return out


def test_the_critic_loss_is_its_terms_and_the_loss_its_weighted_terms():
    model = build("t1")
    b = GOLDEN["runs"]["t1"]["batches"][0]
    batch = Batch(*(torch.tensor(b[k]) for k in ("users", "pos", "neg")))
    replay(model, b["draws"])
    loss_d = model.aux_losses(batch)["disc"]
    assert float(loss_d.detach()) == pytest.approx(b["disc"], rel=RTOL)
    total, terms = model.loss(batch)
    assert set(terms) == {"bpr", "reg", "feat_reg", "cl", "adv"}
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)


@pytest.mark.skipif(torch.__version__ != GOLDEN["torch"], reason="the draws are those of the golden file's torch "
                    f"{GOLDEN['torch']} only")
def test_same_seed_draws_the_authors_first_batch():
    model = build("t1")
    b = GOLDEN["runs"]["t1"]["batches"][0]
    batch = Batch(*(torch.tensor(b[k]) for k in ("users", "pos", "neg")))
    drawn = []
    real = model._draw
    model._draw = lambda kind, shape, p=0.0: drawn.append((kind, real(kind, shape, p), p)) or drawn[-1][1]
    torch.manual_seed(GOLDEN["draw_seed"])
    model.aux_losses(batch)
    model.loss(batch)
    assert [(k, list(t.shape)) for k, t, _ in drawn] == [(d["kind"], d["shape"]) for d in b["draws"]]
    for (kind, t, p), d in zip(drawn, b["draws"]):
        want = torch.tensor([float(c) for c in d["values"]]) / (1 - p) if kind == "drop" else f32(d["values"])
        assert torch.equal(t.reshape(-1), want.reshape(-1)), kind
