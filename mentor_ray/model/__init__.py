"""Models: MENTOR (Eq. 1-24), its ablations, the baselines, and their losses and kernels.

Which class implements a variant is the model registry's business (:mod:`mentor_ray.common.registry`):
:func:`build_model` asks it, so adding a model needs no change here.
"""

from __future__ import annotations

from mentor_ray.common.config import TrainConfig
from mentor_ray.model.base import Batch, Recommender
from mentor_ray.model.baselines import MFBPR, LightGCN, MostPop
from mentor_ray.model.mentor import Mentor

__all__ = ["Batch", "LightGCN", "MFBPR", "Mentor", "MostPop", "Recommender", "build_model"]


def build_model(cfg: TrainConfig, ds) -> Recommender:
    """The model of ``cfg.variant`` for dataset ``ds`` (graphs are attached by the trainer)."""
    return cfg.entry.load().build(cfg, ds)
