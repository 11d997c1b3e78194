"""MENTOR (Xu et al., AAAI 2025) and the baselines of the leaderboards, in one file.

MENTOR, paper equation by equation (departures are listed in ``docs/paper_notes.md``):

- Layer 0. ID modality: user and item ID embeddings. Each feature modality m: the user's
  preference embedding ``P_m`` and the item's features through ``Linear(d_m, 4d) -> LeakyReLU ->
  Linear(4d, d)``. Rows are L2-normalised when ``normalize_input`` (the authors' code; the paper is
  silent).
- Eq. 1-3: ``L`` layers of ``E^(l) = A E^(l-1)`` with the symmetric user-item adjacency, summed over
  layers. All modalities (ID and features) and both perturbed views are stacked side by side, so
  one sparse matmul per layer serves them all: ``(N, d * (1 + 3|M|))``.
- Eq. 18-20: the two perturbed views of each feature modality add noise ``Δ`` after every layer.
- Eq. 6: each feature modality's items aggregate their frozen kNN neighbours (``item_layers`` hops,
  starting from the user-item output) and add the result: ``Ë_i_m = Ē_i_m + A_m``.
- Eq. 7: fusion ``Ë_f = [w_1 Ë_m1 || ... || w_|M| Ë_m|M|]`` with trainable weights initialised to
  ``1/|M|`` and ``w_|M| = 1 - sum of the others`` (for two modalities: ``[α Ë_v || (1-α) Ë_t]``, α = 0.5).
- Eq. 23: scores ``y_ui = Ë_f[u] . Ë_f[i]``; ID representations serve the alignment only.
- Eq. 8-24 losses: :mod:`mentor_ray.losses`.

Baselines: ``LightGCN`` (ID only, layer mean), ``MFBPR`` (dot product) and ``MostPop``.

Shapes: ``N = n_users + n_items`` nodes, users first; ``d = embedding_dim``; ``M`` feature modalities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from mentor_ray import losses
from mentor_ray.config import TrainConfig


@dataclass
class Batch:
    users: torch.Tensor  # (B,) long
    pos: torch.Tensor  # (B,) item ids
    neg: torch.Tensor  # (B,) item ids


@dataclass
class Reps:
    """One forward pass: final representations of every node."""

    modal: dict[str, torch.Tensor]  # m -> (N, d), Eq. 3 + Eq. 6
    ids: torch.Tensor  # (N, d) ID modality, Eq. 3
    fused: torch.Tensor  # (N, |M| d), Eq. 7
    layer0: dict[str, torch.Tensor]  # m -> (N, d) before normalisation (for the L2 term, Eq. 24)
    views: list[dict[str, torch.Tensor]] = field(default_factory=list)  # 2 perturbed views, m -> (N, d)


def _xavier(*shape: int) -> nn.Parameter:
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(*shape)))


def spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sparse (CSR) @ dense; differentiable in ``x``."""
    return torch.sparse.mm(adj, x)


