"""The baselines of the leaderboards: LightGCN (He et al. 2020), MF-BPR and MostPop."""

from __future__ import annotations

import torch

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import losses, ops
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier


class LightGCN(Recommender):
    """He et al. 2020: ID embeddings, L propagation layers, mean over layers 0..L, BPR + L2."""

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int):
        super().__init__()
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        self.emb = xavier(n_users + n_items, cfg.embedding_dim)

    def forward(self) -> torch.Tensor:
        h, total = self.emb, self.emb
        for _ in range(self.cfg.n_layers):
            h = ops.spmm(self.graph("ui"), h, self.graph("ui.T"))
            total = total + h
        return total / (self.cfg.n_layers + 1)  # (N, d)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return _bpr_with_reg(self(), self.emb, batch, self.n_users, self.cfg.reg_weight)

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        e = self()
        return e[: self.n_users], e[self.n_users :]


class MFBPR(LightGCN):
    """Rendle et al. 2012: matrix factorisation trained with BPR + L2, i.e. LightGCN without layers."""

    def forward(self) -> torch.Tensor:
        return self.emb  # (N, d)


def _bpr_with_reg(e: torch.Tensor, ego: torch.Tensor, batch: Batch, n_u: int, reg: float):
    u, p, n = e[batch.users], e[n_u + batch.pos], e[n_u + batch.neg]
    terms = {"bpr": losses.bpr_loss((u * p).sum(1), (u * n).sum(1))}
    rows = [ego[batch.users], ego[n_u + batch.pos], ego[n_u + batch.neg]]
    terms["reg"] = reg * losses.l2_reg(rows, len(batch.users))
    return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}


class MostPop(Recommender):
    """Training popularity; ties broken by the lower item id. Nothing to train."""

    def __init__(self, n_users: int, n_items: int, train_items: torch.Tensor):
        super().__init__()
        self.n_users, self.n_items = n_users, n_items
        counts = torch.bincount(train_items, minlength=n_items)
        order = sorted(range(n_items), key=lambda i: (-int(counts[i]), i))
        score = torch.empty(n_items)
        score[torch.tensor(order)] = torch.arange(n_items, 0, -1, dtype=torch.float32)  # exact, distinct
        self.register_buffer("score", score, persistent=False)

    @classmethod
    def build(cls, cfg, ds) -> "MostPop":
        return cls(ds.n_users, ds.n_items, torch.from_numpy(ds.train.items))

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(self.n_users, 1, device=self.score.device), self.score[:, None]
