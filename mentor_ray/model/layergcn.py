"""LayerGCN (Zhou et al., ICDE 2023): layer-refined graph convolution over a degree-pruned user-item graph.

Follows MMRec's ``src/models/layergcn.py`` (the implementation the MENTOR paper ran its baselines with);
``docs/baselines/layergcn.md`` lists each departure with the MMRec line it concerns, and
``tests/test_parity_layergcn.py`` checks losses, gradients and scores against MMRec's own class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mentor_ray.common.config import ModelConfig
from mentor_ray.common.errors import ConfigError
from mentor_ray.model import ops
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier


class LayerGCN(Recommender):
    r"""LayerGCN: each layer's output re-weighted by its cosine similarity to the ego embeddings.

    From `"Layer-refined Graph Convolutional Networks for Recommendation"
    <https://arxiv.org/abs/2207.11088>`_ (Zhou et al., ICDE 2023), as MMRec implements it. Users and
    items (ID embeddings :math:`E^{(0)}`) propagate over the user-item graph; after every layer each
    node's output is scaled by its cosine similarity to its own layer-0 embedding, and the refined layers
    1..L are summed (layer 0 itself is not):

    .. math::
        E^{(l)} = \mathrm{diag}\big(\cos(\tilde{A} E^{(l-1)}, E^{(0)})\big)\, \tilde{A} E^{(l-1)}, \qquad
        E = \sum_{l=1}^{L} E^{(l)}, \qquad y_{ui} = e_u^\top e_i

    where :math:`\cos` is taken row by row. For training :math:`\tilde{A}` is re-drawn every epoch by
    edge dropout: it keeps :math:`\lfloor |E| (1 - p) \rfloor` training edges, on even epochs drawn with
    probability proportional to :math:`1/\sqrt{d_u d_i}` (degree-sensitive, as FREEDOM), on odd epochs
    uniformly, and re-normalises the kept edges symmetrically by their own degrees; scoring uses the
    full normalised graph :math:`A`. The objective over a batch :math:`B` of triplets :math:`(u, i, j)` is

    .. math::
        \mathcal{L} = \sum_{B} -\log\sigma(y_{ui} - y_{uj})
        + \frac{\lambda}{2} \sum_{B} \big(\|e^{(0)}_u\|^2 + \|e^{(0)}_i\|^2 + \|e^{(0)}_j\|^2\big)

    (sums over the batch, not means: MMRec's). :meth:`loss` returns its terms, each already weighted:
    ``bpr`` and ``reg``.

    Args:
        cfg (ModelConfig): the model's settings. The model reads:

            - ``embedding_dim``: :math:`d`.
            - ``n_layers``: :math:`L` (at least 1).
            - ``reg_weight``: :math:`\lambda`, the L2 weight on the batch's layer-0 rows.
            - ``dropout``: :math:`p`, the share of training edges dropped each epoch (0: none).
        n_users (int): the number of users.
        n_items (int): the number of items.
        train_users, train_items: the training interactions (the edges that dropout samples from).

    Graphs: :meth:`set_graphs` gives :math:`A` (``graph("ui")``); :meth:`start_epoch` draws
    :math:`\tilde{A}` from torch's global generator (it must be called before :meth:`loss`).

    Departures from MMRec:

    - The uniform draw of odd epochs uses torch's generator (``torch.randperm``); MMRec uses Python's
      ``random.sample``. The alternation follows the epoch number (even: degree-sensitive), which is
      MMRec's toggle for a run from its start, and stays so across a resumed run.
    - ``dropout`` keeps at least one edge (MMRec's ``torch.multinomial`` fails on zero samples).
    - ``n_layers = 0`` is refused (MMRec's ``torch.stack`` of no layers fails).

    MMRec's choices, followed here: layer 0 is left out of the sum; BPR and L2 are sums over the batch
    (so the loss grows with the batch size; Adam is nearly invariant to that scale), the L2 halved.
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, train_users, train_items):
        super().__init__()
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        if self.cfg.n_layers < 1:
            raise ConfigError("n_layers = 0 is not allowed for layergcn; allowed: at least 1 (it sums the "
                              "refined layers 1..L, without layer 0)")
        d = self.cfg.embedding_dim
        self.user_embedding = xavier(n_users, d)
        self.item_embedding = xavier(n_items, d)
        ops.register_edges(self, train_users, train_items)

    @classmethod
    def build(cls, cfg, ds) -> "LayerGCN":
        return cls(cfg, ds.n_users, ds.n_items, ds.train.users, ds.train.items)

    def set_graphs(self, ui_adj: torch.Tensor, item_adj: dict[str, torch.Tensor]) -> None:
        super().set_graphs(ui_adj, item_adj)
        self._graphs.pop("train", None)  # a pruned graph of earlier graphs is stale

    def start_epoch(self, epoch: int) -> None:
        """Edge dropout (MMRec ``pre_epoch_processing``): degree-sensitive on even epochs, uniform on odd."""
        if self.cfg.dropout <= 0:
            self._graphs["train"] = self.graph("ui")
            return
        n_edges = self.edge_weight.numel()
        n_keep = ops.n_kept(n_edges, self.cfg.dropout)
        if epoch % 2 == 0:
            keep = torch.multinomial(self.edge_weight, n_keep)
        else:
            keep = torch.randperm(n_edges, device=self.edge_weight.device)[:n_keep]
        self.prune(keep)

    def prune(self, keep: torch.Tensor) -> None:
        """The training graph of the kept edges ``keep`` (indices into the training interactions)."""
        self._graphs["train"] = ops.pruned_graph(self.edge_users[keep], self.edge_items[keep], self.n_users,
                                                  self.n_items)

    def forward(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(users (n_users, d), items (n_items, d)) over the user-item graph ``adj``."""
        ego = torch.cat([self.user_embedding, self.item_embedding])
        x, layers = ego, []
        for _ in range(self.cfg.n_layers):
            x = ops.spmm(adj, x, adj)  # symmetric: its own transpose
            x = F.cosine_similarity(x, ego, dim=-1).unsqueeze(1) * x  # the layer refinement
            layers.append(x)
        e = torch.stack(layers).sum(0)  # layers 1..L, as MMRec
        return e[: self.n_users], e[self.n_users :]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        if "train" not in getattr(self, "_graphs", {}):
            raise RuntimeError("LayerGCN: call start_epoch() before loss(); it samples the epoch's pruned graph")
        users, items = self(self.graph("train"))
        u = users[batch.users]
        diff = (u * items[batch.pos]).sum(1) - (u * items[batch.neg]).sum(1)
        rows = (self.user_embedding[batch.users], self.item_embedding[batch.pos], self.item_embedding[batch.neg])
        # Sums over the batch (MMRec), times the ranks sharing it (DDP: the global batch's sum; Batch.world)
        terms = {
            "bpr": -F.logsigmoid(diff).sum() * batch.world,  # stable log-sigmoid
            "reg": self.cfg.reg_weight * 0.5 * sum(r.square().sum() for r in rows) * batch.world,
        }
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self(self.graph("ui"))  # scored on the full graph, as MMRec's full_sort_predict
