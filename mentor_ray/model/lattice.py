"""LATTICE (Zhang et al., ACM MM 2021) as MMRec implements it (``src/models/lattice.py``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mentor_ray.common.config import ModelConfig
from mentor_ray.datasets.graphs import knn_neighbours
from mentor_ray.model import losses, ops
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier

# An item graph as three (E,) tensors: rows, columns, values; an entry repeated is summed (as in a COO matrix).
Edges = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Lattice(Recommender):
    r"""LATTICE: LightGCN on the user-item graph plus item ID embeddings propagated over a learned item graph.

    From `"Mining Latent Structures for Multimedia Recommendation" <https://arxiv.org/abs/2104.09036>`_
    (Zhang et al., ACM MM 2021), in MMRec's version (``cf_model: lightgcn``). Each modality :math:`m`
    has a frozen kNN graph :math:`\tilde S_m` of the raw item features :math:`f^m` and a learned one
    :math:`\hat S_m` of their projections :math:`W_m f^m + b_m` (the features themselves are trained too):

    .. math::
        \mathrm{knn}(x)_{ij} = \cos(x_i, x_j) \ \text{if } j \in \mathrm{top}_k(\cos(x_i, \cdot)) \text{ else } 0,
        \qquad \mathcal{L}(S) = D^{-1/2} S D^{-1/2},\ D = \mathrm{diag}(S \mathbf{1})

        \tilde S_m = \mathcal{L}(\mathrm{knn}(f^m)), \qquad
        \hat S = \mathcal{L}\big(\textstyle\sum_m w_m\, \mathrm{knn}(W_m f^m + b_m)\big), \qquad
        w = \mathrm{softmax}(\omega)

        S = (1 - \lambda)\, \hat S + \lambda \textstyle\sum_m w_m \tilde S_m, \qquad
        H = S^{h} E_I

    and the user-item side is LightGCN over MMRec's row-normalised adjacency with self-loops
    :math:`\hat A = (D_A + I)^{-1} (A + I)`, layers averaged:

    .. math::
        [\bar E_U; \bar E_I] = \frac{1}{L + 1} \sum_{l=0}^{L} \hat A^l [E_U; E_I], \qquad
        e_u = \bar E_{U,u}, \quad e_i = \bar E_{I,i} + \frac{H_i}{\|H_i\|_2}, \qquad y_{ui} = e_u^\top e_i

    The objective over a batch :math:`\mathcal{B}` of triplets :math:`(u, i, j)` is

    .. math::
        \mathcal{L} = \frac{1}{|\mathcal{B}|} \sum_{(u,i,j)} -\log \sigma(y_{ui} - y_{uj})
        + \frac{\lambda_E}{2 |\mathcal{B}|} \sum_{(u,i,j)} \left( \|e_u\|^2 + \|e_i\|^2 + \|e_j\|^2 \right)

    and :meth:`loss` returns the terms ``bpr`` and ``reg`` (:math:`\lambda_E` applied).

    The learned graph :math:`S` is rebuilt (with gradients to :math:`W_m, b_m, f^m, \omega`) at the first
    batch of each epoch (:meth:`start_epoch`, MMRec's ``pre_epoch_processing``) and used detached by the
    epoch's other batches, so those parameters are trained on one batch per epoch; scoring rebuilds it
    from the current weights (MMRec's ``full_sort_predict``).

    Args:
        cfg (ModelConfig): the model's settings. It reads ``embedding_dim`` (:math:`d`), ``n_layers``
            (:math:`L`, MMRec's ``len(weight_size)``), ``item_layers`` (:math:`h`, MMRec's ``n_layers``),
            ``reg_weight`` (:math:`\lambda_E`), ``lattice_feat_dim`` (the width of :math:`W_m f^m`),
            ``lattice_knn_k`` (:math:`k`, capped at the item count) and ``lattice_lambda`` (:math:`\lambda`).
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality -> ``(n_items, d_m)`` raw item features (at least one),
            in the dataset's order. For M modalities :math:`\omega` has M entries, each initialised to 0.5:
            for (image, text) that is MMRec's ``modal_weight`` and the sums above are MMRec's
            ``weight[0] * image + weight[1] * text``; with one modality :math:`w = 1` and there is no
            :math:`\omega` (MMRec uses that modality's graphs unweighted and never trains it).
        train_users, train_items (torch.Tensor): the training interactions, one pair per entry (the
            user-item adjacency).

    Initialisation (MMRec's): :math:`E_U, E_I` Xavier-uniform, :math:`W_m, b_m` ``nn.Linear``'s, :math:`f^m` the
    given features, :math:`\omega = 0.5`.

    Departures from the paper (all MMRec's, followed here):

    - The user-item encoder is LightGCN on :math:`(D_A + I)^{-1}(A + I)` (MMRec's ``get_adj_mat``), the layer
      mean, not the paper's symmetric normalisation; NGCF and MF encoders (MMRec's ``cf_model``) are left out
      (``n_layers=0`` is MMRec's ``mf``).
    - The raw features are trainable parameters (``nn.Embedding.from_pretrained(freeze=False)``); the
      frozen graphs :math:`\tilde S_m` are those of the initial features.
    - The learned graph is rebuilt once per epoch and detached in between (the paper: every step).
    - L2 on the batch's final embeddings, halved, divided by the batch size.

    Departures from MMRec:

    - The similarity is computed in row blocks and the graphs are kept sparse (``k`` entries per row and
      modality) instead of dense ``n_items x n_items`` matrices: the same entries and values, summed in
      another order (``tests/test_parity_lattice.py`` compares against MMRec's class).
    - Ties among the top-k similarities go to the lower item index (:func:`knn_neighbours`; MMRec: the order
      of ``torch.topk``); norms are clamped at ``1e-12``, so an all-zero feature row has similarity 0 (MMRec:
      NaN, which spreads to every item).
    - ``reg`` divides by the batch's size; MMRec by the configured ``train_batch_size`` (different for the
      last, smaller batch of an epoch only).
    - MMRec decays the learning rate by ``0.96 ** (epoch / 50)`` (``learning_rate_scheduler``); mentor_ray's
      trainer has no scheduler.
    - Under DDP, the batches that use the detached graph leave the graph-side parameters without a
      gradient, as in one process: the model sets ``ddp_find_unused``, so DDP looks for unused parameters
      and leaves those no rank used without a gradient, and Adam does not step them (MMRec's behaviour).
    """

    ddp_find_unused = True

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor],
                 train_users: torch.Tensor, train_items: torch.Tensor):
        super().__init__()
        if not features:
            raise ValueError("LATTICE needs at least one feature modality")
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        self.modalities = list(features)
        self.k = min(self.cfg.lattice_knn_k, n_items)
        d = self.cfg.embedding_dim
        self.user_emb = xavier(n_users, d)
        self.item_emb = xavier(n_items, d)
        # MMRec trains the raw features (from_pretrained(freeze=False)); they move only on rebuild batches
        self.feat = nn.ParameterDict({m: nn.Parameter(f.detach().float().clone()) for m, f in features.items()})
        self.trs = nn.ModuleDict({m: nn.Linear(f.shape[1], self.cfg.lattice_feat_dim) for m, f in features.items()})
        # one modality: w = 1 and nothing to train (DDP rejects a parameter that never gets a gradient)
        self.modal_weight = nn.Parameter(torch.full((len(features),), 0.5)) if len(features) > 1 else None
        for m, f in features.items():  # the frozen graphs of the initial features: (n_items, k) each
            idx = knn_neighbours(f.detach().float(), self.k)
            with torch.no_grad():
                val = _normalized_laplacian(*_knn_edges(f.detach().float(), idx), n_items)[2]
            self.register_buffer(f"orig_idx_{m}", idx, persistent=False)
            self.register_buffer(f"orig_val_{m}", val.view(n_items, self.k), persistent=False)
        a, a_t = _self_loop_mean_adjacency(train_users, train_items, n_users, n_items)  # (A, A^T), CSR
        self._graphs = {"lattice.ui": a, "lattice.ui.T": a_t}  # moved with the trainer's (graphs_to)
        self._epoch_graph: tuple[torch.Tensor, torch.Tensor] | None = None  # detached S and S^T, CSR
        self._rebuild = True

    @classmethod
    def build(cls, cfg, ds) -> "Lattice":
        return cls(cfg, ds.n_users, ds.n_items, ds.features, torch.from_numpy(ds.train.users),
                   torch.from_numpy(ds.train.items))

    def start_epoch(self, epoch: int) -> None:
        self._rebuild = True  # MMRec's pre_epoch_processing: the epoch's first batch rebuilds S

    # ------------------------------------------------------------------ graphs

    def item_graph(self) -> Edges:
        """:math:`S` as edges (the learned part, then each modality's frozen part); differentiable in the
        graph-side parameters when grad is enabled."""
        n, lam = self.n_items, self.cfg.lattice_lambda
        w = torch.softmax(self.modal_weight, 0) if self.modal_weight is not None else None
        learned = []
        for k, m in enumerate(self.modalities):
            x = self.trs[m](self.feat[m])  # (n_items, feat_dim)
            with torch.no_grad():  # on the CPU: knn_neighbours returns CPU indices (its tie path indexes them)
                idx = knn_neighbours(x.detach().cpu(), self.k).to(x.device)
            rows, cols, val = _knn_edges(x, idx)
            learned.append((rows, cols, val if w is None else w[k] * val))
        rows, cols, val = _normalized_laplacian(*_cat(learned), n)
        parts = [(rows, cols, (1 - lam) * val)]
        for k, m in enumerate(self.modalities):
            idx, ov = getattr(self, f"orig_idx_{m}"), getattr(self, f"orig_val_{m}").reshape(-1)
            r = torch.arange(n, device=idx.device).repeat_interleave(self.k)
            parts.append((r, idx.reshape(-1), lam * (ov if w is None else w[k] * ov)))
        return _cat(parts)

    def _ui_graph(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.graph("lattice.ui"), self.graph("lattice.ui.T")

    # ------------------------------------------------------------------ forward

    def forward(self, graph: Edges | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_users, d), (n_items, d) final embeddings, with item graph ``graph``: edges (differentiable in
        their values) or a detached CSR pair (S, S^T)."""
        h = self.item_emb
        if len(graph) == 3:  # edges: a COO matrix, whose sparse.mm backward reaches the values
            rows, cols, val = graph
            s = torch.sparse_coo_tensor(torch.stack([rows, cols]), val, (self.n_items, self.n_items),
                                        check_invariants=False)
            for _ in range(self.cfg.item_layers):
                h = torch.sparse.mm(s, h)
        else:
            for _ in range(self.cfg.item_layers):
                h = ops.spmm(graph[0], h, graph[1])
        a, a_t = self._ui_graph()
        x = torch.cat([self.user_emb, self.item_emb])
        total = x
        for _ in range(self.cfg.n_layers):
            x = ops.spmm(a, x, a_t)
            total = total + x
        e = total / (self.cfg.n_layers + 1)
        return e[: self.n_users], e[self.n_users :] + F.normalize(h, p=2, dim=1)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if self._rebuild or self._epoch_graph is None:
            graph = self.item_graph()
            self._epoch_graph = _csr_pair(graph, self.n_items)
            self._rebuild = False
        else:
            graph = self._epoch_graph  # detached: the graph's parameters get no gradient (DDP: ddp_find_unused)
        users, items = self(graph)
        u, p, n = users[batch.users], items[batch.pos], items[batch.neg]
        terms = {"bpr": losses.bpr_loss((u * p).sum(1), (u * n).sum(1)),
                 "reg": 0.5 * self.cfg.reg_weight * losses.l2_reg([u, p, n], len(batch.users))}
        total = sum(terms.values())
        return total, {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self(_csr_pair(self.item_graph(), self.n_items))  # MMRec: scoring rebuilds S


def _knn_edges(x: torch.Tensor, idx: torch.Tensor, chunk: int | None = None) -> Edges:
    """Edges i -> idx[i, :] valued by the cosine similarity of rows of ``x`` (differentiable in ``x``),
    computed in row blocks of the similarity matrix (never the whole n x n)."""
    n, k = idx.shape
    xn = x / x.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)
    chunk = chunk or max(1, min(n, (1 << 25) // max(n, 1)))
    val = torch.cat([(xn[s : s + chunk] @ xn.T).gather(1, idx[s : s + chunk]) for s in range(0, n, chunk)])
    return torch.arange(n, device=idx.device).repeat_interleave(k), idx.reshape(-1), val.reshape(-1)


def _normalized_laplacian(rows: torch.Tensor, cols: torch.Tensor, val: torch.Tensor, n: int) -> Edges:
    """:math:`D^{-1/2} S D^{-1/2}` with :math:`D` the row sums of S (rows without entries: 0)."""
    deg = torch.zeros(n, dtype=val.dtype, device=val.device).index_add(0, rows, val)
    d = deg.pow(-0.5)
    d = d.masked_fill(torch.isinf(d), 0.0)
    return rows, cols, d[rows] * val * d[cols]


def _cat(parts: list[Edges]) -> Edges:
    return tuple(torch.cat(p) for p in zip(*parts))  # type: ignore[return-value]


def _csr_pair(edges: Edges, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Detached (S, S^T) as CSR, duplicates summed."""
    rows, cols, val = (t.detach() for t in edges)
    return _csr(rows, cols, val, (n, n)), _csr(cols, rows, val, (n, n))


def _csr(rows, cols, val, size) -> torch.Tensor:
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), val, size, check_invariants=False)
    return coo.coalesce().to_sparse_csr()


def _self_loop_mean_adjacency(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int):
    """MMRec's ``get_adj_mat``: :math:`(D_A + I)^{-1} (A + I)` over users then items, and its transpose."""
    users, items = users.long(), items.long() + n_users
    n = n_users + n_items
    loops = torch.arange(n)
    rows, cols = torch.cat([users, items, loops]), torch.cat([items, users, loops])
    val = 1.0 / torch.bincount(rows, minlength=n).double()[rows]  # degree + 1 (the self-loop)
    val = val.float()
    return _csr(rows, cols, val, (n, n)), _csr(cols, rows, val, (n, n))
