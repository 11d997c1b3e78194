"""Eq. 21 (and MENTOR's other node-mean terms) split by rows across DDP ranks: 1 rank = 2 ranks = 4 ranks.

Each rank computes its share of the users' and items' InfoNCE rows (against every column), of the feature
masking rows and of the per-node alignment gaps, scaled so that DDP's gradient average is the single
process's gradient (``Mentor``'s docstring, *Data parallelism*). In float64, with every rank drawing the
same noise and dropout masks (the global generator re-seeded alike, as the trainer does per epoch, and left
in the same state after the step), the loss and every parameter gradient agree to 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from mentor_ray.common import config
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets.graphs import build_graphs, from_arrays, to_arrays
from mentor_ray.model import Batch, build_model, losses
from mentor_ray.model.mentor import share
from mentor_ray.training.trainer import TripletSampler
from tests.gloo import as_rank

TOL = 1e-10
NOISE_SEED = 12345  # the step's draws: every rank (and the single process) starts from this generator state
BASE = {"embedding_dim": 8, "knn_k": 5, "infonce_scope": "all", "infonce_chunk": 7}  # chunks smaller than a share
CASES = {
    "paper": {},
    "variations": {"align_stats": "matrix", "perturb_noise": "simgcl", "layer_combine": "mean", "n_layers": 3,
                   "item_layers": 2},
}


# --------------------------------------------------------------------------- the losses, part by part


def _views(n=23, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.2, 0.02])  # a constant shift and a per-row max shift
@pytest.mark.parametrize("parts,chunk", [(2, 4), (3, 5), (4, 100), (30, 3)])  # 30 parts of 23 rows: some empty
def test_info_nce_parts_add_up_to_the_whole(parts, chunk, tau):
    v1, v2 = _views()
    a1, a2 = v1.clone().requires_grad_(), v2.clone().requires_grad_()
    whole = losses.info_nce_chunked(a1, a2, tau, chunk)
    g_whole = torch.autograd.grad(whole, (a1, a2))
    b1, b2 = v1.clone().requires_grad_(), v2.clone().requires_grad_()
    n = v1.shape[0]
    total = sum(losses.info_nce_chunked(b1[s:e], b2, tau, chunk, start=s, count=n)
                for s, e in (share(n, Batch(None, None, None, world=parts, rank=r)) for r in range(parts)))
    g_parts = torch.autograd.grad(total, (b1, b2))
    assert abs(total.item() - whole.item()) <= TOL * abs(whole.item())
    for g, h in zip(g_parts, g_whole):
        assert float((g - h).abs().max()) <= TOL * float(h.abs().max())


def test_info_nce_part_needs_the_row_count():
    v1, v2 = _views()
    with pytest.raises(ValueError, match="row count"):
        losses.info_nce_chunked(v1[3:9], v2, 0.2, 4, start=3)


def test_feature_masking_and_alignment_parts_add_up():
    users, items = _views(17, 6, 1)
    pred = torch.nn.Linear(6, 6).double()
    torch.manual_seed(3)
    whole = losses.feature_masking_loss(users, items, pred, 0.3)
    parts = []
    for r in range(3):
        torch.manual_seed(3)  # the same masks: every row's mask is drawn on every rank
        b = Batch(None, None, None, world=3, rank=r)
        parts.append(losses.feature_masking_loss(users, items, pred, 0.3, (share(17, b), share(17, b))))
    assert float(sum(parts).detach()) == pytest.approx(float(whole.detach()), rel=TOL)  # values only: no grad
    stats = {k: (torch.rand(17, dtype=torch.float64), torch.rand(17, dtype=torch.float64)) for k in ("v", "t", "id",
                                                                                                    "fused")}
    whole = losses.alignment_loss(stats, ["v", "t"], 3)[0]
    rows = [share(17, Batch(None, None, None, world=4, rank=r)) for r in range(4)]
    part = sum(losses.alignment_loss({k: (m[s:e], v[s:e]) for k, (m, v) in stats.items()}, ["v", "t"], 3,
                                     count=17)[0] for s, e in rows)
    assert float(part) == pytest.approx(float(whole), rel=TOL)


def test_shares_are_contiguous_disjoint_and_cover_every_row():
    for n, world in ((60, 4), (40, 3), (7, 4), (2, 4)):
        bounds = [share(n, Batch(None, None, None, world=world, rank=r)) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(e - s for s, e in bounds) - min(e - s for s, e in bounds) <= 1


# --------------------------------------------------------------------------- the model, one step


def _graphs(ds):
    return build_graphs(ds, k=BASE["knn_k"])


def _model(ds, graphs, case: str):
    cfg = config.make_config(flags={"variant": "mentor", "dataset": "synth-tiny"},
                             overrides=[f"{k}={v}" for k, v in {**BASE, **CASES[case]}.items()])
    torch.manual_seed(0)  # the trainer's rule: the same initial weights on every rank
    m = build_model(cfg, ds).double()
    m.set_graphs(graphs.ui_adj.to(torch.float64), {k: a.to(torch.float64) for k, a in graphs.item_adj.items()})
    m.train()
    return m


def _batch(ds, global_batch: int, rank: int, world: int) -> Batch:
    """Rank ``rank``'s part of the epoch's first global batch, split as the trainer splits it."""
    part = TripletSampler(ds, seed=0).batches(0, global_batch, rank, world)[0]
    return Batch(*(torch.from_numpy(a) for a in part), world=world, rank=rank)


def _step(m, batch: Batch):
    """One loss and backward from the fixed generator state: (loss, terms, gradients, generator state after)."""
    m.zero_grad(set_to_none=True)
    torch.manual_seed(NOISE_SEED)
    loss, terms = m.loss(batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in m.named_parameters()}
    return loss.item(), terms, grads, torch.get_rng_state()


def _worst(grads: dict, ref: dict) -> float:
    """Largest gradient difference, relative to the largest entry of that parameter's reference gradient."""
    assert set(grads) == set(ref)
    return max(float((grads[n] - ref[n]).abs().max()) / max(float(ref[n].abs().max()), 1e-300) for n in ref)


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset("synth-tiny")


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("world,global_batch", [(2, 64), (3, 63), (4, 64)])
def test_ranks_emulated_in_one_process_give_the_single_process_step(ds, case, world, global_batch):
    """Each rank's loss(batch) and backward in turn, the gradients averaged as DDP averages them."""
    graphs = _graphs(ds)
    m = _model(ds, graphs, case)
    one_loss, one_terms, one_grads, one_rng = _step(m, _batch(ds, global_batch, 0, 1))
    assert set(one_terms) == {"bpr", "reg", "align", "mask_f", "perturb_g"}
    losses_, terms_, grads = [], [], {n: torch.zeros_like(g) for n, g in one_grads.items()}
    for rank in range(world):
        loss, terms, g, rng = _step(m, _batch(ds, global_batch, rank, world))
        assert torch.equal(rng, one_rng)  # every rank drew exactly what one process draws
        losses_.append(loss)
        terms_.append(terms)
        for n in grads:
            grads[n] += g[n] / world
    assert sum(losses_) / world == pytest.approx(one_loss, rel=TOL)
    for k, v in one_terms.items():  # the trainer's reduction: the terms averaged over the ranks
        assert sum(t[k] for t in terms_) / world == pytest.approx(v, rel=TOL), k
    assert _worst(grads, one_grads) <= TOL


