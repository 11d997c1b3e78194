"""VBPR in mentor_ray's harness: any number of modalities and a gradient for every parameter. Its 2-epoch
runs on ``synth-tiny`` are in ``test_models_common.py``."""

from __future__ import annotations

import pytest
import torch

from mentor_ray.common import config
from mentor_ray.model.vbpr import VBPR
from tests.model_checks import check_backward, checked_loss, train_batch, with_modalities


@pytest.mark.parametrize("n_mod", [1, 2, 3])
def test_any_number_of_modalities_every_parameter_gets_a_gradient(ds, n_mod):
    d = with_modalities(ds, n_mod)
    torch.manual_seed(0)
    m = VBPR.build(config.validate({"variant": "vbpr", "dataset": "synth-tiny", "embedding_dim": 8}), d)
    # reversed: for (image, text) MMRec's torch.cat((t_feat, v_feat))
    assert torch.equal(m.item_raw_features, torch.cat(list(d.features.values())[::-1], 1))
    total, _ = checked_loss(m, train_batch(d), {"bpr", "reg"})
    check_backward(m, total, d, dim=16)
