"""Auxiliary optimisers (a discriminator, denoisers): kept out of the main optimiser and DDP's averaging,
stepped on their own loss before the main step, averaged over ranks, and checkpointed.

A toy model stands for MMSSL's shape: a main matrix factorisation and a discriminator ``D`` that the main
loss also reads (so the main backward leaves gradients on ``D`` that the main optimiser must not apply)."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from mentor_ray.common import config
from mentor_ray.datasets import dataset as data
from mentor_ray.model import losses
from mentor_ray.model.base import Batch, Recommender, aux_step
from mentor_ray.training import trainer as train
from tests.gloo import as_rank

SETTINGS = ["embedding_dim=8", "batch_size=64", "eval_batch_size=16", "max_epochs=2", "lr=1e-2"]


class Toy(Recommender):
    def __init__(self, cfg, n_users, n_items):
        super().__init__()
        self.cfg, self.n_users, self.n_items = cfg, n_users, n_items
        d = cfg.embedding_dim
        self.u = nn.Parameter(torch.randn(n_users, d) * 0.1)
        self.i = nn.Parameter(torch.randn(n_items, d) * 0.1)
        self.D = nn.Linear(d, 1)
        self._aux = {"disc": torch.optim.Adam(self.D.parameters(), lr=1e-2, betas=(0.5, 0.9))}

    def aux_optimizers(self):
        return self._aux

    def aux_losses(self, batch: Batch):
        real, fake = self.i[batch.pos].detach(), self.i[batch.neg].detach()
        return {"disc": (self.D(fake).mean() - self.D(real).mean())}  # a batch mean: ranks average

    def loss(self, batch: Batch):
        u, p, n = self.u[batch.users], self.i[batch.pos], self.i[batch.neg]
        bpr = losses.bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        adv = -self.D(p).mean() * 0.1  # reads D: gradients land on D, the main optimiser must leave them
        terms = {"bpr": bpr, "adv": adv}
        return bpr + adv, {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def user_item_embeddings(self):
        return self.u, self.i


def _trainer(monkeypatch=None, rank=0, world=1) -> train.Trainer:
    cfg = config.make_config(flags={"dataset": "synth-tiny", "variant": "mf_bpr"}, overrides=SETTINGS)
    build = lambda cfg, ds: Toy(cfg, ds.n_users, ds.n_items)  # noqa: E731
    if monkeypatch is not None:
        monkeypatch.setattr(train, "build_model", build)
    else:
        train.build_model = build  # a spawned rank: its own process
    return train.Trainer(cfg, rank=rank, world_size=world)


def test_main_optimizer_leaves_the_auxiliary_group_to_its_own(monkeypatch):
    t = _trainer(monkeypatch)
    main = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert main == {id(t.model.u), id(t.model.i)}
    # Replay one epoch by hand: the aux step on its own loss, then the main step; D moves only by the former.
    torch.manual_seed(0)
    ref = Toy(t.cfg, t.ds.n_users, t.ds.n_items)
    ref.load_state_dict(t.model.state_dict())
    opt = torch.optim.Adam([ref.u, ref.i], lr=t.cfg.lr)
    for part in t.sampler.batches(0, t.cfg.batch_size, 0, 1):
        b = Batch(*(torch.from_numpy(a) for a in part))
        aux_step(ref._aux["disc"], ref.aux_losses(b)["disc"])
        opt.zero_grad(set_to_none=True)
        ref.loss(b)[0].backward()
        opt.step()
    out = t.train_epoch(0)
    assert "aux.disc" in out and "loss" in out
    for name, p in t.model.named_parameters():
        torch.testing.assert_close(p, dict(ref.named_parameters())[name], rtol=1e-6, atol=1e-7, msg=name)


def test_checkpoint_keeps_the_auxiliary_optimizer_state(monkeypatch):
    t = _trainer(monkeypatch)
    t.train_epoch(0)
    state = t.state_dict()
    assert state["aux_optimizers"]["disc"]["state"]  # Adam's moments, after one epoch
    fresh = _trainer(monkeypatch)
    fresh.load_state_dict(state)
    a, b = t.aux_optimizers["disc"].state_dict(), fresh.aux_optimizers["disc"].state_dict()
    for k in a["state"]:
        torch.testing.assert_close(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"])


def _run(rank: int, world: int, init_file: str, out_dir: str) -> None:
    def body() -> None:
        t = _trainer(rank=rank, world=world)
        out = t.train_epoch(0)
        params = {n: p.detach().tolist() for n, p in t.model.named_parameters()}
        with open(os.path.join(out_dir, f"{rank}.json"), "w") as f:
            json.dump({"train": {k: v for k, v in out.items() if k != "seconds"}, "params": params}, f)

    as_rank(body, rank, world, init_file)


@pytest.mark.slow
def test_two_ranks_step_the_auxiliary_group_as_one_process(tmp_path, monkeypatch):
    data.load_dataset("synth-tiny")
    mp.spawn(_run, args=(2, str(tmp_path / "pg"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["params"] == ranks[1]["params"]  # the aux group is averaged, not left per rank
    one = _trainer(monkeypatch)
    out = one.train_epoch(0)
    assert ranks[0]["train"]["aux.disc"] == pytest.approx(out["aux.disc"], rel=1e-4)
    for name, p in one.model.named_parameters():
        torch.testing.assert_close(torch.tensor(ranks[0]["params"][name]), p.detach(), rtol=1e-4, atol=1e-5,
                                   msg=name)


def test_losses_of_groups_trained_in_start_epoch_are_logged():
    cfg = config.make_config(flags={"dataset": "synth-tiny", "variant": "diffmm"},
                             overrides=["embedding_dim=8", "max_epochs=1"])
    t = train.Trainer(cfg)
    out = t.train_epoch(0)
    names = {f"aux.denoiser.{m}" for m in t.ds.modalities}
    assert names <= set(out) and all(out[n] > 0 for n in names)  # DiffMM's denoisers, trained per epoch
    assert set(t.aux_optimizers) == {n.removeprefix("aux.") for n in names}