def test_one_rank_of_several_computes_only_its_rows(ds, monkeypatch):
    """The all-scope InfoNCE of a rank of 4 gets a quarter of the users' and items' rows, every column."""
    m = _model(ds, _graphs(ds), "paper")
    seen = []
    real = losses.info_nce_chunked
    monkeypatch.setattr(losses, "info_nce_chunked",
                        lambda v1, v2, *a: seen.append((v1.shape[0], v2.shape[0], *a[2:])) or real(v1, v2, *a))
    torch.manual_seed(NOISE_SEED)
    m.loss(_batch(ds, 64, 1, 4))
    n_u, n_i = ds.n_users, ds.n_items
    want = [(e - s, n, s, n) for n in (n_u, n_i) for s, e in [share(n, Batch(None, None, None, world=4, rank=1))]]
    assert seen == want * len(m.modalities)


# --------------------------------------------------------------------------- real ranks: gloo processes


def _rank_main(rank: int, world: int, init_file: str, out: str, arrays: str, case: str) -> None:
    import torch.distributed as dist

    def body() -> None:
        ds = data.load_dataset("synth-tiny")
        m = _model(ds, from_arrays(np.load(arrays)), case)
        loss, terms, grads, rng = _step(m, _batch(ds, 64, rank, world))
        # as DDP: the gradients all-reduced and divided by the world size; the terms as the trainer averages them
        names = sorted(grads)
        flat = torch.cat([grads[n].reshape(-1) for n in names])
        dist.all_reduce(flat)
        flat /= world
        keys = sorted(terms)
        values = torch.tensor([loss] + [terms[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(values)
        values /= world
        states = [None] * world
        dist.all_gather_object(states, rng)
        if rank == 0:
            at, avg = 0, {}
            for n in names:
                avg[n] = flat[at:at + grads[n].numel()].view_as(grads[n]).clone()
                at += grads[n].numel()
            torch.save({"loss": float(values[0]), "terms": dict(zip(keys, values[1:].tolist())), "grads": avg,
                        "rng_equal": all(torch.equal(s, states[0]) for s in states), "rng": states[0]}, out)

    as_rank(body, rank, world, init_file)


@pytest.mark.slow  # six gloo processes, each importing torch: ~30 s on 2 cores
@pytest.mark.parametrize("case", ["paper"])
def test_gloo_ranks_give_the_single_process_loss_and_gradients(tmp_path, ds, case):
    graphs = _graphs(ds)
    arrays = tmp_path / "graphs.npz"
    np.savez(arrays, **to_arrays(graphs))
    one_loss, one_terms, one_grads, one_rng = _step(_model(ds, graphs, case), _batch(ds, 64, 0, 1))
    worst = {}
    for world in (2, 4):
        out = tmp_path / f"world{world}.pt"
        mp.spawn(_rank_main, args=(world, str(tmp_path / f"pg{world}"), str(out), str(arrays), case), nprocs=world,
                 join=True)
        got = torch.load(out)
        assert got["rng_equal"] and torch.equal(got["rng"], one_rng)
        assert got["loss"] == pytest.approx(one_loss, rel=TOL)
        for k, v in one_terms.items():
            assert got["terms"][k] == pytest.approx(v, rel=TOL), k
        worst[world] = (abs(got["loss"] - one_loss) / abs(one_loss), _worst(got["grads"], one_grads))
        assert worst[world][1] <= TOL, worst
    print(f"world: (loss, largest gradient) relative differences to one process: {worst}")
