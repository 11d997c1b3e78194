"""LayerGCN in mentor_ray's harness: finite gradients when edge dropout isolates nodes, a gradient for every
parameter, and ``n_layers=0`` refused. Its 2-epoch runs on ``synth-tiny`` (both kinds of dropout epoch) are
in ``test_models_common.py``."""

from __future__ import annotations

import pytest
import torch

from mentor_ray.common import config
from mentor_ray.common.errors import ConfigError
from mentor_ray.datasets.graphs import normalized_ui_adjacency_torch
from mentor_ray.model.layergcn import LayerGCN
from tests.model_checks import checked_loss, train_batch


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
    total, _ = checked_loss(m, train_batch(ds, 64), {"bpr", "reg"})
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_zero_layers_is_refused(ds):
    with pytest.raises(ConfigError, match="n_layers"):
        _model(ds, n_layers=0)
