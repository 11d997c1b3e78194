"""LayerGCN in mentor_ray's harness: finite gradients when edge dropout isolates nodes, a gradient for every
parameter, ``n_layers=0`` refused, and 2-epoch training runs on ``synth-tiny`` (both kinds of dropout epoch;
finite losses, valid metrics, the same seed giving the same run)."""

from __future__ import annotations

import math

import pytest
import torch

from mentor_ray.common import config
from mentor_ray.common.errors import ConfigError
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model import Batch
from mentor_ray.model.layergcn import LayerGCN
from mentor_ray.training import trainer as train

TINY = ["embedding_dim=8", "batch_size=64", "eval_batch_size=16", "max_epochs=2"]


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset("synth-tiny")


def _model(ds, **settings):
    cfg = config.validate({"variant": "layergcn", "dataset": "synth-tiny", "embedding_dim": 8, **settings})
    torch.manual_seed(0)
    m = LayerGCN.build(cfg, ds)
    m.set_graphs(normalized_ui_adjacency_torch(ds), {})
    return m


def test_isolated_nodes_keep_gradients_finite(ds):
    """A heavy dropout leaves many nodes without an edge: their rows are 0 and their cosine weight 0."""
    m = _model(ds, dropout=0.95)
    m.start_epoch(0)
    users, items = m(m.graph("train"))
    isolated = (torch.cat([users, items]).abs().sum(1) == 0).sum()
    assert isolated > 0
    batch = Batch(*(torch.as_tensor(a[:64]) for a in (ds.train.users, ds.train.items, ds.train.items[::-1].copy())))
    total, terms = m.loss(batch)
    assert set(terms) == {"bpr", "reg"} and math.isfinite(float(total.detach()))
    assert float(total.detach()) == pytest.approx(sum(terms.values()), rel=1e-6)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_zero_layers_is_refused(ds):
    with pytest.raises(ConfigError, match="n_layers"):
        _model(ds, n_layers=0)


def _fit(ds, extra=()):
    cfg = config.make_config(flags={"variant": "layergcn", "dataset": "synth-tiny"}, overrides=[*TINY, *extra])
    t = train.Trainer(cfg, ds=ds)
    assert isinstance(t.model, LayerGCN)
    return t, t.fit()


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_two_epochs_on_synth_tiny_are_finite_and_repeatable(ds, dropout):
    t, a = _fit(ds, [f"dropout={dropout}"])
    assert a["epochs_run"] == 2
    for h in t.history:
        assert all(math.isfinite(v) for v in h["train"].values())
    for split in ("valid", "test"):
        assert all(0.0 <= v <= 1.0 for v in a[split].values())
    _, b = _fit(ds, [f"dropout={dropout}"])
    assert a["valid"] == b["valid"] and a["test"] == b["test"]
