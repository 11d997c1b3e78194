"""MMGCN (Wei et al., ACM MM 2019) as MMRec implements it (``src/models/mmgcn.py``), without torch_geometric:
the mean aggregation of its ``MessagePassing`` layers is one sparse matmul with a row-normalised adjacency."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import losses, ops
from mentor_ray.model.base import Batch, Recommender, as_model_config

N_LAYERS = 3  # MMRec's GCN.forward runs three layers whatever its config's n_layers says
LATENT_DIM = 256  # MMRec's dim_latent of the first modality's GCN (its v_gcn)


def mean_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    r"""(N, N) CSR :math:`D^{-1} A` of the user-item graph, users first: row :math:`v` averages
    :math:`v`'s neighbours (PyG's ``aggr='mean'`` over MMRec's edges, both directions, no self loops); a
    node without neighbours gets a zero row (PyG: 0). Repeated pairs count as often as they occur, as in PyG."""
    u = torch.as_tensor(users, dtype=torch.long)
    i = torch.as_tensor(items, dtype=torch.long) + n_users
    n = n_users + n_items
    rows, cols = torch.cat([u, i]), torch.cat([i, u])
    deg = torch.bincount(rows, minlength=n).float()
    adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), 1.0 / deg[rows], (n, n), check_invariants=False)
    return adj.coalesce().to_sparse_csr()  # ids are the dataset's, checked against n_users, n_items on load


class _Layer(nn.Module):
    """One MMGCN layer (MMRec's ``conv_embed_l``, ``linear_layer_l``, ``g_layer_l``; concatenating combination)."""

    def __init__(self, d_in: int, d: int, xavier_combine: bool):
        super().__init__()
        # drawn in MMRec's order, so that one torch seed gives its weights
        self.conv = nn.Parameter(torch.empty(d_in, d_in))  # BaseModel.weight: PyG's uniform, then Xavier-normal
        nn.init.uniform_(self.conv, -1.0 / d_in**0.5, 1.0 / d_in**0.5)
        nn.init.xavier_normal_(self.conv)
        self.linear = nn.Linear(d_in, d)
        nn.init.xavier_normal_(self.linear.weight)
        self.combine = nn.Linear(d_in + d, d)
        if xavier_combine:  # MMRec re-initialises g_layer1 only; g_layer2, g_layer3 keep nn.Linear's default
            nn.init.xavier_normal_(self.combine.weight)

    def forward(self, x, id_emb, adj, adj_t):
        h = F.leaky_relu(ops.spmm(adj, x @ self.conv, adj_t))  # Eq. 1: mean of the neighbours' messages
        x_hat = F.leaky_relu(self.linear(x)) + id_emb  # Eq. 5 with the ID embedding
        return F.leaky_relu(self.combine(torch.cat([h, x_hat], 1)))  # Eq. 6, concatenation


class _ModalityGCN(nn.Module):
    """One modality's graph network (MMRec's ``GCN``): frozen user preferences next to the (projected) item
    features, L2-normalised, then :data:`N_LAYERS` layers."""

    def __init__(self, n_users: int, d_feat: int, d: int, latent_dim: int | None):
        super().__init__()
        d0 = latent_dim or d_feat
        # MMRec's preference is a plain tensor, never given to the optimiser: frozen at its random start.
        self.register_buffer("preference", nn.init.xavier_normal_(torch.rand(n_users, d0)))
        self.mlp = nn.Linear(d_feat, latent_dim) if latent_dim else None  # default init, as MMRec's MLP
        self.layers = nn.ModuleList([_Layer(d0, d, xavier_combine=True)]
                                    + [_Layer(d, d, xavier_combine=False) for _ in range(N_LAYERS - 1)])

    def forward(self, features, id_emb, adj, adj_t):
        items = self.mlp(features) if self.mlp is not None else features
        x = F.normalize(torch.cat([self.preference, items]))
        for layer in self.layers:
            x = layer(x, id_emb, adj, adj_t)
        return x


class MMGCN(Recommender):
    r"""MMGCN: one graph network per modality over the user-item graph, averaged.

    From `"MMGCN: Multi-modal Graph Convolution Network for Personalized Recommendation of Micro-video"
    <https://doi.org/10.1145/3343031.3351034>`_ (Wei et al., ACM MM 2019), in MMRec's version. Per modality
    :math:`m`, users start from a preference vector :math:`p_u^m` and items from their features
    :math:`f_i^m` (the first modality's projected to ``latent_dim``: :math:`W_0 f + b_0`); every row is
    L2-normalised and passes through three layers :math:`l = 1, 2, 3` over the user-item graph with the
    row-normalised adjacency :math:`P = D^{-1} A`:

    .. math::
        h^{(l)} = \phi\big(P\, x^{(l-1)} W_l\big), \qquad
        \hat{x}^{(l)} = \phi\big(L_l\, x^{(l-1)}\big) + e, \qquad
        x^{(l)} = \phi\big(G_l\, [h^{(l)} \,\|\, \hat{x}^{(l)}]\big)

    with :math:`\phi` the leaky ReLU (slope 0.01), :math:`L_l, G_l` affine maps, :math:`e` the ID
    embeddings (shared by the modalities). The representation is :math:`r = \frac{1}{M} \sum_m x_m^{(3)}`,
    :math:`y_{ui} = r_u^\top r_i`, and the objective over a batch :math:`\mathcal{B}` of triplets is

    .. math::
        \mathcal{L} = \frac{1}{|\mathcal{B}|} \sum_{(u,i,j)} -\log \sigma(y_{ui} - y_{uj})
        + \lambda \Big( \frac{1}{2 |\mathcal{B}| d} \sum_{(u,i,j)} \big(2 \|e_u\|^2 + \|e_i\|^2
        + \|e_j\|^2\big) + \frac{1}{n_U d_0} \|P^{m_1}\|_F^2 \Big)

    where :math:`P^{m_1}` are the first modality's user preferences, of width :math:`d_0`. :meth:`loss`
    returns ``bpr`` and ``reg`` (:math:`\lambda` applied).

    Args:
        cfg (ModelConfig): the model's settings; it reads ``embedding_dim`` (:math:`d`) and ``reg_weight``
            (:math:`\lambda`).
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality -> ``(n_items, d_m)`` raw item features (at least one),
            in the dataset's order. The first plays MMRec's ``v_feat`` (projected to ``latent_dim`` first,
            and its preferences regularised), every other one MMRec's ``t_feat`` (raw); for the Amazon sets'
            ``(image, text)`` this is MMRec exactly.
        train_users, train_items (np.ndarray): the training pairs, the graph's edges.
        latent_dim (int): the first modality's projection width (MMRec: 256).

    Departures from the paper (MMRec's, followed here):

    - Trained: only the per-layer maps and the projection. MMRec's ID embeddings :math:`e` and user
      preferences :math:`p^m` are plain tensors that its optimiser never sees, so they stay at their random
      initialisation (buffers here). The ``reg`` term therefore depends on frozen values only: it is
      reported, and gives no gradient; ``reg_weight`` does not change training.
    - The combination concatenates :math:`[h \| \hat{x}]`: MMRec's ``concate = 'False'`` means to choose the
      paper's element-wise addition, but a non-empty string is true.
    - Aggregation: the mean over neighbours (MMRec's ``aggr_mode = 'mean'``); three layers always
      (MMRec's ``n_layers: 2`` is read and never used).
    - Only the first modality's features are projected (MMRec's ``dim_latent=256`` for ``v_gcn`` only).
    - The regularisation is MMRec's mean of squares above, not :math:`\lambda \|\Theta\|^2`; BPR is averaged.

    Departures from MMRec:

    - No torch_geometric: :math:`P` is a CSR matrix built from the training pairs (:func:`mean_adjacency`).
    - BPR uses ``-logsigmoid`` (stable); MMRec's ``-log(sigmoid)`` can reach ``inf``.
    - Scores use a fresh forward pass with the current weights. MMRec's ``full_sort_predict`` reuses the
      representation of the last training batch's forward (before that batch's optimiser step; at epoch 0
      a random tensor).
    - Any number of modalities (MMRec: image and/or text); see ``features``.
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor],
                 train_users: np.ndarray, train_items: np.ndarray, latent_dim: int = LATENT_DIM):
        super().__init__()
        if not features:
            raise ValueError("MMGCN needs at least one feature modality")
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        self.modalities = list(features)
        d = self.cfg.embedding_dim
        self.gcn = nn.ModuleDict({m: _ModalityGCN(n_users, f.shape[1], d, latent_dim if k == 0 else None)
                                  for k, (m, f) in enumerate(features.items())})
        for m, f in features.items():
            self.register_buffer(f"feat_{m}", f.float(), persistent=False)  # (n_items, d_m), frozen input
        # MMRec's id_embedding: never trained either (see the class docstring)
        self.register_buffer("id_embedding", nn.init.xavier_normal_(torch.rand(n_users + n_items, d)))
        adj = mean_adjacency(train_users, train_items, n_users, n_items)
        # plain attributes (DDP rejects sparse buffers), moved to the features' device on first use
        self._graphs = {"mean": adj, "mean.T": adj.t().to_sparse_csr()}

    @classmethod
    def build(cls, cfg, ds) -> "MMGCN":
        return cls(cfg, ds.n_users, ds.n_items, ds.features, ds.train.users, ds.train.items)

    def forward(self) -> torch.Tensor:
        """(N, d) representation, users first: the mean over modalities of their networks' outputs."""
        adj, adj_t = self.graph("mean"), self.graph("mean.T")
        out = [self.gcn[m](getattr(self, f"feat_{m}"), self.id_embedding, adj, adj_t) for m in self.modalities]
        return sum(out) / len(out)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        r = self()
        n_u = self.n_users
        u, p, n = r[batch.users], r[n_u + batch.pos], r[n_u + batch.neg]
        terms = {"bpr": losses.bpr_loss((u * p).sum(1), (u * n).sum(1))}
        e = self.id_embedding
        d = e.shape[1]
        # MMRec: mean over the 2B interleaved (user, item) rows of e_user^2 + e_item^2, plus the mean square
        # of the first modality's preferences; all frozen, so a constant
        ids = (2 * e[batch.users].square().sum() + e[n_u + batch.pos].square().sum()
               + e[n_u + batch.neg].square().sum()) / (2 * len(batch.users) * d)
        terms["reg"] = self.cfg.reg_weight * (ids + self.gcn[self.modalities[0]].preference.square().mean())
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        r = self()
        return r[: self.n_users], r[self.n_users :]
