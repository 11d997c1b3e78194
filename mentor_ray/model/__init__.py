"""Models: MENTOR (Eq. 1-24), its ablations, the baselines, and their losses and kernels."""

from __future__ import annotations

import torch

from mentor_ray.common.config import TrainConfig
from mentor_ray.model.base import Batch, Recommender
from mentor_ray.model.baselines import MFBPR, LightGCN, MostPop
from mentor_ray.model.mentor import Mentor

__all__ = ["Batch", "LightGCN", "MFBPR", "Mentor", "MostPop", "Recommender", "build_model"]


def build_model(cfg: TrainConfig, ds) -> Recommender:
    """The model of ``cfg.variant`` for dataset ``ds`` (graphs are attached by the trainer)."""
    kind = cfg.spec.model
    model = cfg.model_part()
    if kind == "mentor":
        return Mentor(model, ds.n_users, ds.n_items, ds.features, cfg.infonce_chunk, cfg.infonce_threads)
    if kind == "lightgcn":
        return LightGCN(model, ds.n_users, ds.n_items)
    if kind == "mf_bpr":
        return MFBPR(model, ds.n_users, ds.n_items)
    return MostPop(ds.n_users, ds.n_items, torch.from_numpy(ds.train.items))
