"""What every model shares: the batch of triplets, the interface the trainer calls, and the frozen config."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from mentor_ray.common.config import ModelConfig, TrainConfig
from mentor_ray.model import ops


@dataclass
class Batch:
    users: torch.Tensor  # (B,) long
    pos: torch.Tensor  # (B,) item ids
    neg: torch.Tensor  # (B,) item ids
    # Ranks sharing the global batch (DDP: each holds a part). A loss term that is a SUM over the batch (as
    # some of MMRec's are) is multiplied by it: DDP averages the ranks' gradients and the trainer their terms,
    # so the global batch's sum comes out, as in one process. A term that is a mean needs nothing.
    world: int = 1
    # This rank's index among them (0 in one process). A model that splits full-graph work over the ranks by
    # rows (MENTOR's all-scope InfoNCE: each rank its share of the users and items) reads it.
    rank: int = 0

    def global_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` summed over the ranks sharing the global batch, differentiably (``x`` itself in one process).

        For a term that is neither a mean nor a sum of per-row parts, such as a norm of the whole batch (MMRec's
        EmbLoss): computed from global sums, every rank holds the global batch's value, and its gradient (the
        all-reduce's backward sums the ranks' upstream gradients; DDP then averages) is the global one."""
        if self.world == 1:
            return x
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(x)

    def global_size(self) -> int:
        """The global batch's size (this rank's part in one process)."""
        return int(self.global_sum(torch.tensor(float(len(self.users)), device=self.users.device)).item())


class Recommender(nn.Module):
    """Interface used by the trainer: a loss on a batch, and user x item scores for ranking."""

    n_users: int
    n_items: int
    # True for a model some of whose parameters get no gradient in some steps (LATTICE's item-graph side on
    # the batches after the first of an epoch): DDP then looks for them (find_unused_parameters), and a
    # parameter no rank used keeps no gradient, so Adam leaves it alone, as in a single process.
    ddp_find_unused: bool = False

    @classmethod
    def build(cls, cfg: TrainConfig, ds) -> "Recommender":
        """The model of ``cfg`` for dataset ``ds`` (a :class:`~mentor_ray.datasets.dataset.Dataset`): what the
        trainer calls. A model that needs more than the sizes (features, training interactions) overrides it."""
        return cls(cfg, ds.n_users, ds.n_items)

    def start_epoch(self, epoch: int) -> dict[str, float] | None:
        """Called by the trainer before each training epoch, after it seeds torch from ``(seed, epoch)`` (the
        same on every rank): per-epoch sampling such as edge dropout or a rebuilt item graph goes here. A model
        that trains auxiliary groups here returns their mean losses (name -> value, the same on every rank),
        logged as ``aux.<name>``."""
        return None

    def set_graphs(self, ui_adj: torch.Tensor, item_adj: dict[str, torch.Tensor]) -> None:
        """Graphs are plain attributes, not buffers: DDP rejects sparse buffers (torch 2.2).

        ``graph("ui")``: the (N, N) symmetrically normalised user-item adjacency, users first;
        ``graph("knn.<m>")``: modality m's (n_items, n_items) kNN adjacency, normalised by ``knn_norm``;
        ``graph("item.<m>")``: the same padded to (N, N) with empty user rows. Each gets its transpose, built
        once, for the backward of :func:`~mentor_ray.model.ops.spmm`; the user-item adjacency is symmetric and
        is its own transpose."""
        graphs = {"ui": ui_adj, "ui.T": ui_adj}
        for m, a in item_adj.items():
            graphs[f"knn.{m}"] = a  # (n_items, n_items), as built
            padded = ops.pad_rows_cols(a, ui_adj.shape[0] - a.shape[0])  # (N, N): items after users
            graphs[f"item.{m}"] = padded
            graphs[f"item.{m}.T"] = padded.t().to_sparse_csr()
        self._graphs = {**getattr(self, "_graphs", {}), **graphs}  # beside those the model built itself

    def graphs_to(self, device: torch.device) -> None:
        """Move the graphs (the trainer's, or those a model built itself into ``_graphs``) to ``device``; the
        trainer calls it for every model."""
        self._graphs = {k: v.to(device) for k, v in getattr(self, "_graphs", {}).items()}

    def graph(self, name: str) -> torch.Tensor:
        return self._graphs[name]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    @torch.no_grad()
    def modality_item_embeddings(self) -> dict[str, torch.Tensor]:
        """Name -> (n_items, d) item representations per modality, ID included, in one space per modality
        (Fig. 4's t-SNE of the paper); {} for a model without such a split. The trainer keeps a fixed
        sample of them at the best epoch of final and ablation runs."""
        return {}

    # --- auxiliary objectives: parameters trained by their own optimiser (MMSSL's discriminator, DiffMM's
    # denoisers). The trainer keeps them out of the main optimiser and out of DDP's gradient averaging,
    # checkpoints their optimisers' state, and steps them where the model says.

    def aux_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Name -> the optimiser of one auxiliary parameter group, built by the model (its own betas, lr,
        weight decay); its parameters are trained only by :meth:`aux_losses` or inside :meth:`start_epoch`.
        The same objects on every call: the trainer checkpoints their state under these names."""
        return {}

    def aux_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per batch, BEFORE the main :meth:`loss`: name (a key of :meth:`aux_optimizers`) -> the scalar
        loss that group's optimiser steps on (MMSSL's discriminator loss). The trainer zeroes that group's
        gradients, back-propagates, averages the group's gradients over the DDP ranks (each holds its part of
        the batch, so a loss that is a batch mean comes out as the global batch's) and steps. A model that
        trains its auxiliary groups once per epoch (DiffMM's denoisers) does it in :meth:`start_epoch`,
        with :func:`aux_step`, and returns nothing here."""
        return {}

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_users, D), (n_items, D) such that scores = users @ items.T."""
        raise NotImplementedError


def aux_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, world: int = 1) -> float:
    """One step of an auxiliary optimiser on ``loss``: zero its group's gradients, back-propagate, average the
    group's gradients over ``world`` DDP ranks (``torch.distributed`` initialised), step. Gradients that
    ``loss`` leaves on other parameters (the main model's) are not the caller's to keep: the trainer zeroes
    the main optimiser's before its own step. Returns the loss's value."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    if world > 1:
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce for the group
        dist.all_reduce(flat)
        flat /= world
        at = 0
        for p, g in zip(params, grads):
            p.grad = flat[at:at + g.numel()].view_as(p).clone()
            at += g.numel()
    optimizer.step()
    return float(loss.detach())


def xavier(*shape: int) -> nn.Parameter:
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(*shape)))


def as_model_config(cfg: ModelConfig) -> ModelConfig:
    """A frozen :class:`ModelConfig`: a run's full config is cut down to the model's keys."""
    return cfg.model_part() if isinstance(cfg, TrainConfig) else cfg
