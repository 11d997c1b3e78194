"""MMGCN in mentor_ray's harness: any number of modalities, a gradient for every trained parameter, and its
graph. Its 2-epoch runs on ``synth-tiny`` are in ``test_models_common.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mentor_ray.common import config
from mentor_ray.model.mmgcn import MMGCN, mean_adjacency
from tests.model_checks import check_backward, checked_loss, train_batch, with_modalities


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities_every_parameter_gets_a_gradient(ds, n_mod):
    d = with_modalities(ds, n_mod)
    torch.manual_seed(0)
    m = MMGCN.build(config.validate({"variant": "mmgcn", "dataset": "synth-tiny", "embedding_dim": 8}), d)
    assert list(m.gcn) == list(d.features)
    first, *rest = m.gcn.values()  # the first modality plays MMRec's v_gcn: projected to 256 first
    assert first.mlp.out_features == 256 and all(g.mlp is None for g in rest)
    # MMRec's ID embeddings and preferences are never trained: buffers, saved with the model
    frozen = {"id_embedding", *(f"gcn.{k}.preference" for k in d.features)}
    assert frozen <= set(m.state_dict()) and not frozen & set(dict(m.named_parameters()))
    total, _ = checked_loss(m, train_batch(d), {"bpr", "reg"})
    check_backward(m, total, d)


def test_mean_adjacency_is_d_inverse_a_with_empty_rows_for_isolated_nodes():
    users, items = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])  # item 2 isolated; (1, 1) twice
    a = torch.zeros(5, 5, dtype=torch.float64)
    for u, i in zip(users, items):
        a[u, 2 + i] += 1
        a[2 + i, u] += 1
    deg = a.sum(1, keepdim=True)
    expected = torch.where(deg > 0, a / deg.clamp_min(1), 0.0)  # PyG's mean over repeated edges
    torch.testing.assert_close(mean_adjacency(users, items, 2, 3).to_dense().double(), expected)