class Recommender(nn.Module):
    """Interface used by the trainer: a loss on a batch, and user x item scores for ranking."""

    n_users: int
    n_items: int

    def set_graphs(self, ui_adj: torch.Tensor, item_adj: dict[str, torch.Tensor]) -> None:
        """Graphs are plain attributes, not buffers: DDP rejects sparse buffers (torch 2.2)."""
        self._graphs = {"ui": ui_adj, **{f"item.{m}": a for m, a in item_adj.items()}}

    def graphs_to(self, device: torch.device) -> None:
        self._graphs = {k: v.to(device) for k, v in self._graphs.items()}

    def graph(self, name: str) -> torch.Tensor:
        return self._graphs[name]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_users, D), (n_items, D) such that scores = users @ items.T."""
        raise NotImplementedError


class Mentor(Recommender):
    def __init__(self, cfg: TrainConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor]):
        super().__init__()
        if not features:
            raise ValueError("MENTOR needs at least one feature modality")
        self.cfg, self.spec = cfg, cfg.spec
        self.n_users, self.n_items = n_users, n_items
        self.modalities = list(features)
        d, n_mod = cfg.embedding_dim, len(features)
        self.user_id = _xavier(n_users, d)
        self.item_id = _xavier(n_items, d)
        self.user_pref = nn.ParameterDict({m: _xavier(n_users, d) for m in self.modalities})
        self.proj = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(f.shape[1], 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))
                for m, f in features.items()
            }
        )
        for m, f in features.items():
            self.register_buffer(f"feat_{m}", f.float(), persistent=False)  # (n_items, d_m), frozen input
        self.fusion = nn.Parameter(torch.full((n_mod - 1,), 1.0 / n_mod))  # Eq. 7 α
        self.predictor = nn.Linear(n_mod * d, n_mod * d)  # Eq. 17 W, b

    def fusion_weights(self) -> torch.Tensor:
        """(|M|,) = [α_1, ..., 1 - sum α]; two modalities: [α, 1 - α] (Eq. 7)."""
        return torch.cat([self.fusion, 1.0 - self.fusion.sum().reshape(1)])

    def forward(self, perturb: bool = False) -> Reps:
        d, n_u = self.cfg.embedding_dim, self.n_users
        layer0 = {
            m: torch.cat([self.user_pref[m], self.proj[m](getattr(self, f"feat_{m}"))]) for m in self.modalities
        }  # m -> (N, d)
        blocks = [torch.cat([self.user_id, self.item_id])] + [layer0[m] for m in self.modalities]
        if self.cfg.normalize_input:
            blocks = [F.normalize(b, dim=1) for b in blocks]
        n_clean = len(blocks)
        if perturb:
            blocks = blocks + blocks[1:] + blocks[1:]  # view 1, view 2 start from the same layer 0
        h = torch.cat(blocks, dim=1)  # (N, d * (1 + |M| [+ 2|M|]))
        total = h
        for _ in range(self.cfg.n_layers):  # Eq. 1-3 (and Eq. 18-20 on the view columns)
            h = spmm(self.graph("ui"), h)
            if perturb:
                h = torch.cat([h[:, : n_clean * d], self._perturb(h[:, n_clean * d :])], dim=1)
            total = total + h
        parts = total.split(d, dim=1)
        ids, modal = parts[0], dict(zip(self.modalities, parts[1:n_clean]))
        modal = {m: self._item_graph(m, e) for m, e in modal.items()}  # Eq. 6
        w = self.fusion_weights()
        fused = torch.cat([w[k] * modal[m] for k, m in enumerate(self.modalities)], dim=1)  # Eq. 7
        reps = Reps(modal=modal, ids=ids, fused=fused, layer0=layer0)
        if perturb:
            n_m = len(self.modalities)
            v = parts[n_clean:]
            reps.views = [dict(zip(self.modalities, v[:n_m])), dict(zip(self.modalities, v[n_m:]))]
        return reps

    def _perturb(self, h: torch.Tensor) -> torch.Tensor:
        """Eq. 18-19: add Δ to every node of every view. ``uniform``: Δ ~ eps * U(0,1)^d per node
        (the paper); ``simgcl``: eps * sign(h) * normalize(U(0,1)^d) (the authors' code)."""
        eps = self.cfg.perturb_eps
        noise = torch.rand_like(h)
        if self.cfg.perturb_noise == "uniform":
            return h + eps * noise
        d = self.cfg.embedding_dim
        noise = F.normalize(noise.view(h.shape[0], -1, d), dim=2).view_as(h)
        return h + eps * torch.sign(h) * noise

    def _item_graph(self, m: str, e: torch.Tensor) -> torch.Tensor:
        """Eq. 6: items add their kNN aggregation (``item_layers`` hops from the user-item output)."""
        if self.cfg.item_layers == 0:
            return e
        users, items = e[: self.n_users], e[self.n_users :]
        a = items
        for _ in range(self.cfg.item_layers):
            a = spmm(self.graph(f"item.{m}"), a)
        return torch.cat([users, items + a])

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, spec = self.cfg, self.spec
        reps = self(perturb=spec.graph_perturbation)
        n_u = self.n_users
        f = reps.fused
        u, p, n = f[batch.users], f[n_u + batch.pos], f[n_u + batch.neg]
        terms = {"bpr": losses.bpr_loss((u * p).sum(1), (u * n).sum(1))}  # Eq. 23
        rows = [reps.layer0[m][idx] for m in self.modalities for idx in (batch.users, n_u + batch.pos, n_u + batch.neg)]
        terms["reg"] = cfg.reg_weight * losses.l2_reg(rows, len(batch.users))  # Eq. 24
        if spec.align_levels:
            align, _ = losses.alignment_loss(reps.modal, f, reps.ids, spec.align_levels, cfg.align_stats)
            terms["align"] = cfg.lambda_align * align  # Eq. 9-16
        if spec.feature_masking:
            terms["mask_f"] = cfg.lambda_f * losses.feature_masking_loss(
                f[:n_u], f[n_u:], self.predictor, cfg.dropout
            )  # Eq. 17
        if spec.graph_perturbation:
            terms["perturb_g"] = cfg.lambda_g * self._perturbation_loss(reps, batch)  # Eq. 21
        total = sum(terms.values())
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def _perturbation_loss(self, reps: Reps, batch: Batch) -> torch.Tensor:
        """Eq. 21 summed over feature modalities: InfoNCE of users and of items between the views."""
        cfg, n_u = self.cfg, self.n_users
        if cfg.infonce_scope == "batch":
            users = torch.unique(batch.users)
            items = n_u + torch.unique(torch.cat([batch.pos, batch.neg]))
            nce = lambda a, b: losses.info_nce(a, b, cfg.tau)  # noqa: E731
        else:
            users, items = slice(0, n_u), slice(n_u, None)
            nce = lambda a, b: losses.info_nce_chunked(a, b, cfg.tau, cfg.infonce_chunk)  # noqa: E731
        v1, v2 = reps.views
        return sum(nce(v1[m][users], v2[m][users]) + nce(v1[m][items], v2[m][items]) for m in self.modalities)

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        f = self(perturb=False).fused
        return f[: self.n_users], f[self.n_users :]


class LightGCN(Recommender):
    """He et al. 2020: ID embeddings, L propagation layers, mean over layers 0..L, BPR + L2."""

    def __init__(self, cfg: TrainConfig, n_users: int, n_items: int):
        super().__init__()
        self.cfg, self.n_users, self.n_items = cfg, n_users, n_items
        self.emb = _xavier(n_users + n_items, cfg.embedding_dim)

    def forward(self) -> torch.Tensor:
        h, total = self.emb, self.emb
        for _ in range(self.cfg.n_layers):
            h = spmm(self.graph("ui"), h)
            total = total + h
        return total / (self.cfg.n_layers + 1)  # (N, d)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return _bpr_with_reg(self(), self.emb, batch, self.n_users, self.cfg.reg_weight)

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        e = self()
        return e[: self.n_users], e[self.n_users :]


class MFBPR(Recommender):
    """Rendle et al. 2012: matrix factorisation trained with BPR + L2."""

    def __init__(self, cfg: TrainConfig, n_users: int, n_items: int):
        super().__init__()
        self.cfg, self.n_users, self.n_items = cfg, n_users, n_items
        self.emb = _xavier(n_users + n_items, cfg.embedding_dim)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        return _bpr_with_reg(self.emb, self.emb, batch, self.n_users, self.cfg.reg_weight)

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.emb[: self.n_users], self.emb[self.n_users :]


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

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(self.n_users, 1, device=self.score.device), self.score[:, None]


def build_model(cfg: TrainConfig, ds) -> Recommender:
    """The model of ``cfg.variant`` for dataset ``ds`` (graphs are attached by the trainer)."""
    kind = cfg.spec.model
    if kind == "mentor":
        return Mentor(cfg, ds.n_users, ds.n_items, ds.features)
    if kind == "lightgcn":
        return LightGCN(cfg, ds.n_users, ds.n_items)
    if kind == "mf_bpr":
        return MFBPR(cfg, ds.n_users, ds.n_items)
    return MostPop(ds.n_users, ds.n_items, torch.from_numpy(ds.train.items))
