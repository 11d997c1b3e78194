"""VBPR in mentor_ray's harness: any number of modalities, a gradient for every parameter, and 2-epoch
training runs on ``synth-tiny`` (finite losses, valid metrics, the same seed giving the same run)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mentor_ray.common import config
from mentor_ray.datasets import dataset as data
from mentor_ray.model import Batch
from mentor_ray.model.vbpr import VBPR
from mentor_ray.training import trainer as train

TINY = ["embedding_dim=8", "batch_size=64", "eval_batch_size=16", "max_epochs=2"]


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset("synth-tiny")


def _with_modalities(ds, n: int):
    """synth-tiny with ``n`` modalities: its own, cut down or extended by a random third."""
    feats = dict(ds.features)
    g = torch.Generator().manual_seed(0)
    while len(feats) < n:
        feats[f"extra{len(feats)}"] = torch.randn(ds.n_items, 7, generator=g)
    return dataclasses.replace(ds, features=dict(list(feats.items())[:n]))


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities_every_parameter_gets_a_gradient(ds, n_mod):
    d = _with_modalities(ds, n_mod)
    torch.manual_seed(0)
    m = VBPR.build(config.validate({"variant": "vbpr", "dataset": "synth-tiny", "embedding_dim": 8}), d)
    # reversed: for (image, text) MMRec's torch.cat((t_feat, v_feat))
    assert torch.equal(m.item_raw_features, torch.cat(list(d.features.values())[::-1], 1))
    batch = Batch(*(torch.as_tensor(a[:32]) for a in (d.train.users, d.train.items, d.train.items[::-1].copy())))
    total, terms = m.loss(batch)
    assert set(terms) == {"bpr", "reg"} and math.isfinite(float(total.detach()))
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())  # DDP needs every one
    u, i = m.user_item_embeddings()
    assert u.shape == (d.n_users, 16) and i.shape == (d.n_items, 16)


def _fit(ds, extra=()):
    cfg = config.make_config(flags={"variant": "vbpr", "dataset": "synth-tiny"}, overrides=[*TINY, *extra])
    t = train.Trainer(cfg, ds=ds)
    assert isinstance(t.model, VBPR)
    return t, t.fit()


def test_two_epochs_on_synth_tiny_are_finite_and_repeatable(ds):
    t, a = _fit(ds)
    assert a["epochs_run"] == 2
    for h in t.history:
        assert all(math.isfinite(v) for v in h["train"].values())
    for split in ("valid", "test"):
        assert all(0.0 <= v <= 1.0 for v in a[split].values())
    _, b = _fit(ds)
    assert a["valid"] == b["valid"] and a["test"] == b["test"]


@pytest.mark.parametrize("n_mod", [1, 3])
def test_trains_with_one_and_three_modalities(ds, n_mod):
    t, s = _fit(_with_modalities(ds, n_mod), ["max_epochs=1"])
    assert all(math.isfinite(v) for v in t.history[0]["train"].values())
    assert all(0.0 <= v <= 1.0 for v in s["valid"].values())
