"""FREEDOM (Zhou and Shen, ACM MM 2023): a frozen multimodal item graph and a degree-pruned user-item graph.

Follows MMRec's ``src/models/freedom.py`` (the implementation the MENTOR paper ran its baselines with);
``docs/baselines/freedom.md`` lists each departure with the MMRec line it concerns, and
``tests/test_parity_freedom.py`` checks losses, gradients and scores against MMRec's own class.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import losses, ops
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier


class Freedom(Recommender):
    r"""FREEDOM: freezing the item-item graph and denoising the user-item graph.

    From `"A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal Recommendation"
    <https://arxiv.org/abs/2211.06924>`_ (Zhou and Shen, ACM MM 2023), as MMRec implements it. The item
    ID embeddings :math:`E_i` propagate over a frozen item-item graph :math:`S`, a weighted sum of the
    modalities' kNN graphs built once from the raw features; users and items (ID embeddings only)
    propagate LightGCN-style over the user-item graph, which for training is re-sampled each epoch by
    degree-sensitive edge pruning (:math:`\tilde{A}`) and for scoring is the full graph :math:`A`:

    .. math::
        S = \sum_m w_m S_m, \qquad H = S^{h} E_i, \qquad
        [\bar{E}_u; \bar{E}_i] = \frac{1}{L+1} \sum_{l=0}^{L} \tilde{A}^l [E_u; E_i], \qquad
        y_{ui} = \bar{e}_u^\top (\bar{e}_i + h_i)

    with :math:`S_m` modality :math:`m`'s kNN graph (row :math:`i`: item :math:`i`'s top-k cosine
    neighbours, itself included, each 1/k), :math:`h` = ``item_layers`` and :math:`L` = ``n_layers``.
    Pruning keeps :math:`\lfloor |E| (1 - p) \rfloor` training edges, drawn without replacement with
    probability proportional to :math:`1/\sqrt{d_u d_i}` (low-degree edges are kept more often), and
    re-normalises the kept edges symmetrically by their own degrees. The objective is

    .. math::
        \mathcal{L} = \mathrm{BPR}(\bar{e}_u, \bar{e}_i + h_i)
        + \lambda \sum_m \mathrm{BPR}(\bar{e}_u, W_m x_{i,m} + b_m)

    where :math:`x_{i,m}` is item :math:`i`'s feature vector of modality :math:`m` (a trainable copy of
    the features) and BPR is the batch mean of :math:`-\log\sigma(y_{up} - y_{un})`. :meth:`loss`
    returns its terms, each already weighted: ``bpr`` (the first) and ``modal_bpr`` (the second, with
    :math:`\lambda`).

    Args:
        cfg (ModelConfig): the model's settings. The model reads:

            - ``embedding_dim``: :math:`d`, the ID embeddings and the feature projections' width.
            - ``n_layers``: :math:`L`, user-item graph layers (MMRec ``n_ui_layers``).
            - ``item_layers``: :math:`h`, item-item graph layers (MMRec ``n_mm_layers``).
            - ``dropout``: :math:`p`, the share of training edges pruned each epoch (0: none).
            - ``modal_bpr_weight``: :math:`\lambda` (MMRec ``reg_weight``).
            - ``mm_image_weight``: :math:`w_1`, the first modality's share of :math:`S`.
            - ``knn_k``, ``knn_norm`` are applied by the graph stage, which supplies the :math:`S_m`.
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality -> ``(n_items, d_m)`` item features, at least one,
            in order; each becomes a trainable table and a ``Linear(d_m, d)``.
        train_users, train_items: the training interactions (the edges that pruning samples from).

    Graphs: :meth:`set_graphs` gives the user-item graph :math:`A` and the :math:`S_m`; :meth:`start_epoch`
    draws :math:`\tilde{A}` from torch's global generator (it must be called before :meth:`loss`).

    M modalities: MMRec hard-codes two, ``S = w S_image + (1 - w) S_text`` with ``w = mm_image_weight``,
    and one modality's graph alone when only one is present. Here the first modality (in the dataset's
    order) gets :math:`w_1` = ``mm_image_weight`` and the other :math:`M - 1` share :math:`1 - w_1`
    equally; one modality gets weight 1. For M = 2 in the order (image, text) this is MMRec's graph.
    ``modal_bpr`` sums one BPR term per modality (MMRec: text + image).

    Departures from MMRec:

    - The kNN graphs come from the graph stage (``knn_norm=row``: 1/k per edge). MMRec normalises them
      as ``(r_i + 1e-7)^-1/2 (r_j + 1e-7)^-1/2`` with ``r`` the row sums, all equal to k: the same
      values. Ties at the k-th similarity go to the lower item index (MMRec: ``topk``'s order).
      MMRec caches the fused graph in ``mm_adj_freedomdsp_{k}_{w}.pt`` and reloads it; nothing is cached here
      beyond the graph stage's own cache.
    - The feature projection is applied to the batch's items only (MMRec projects every item and
      indexes): the same values and gradients.
    - ``dropout`` keeps at least one edge (MMRec's ``torch.multinomial`` fails on zero samples).

    MMRec's choices, followed here: the feature-side BPR pairs the
    propagated user embeddings with the projected features; there is no L2 term (MMRec's ``reg_weight``
    weights the modality BPR terms); the raw feature tables are trained (``freeze=False``); the user-item
    layers are averaged including layer 0; MMRec reads ``lambda_coeff`` and ``degree_ratio`` but never
    uses them, so they have no setting here.
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor],
                 train_users, train_items):
        super().__init__()
        if not features:
            raise ValueError("FREEDOM needs at least one feature modality")
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        self.modalities = list(features)
        d = self.cfg.embedding_dim
        self.user_embedding = xavier(n_users, d)
        self.item_embedding = xavier(n_items, d)
        # Positional (modality names may hold '.', which parameter names may not).
        self.feature_tables = nn.ParameterList(nn.Parameter(f.detach().float().clone()) for f in features.values())
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], d) for f in features.values())
        ops.register_edges(self, train_users, train_items)

    @classmethod
    def build(cls, cfg, ds) -> "Freedom":
        return cls(cfg, ds.n_users, ds.n_items, ds.features, ds.train.users, ds.train.items)

    def modality_weights(self) -> list[float]:
        """Each modality's share of the frozen item graph S (see the class docstring)."""
        m = len(self.modalities)
        if m == 1:
            return [1.0]
        w = float(self.cfg.mm_image_weight)
        return [w] + [(1.0 - w) / (m - 1)] * (m - 1)

    def set_graphs(self, ui_adj: torch.Tensor, item_adj: dict[str, torch.Tensor]) -> None:
        """As the base class, plus ``graph("mm")``: S, the weighted sum of the kNN graphs (frozen)."""
        super().set_graphs(ui_adj, item_adj)
        parts = [item_adj[m].to_sparse_coo() for m in self.modalities]
        idx = torch.cat([p.indices() for p in parts], 1)
        val = torch.cat([w * p.values() for w, p in zip(self.modality_weights(), parts)])
        s = torch.sparse_coo_tensor(idx, val, parts[0].shape, check_invariants=False).coalesce()
        self._graphs["mm"] = s.to_sparse_csr()
        self._graphs["mm.T"] = s.t().coalesce().to_sparse_csr()
        self._graphs.pop("train", None)  # a pruned graph of earlier graphs is stale

    def start_epoch(self, epoch: int) -> None:
        """Degree-sensitive edge pruning (MMRec ``pre_epoch_processing``): this epoch's training graph."""
        if self.cfg.dropout <= 0:
            self._graphs["train"] = self.graph("ui")
            return
        self.prune(torch.multinomial(self.edge_weight, ops.n_kept(self.edge_weight.numel(), self.cfg.dropout)))

    def prune(self, keep: torch.Tensor) -> None:
        """The training graph of the kept edges ``keep`` (indices into the training interactions), each
        ``(d_u + 1e-7)^-1/2 (d_i + 1e-7)^-1/2`` by the kept edges' own degrees, both directions."""
        self._graphs["train"] = ops.pruned_graph(self.edge_users[keep], self.edge_items[keep], self.n_users,
                                                  self.n_items)

    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(users (n_users, d), items (n_items, d)) over the user-item graph ``adj``."""
        h = self.item_embedding
        for _ in range(self.cfg.item_layers):
            h = ops.spmm(self.graph("mm"), h, self.graph("mm.T"))
        x = torch.cat([self.user_embedding, self.item_embedding])
        layers = [x]
        for _ in range(self.cfg.n_layers):
            x = ops.spmm(adj, x, adj)  # symmetric: its own transpose
            layers.append(x)
        e = torch.stack(layers, dim=1).mean(dim=1)  # (N, d), MMRec's mean over layers 0..L
        return e[: self.n_users], e[self.n_users :] + h

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        terms = self.loss_terms(batch)
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    def loss_terms(self, batch: Batch, per_modality: bool = False) -> dict[str, torch.Tensor]:
        """The weighted terms (``bpr``, ``modal_bpr``); with ``per_modality``, also each modality's
        unweighted BPR as ``bpr.<m>`` (for checks; not part of the loss)."""
        if "train" not in getattr(self, "_graphs", {}):
            raise RuntimeError("FREEDOM: call start_epoch() before loss(); it samples the epoch's pruned graph")
        users, items = self(self.graph("train"))
        u = users[batch.users]
        terms = {"bpr": losses.bpr_loss((u * items[batch.pos]).sum(1), (u * items[batch.neg]).sum(1))}
        modal = {}
        for m, table, proj in zip(self.modalities, self.feature_tables, self.projections):
            pos, neg = proj(table[batch.pos]), proj(table[batch.neg])
            modal[m] = losses.bpr_loss((u * pos).sum(1), (u * neg).sum(1))
        # Always in the graph, even at weight 0: DDP needs a gradient for every parameter.
        terms["modal_bpr"] = self.cfg.modal_bpr_weight * sum(modal.values())
        if per_modality:
            terms.update({f"bpr.{m}": v for m, v in modal.items()})
        return terms

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self(self.graph("ui"))  # scored on the full graph, as MMRec's full_sort_predict
