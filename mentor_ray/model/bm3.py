"""BM3 (Zhou et al., WWW 2023): bootstrapped latent views of LightGCN and feature embeddings, no negatives.

Follows MMRec's ``src/models/bm3.py`` (the implementation the MENTOR paper ran its baselines with);
``docs/baselines/bm3.md`` lists each departure with the MMRec line it concerns, and
``tests/test_parity_bm3.py`` checks losses, gradients and scores against MMRec's own class.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import ops
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier


class BM3(Recommender):
    r"""BM3: self-supervised multimodal recommendation by bootstrapping latent representations.

    From `"Bootstrap Latent Representations for Multi-modal Recommendation"
    <https://arxiv.org/abs/2207.05969>`_ (Zhou et al., WWW 2023), as MMRec implements it. Users and items (ID
    embeddings :math:`E_u, E_i`) propagate LightGCN-style over the normalised user-item graph :math:`\hat{A}`,
    the item ID embedding is added back, and each modality's (trainable) features :math:`X_m` are projected
    to the same width:

    .. math::
        [\bar{E}_u; \bar{E}_i] = \frac{1}{L+1} \sum_{l=0}^{L} \hat{A}^l [E_u; E_i], \qquad
        h_u = \bar{e}_u, \quad h_i = \bar{e}_i + e_i, \quad f_{i,m} = W_m x_{i,m} + b_m

    One shared linear predictor :math:`g(x) = P x + c` makes the online views; the target views are the
    same representations with dropout (ratio :math:`p`) and stopped gradients,
    :math:`\tilde{h} = \mathrm{sg}(\mathrm{drop}_p(h))`, :math:`\tilde{f}_{i,m} =
    \mathrm{sg}(\mathrm{drop}_p(f_{i,m}))`. Scores are :math:`y_{ui} = g(h_u)^\top g(h_i)`. With
    :math:`\ell(a, b) = 1 - \frac{1}{|\mathcal{B}|}\sum_{(u,i) \in \mathcal{B}} \cos(a, b)` over the batch
    :math:`\mathcal{B}` of training pairs (no negatives), the objective is

    .. math::
        \mathcal{L} = \underbrace{\ell(g(h_u), \tilde{h}_i) + \ell(g(h_i), \tilde{h}_u)}_{\texttt{rec}}
        + \underbrace{\lambda_c \sum_m \ell(g(f_{i,m}), \tilde{h}_i)}_{\texttt{align}}
        + \underbrace{\lambda_c \sum_m \ell(g(f_{i,m}), \tilde{f}_{i,m})}_{\texttt{mask}}
        + \underbrace{\frac{\lambda}{|\mathcal{I}|} \big(\|H_U\|_F + \|H_I\|_F\big)}_{\texttt{reg}}

    with :math:`H_U, H_I` ALL users' and items' :math:`h` (unsquared Frobenius norms, over the number of
    items: MMRec's ``EmbLoss`` on the full tables). :meth:`loss` returns the four terms, each weighted.

    Args:
        cfg (ModelConfig): the model's settings. The model reads:

            - ``embedding_dim``: :math:`d`, the ID embeddings', the projections' and the predictor's width
              (MMRec's ``feat_embed_dim`` is ``embedding_size``).
            - ``n_layers``: :math:`L`, user-item graph layers (0: no propagation).
            - ``dropout``: :math:`p`, the target views' dropout ratio.
            - ``reg_weight``: :math:`\lambda`.
            - ``bm3_cl_weight``: :math:`\lambda_c` (MMRec ``cl_weight``).
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality -> ``(n_items, d_m)`` item features, at least one, in the
            dataset's order; each becomes a trainable table and a ``Linear(d_m, d)``.

    Graphs: :meth:`set_graphs` gives :math:`\hat{A}` (``graph("ui")``); no item graph.

    Batches: MMRec trains BM3 without negative sampling (``use_neg_sampling: False``): a batch is (user,
    item) training pairs. The trainer's :class:`~mentor_ray.model.base.Batch` always carries sampled
    negatives; ``batch.neg`` is ignored (the pairs, one epoch over the training set in shuffled batches, are
    MMRec's).

    Randomness: every step draws, from torch's global generator through ``F.dropout`` (:meth:`_dropout`),
    the dropout masks of the full user table, the full item table, then each modality's full item table,
    last modality first: MMRec's order (users, items, text, image) for the dataset order (image, text), so
    that a torch seed draws MMRec's masks (checked on CPU under the golden file's torch). Only the batch's
    rows of each mask are used. ``dropout=0`` draws nothing.

    M modalities: MMRec hard-codes text and image (``t_feat``, ``v_feat``); here ``align`` and ``mask``
    sum over every modality. For M = 2 in the order (image, text) this is MMRec's computation.

    MMRec's choices, followed here (where the BM3 paper reads otherwise, this is the version that was run):
    the item representation adds the ID embedding to the layer mean (layers 0..L); the target views are
    dropped out copies of the online encoder's output (no momentum encoder, as in the paper); one predictor
    serves ID and feature views; the feature tables are trainable (``freeze=False``); ``cl_weight`` weights
    both the alignment and the masked-feature terms; the regulariser is ``reg_weight`` times the unsquared
    norms of the full propagated tables over the item count.

    Departures from MMRec:

    - The predictor, the projections and the targets are evaluated on the batch's rows only (MMRec computes
      every user's and item's, then indexes): the same values and gradients, up to rounding. The dropout
      masks are still drawn for the full tables (above).
    - :math:`\hat{A}` is the trainer's ``graph("ui")``, :math:`D^{-1/2} A D^{-1/2}` without MMRec's 1e-7
      added to the degrees (a relative 1e-7 / degree difference).
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor]):
        super().__init__()
        if not features:
            raise ValueError("BM3 needs at least one feature modality")
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        self.modalities = list(features)
        d = self.cfg.embedding_dim
        self.user_embedding = xavier(n_users, d)
        self.item_embedding = xavier(n_items, d)
        self.predictor = nn.Linear(d, d)
        nn.init.xavier_normal_(self.predictor.weight)  # MMRec's initialisation (the bias keeps Linear's)
        # Positional (modality names may hold '.', which parameter names may not).
        self.feature_tables = nn.ParameterList(nn.Parameter(f.detach().float().clone()) for f in features.values())
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], d) for f in features.values())
        for proj in self.projections:
            nn.init.xavier_normal_(proj.weight)

    @classmethod
    def build(cls, cfg, ds) -> "BM3":
        return cls(cfg, ds.n_users, ds.n_items, ds.features)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_users (n_users, d), h_items (n_items, d)): the layer mean, the item ID embedding added back."""
        x = torch.cat([self.user_embedding, self.item_embedding])
        layers = [x]
        for _ in range(self.cfg.n_layers):
            x = ops.spmm(self.graph("ui"), x, self.graph("ui.T"))
            layers.append(x)
        e = torch.stack(layers, dim=1).mean(dim=1)  # (N, d), MMRec's mean over layers 0..L
        return e[: self.n_users], e[self.n_users :] + self.item_embedding

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        """``F.dropout`` at ratio ``dropout`` (the scaled keep mask, when ``x`` is ones); tests replace it to
        replay MMRec's recorded masks."""
        return F.dropout(x, self.cfg.dropout, training=True)

    def _masks(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]] | None:
        """The scaled keep masks of this step (users, items, one per modality in the dataset's order), drawn
        in MMRec's order (users, items, then the modalities last first); None at ``dropout=0``."""
        if self.cfg.dropout <= 0:  # F.dropout draws nothing at p = 0
            return None
        d = self.cfg.embedding_dim
        draw = lambda n: self._dropout(torch.ones(n, d, device=device))  # noqa: E731
        users, items = draw(self.n_users), draw(self.n_items)
        modal = [draw(self.n_items) for _ in self.modalities][::-1]  # drawn (text, image): kept (image, text)
        return users, items, modal

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        terms = self.loss_terms(batch)
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    def loss_terms(self, batch: Batch, parts: bool = False) -> dict[str, torch.Tensor]:
        """The weighted terms ``rec``, ``align``, ``mask``, ``reg``; with ``parts`` also the unweighted
        pieces ``rec.ui``, ``rec.iu``, ``align.<m>``, ``mask.<m>``, ``reg.norms`` (for checks; not in the
        loss). ``batch.neg`` is not read (BM3 trains without negatives)."""
        h_u, h_i = self()
        masks = self._masks(h_u.device)
        mask_u, mask_i, mask_m = masks if masks is not None else (None, None, [None] * len(self.modalities))
        users, items = batch.users, batch.pos
        u, i = h_u[users], h_i[items]
        # targets: the dropped-out online representations, gradient stopped (MMRec: under no_grad)
        u_tgt, i_tgt = _target(u, mask_u, users), _target(i, mask_i, items)
        pieces = {"rec.ui": _miss(self.predictor(u), i_tgt), "rec.iu": _miss(self.predictor(i), u_tgt)}
        for m, table, proj, mask in zip(self.modalities, self.feature_tables, self.projections, mask_m):
            f = proj(table[items])  # (B, d): the batch's items only (MMRec projects all, then indexes)
            online = self.predictor(f)
            pieces[f"align.{m}"] = _miss(online, i_tgt)
            pieces[f"mask.{m}"] = _miss(online, _target(f, mask, items))
        # MMRec's EmbLoss on the full tables: the same on every DDP rank, so no global sum is needed
        norms = (torch.linalg.vector_norm(h_u) + torch.linalg.vector_norm(h_i)) / self.n_items
        cl = self.cfg.bm3_cl_weight
        # Always in the graph, even at weight 0: DDP needs a gradient for every parameter.
        terms = {
            "rec": pieces["rec.ui"] + pieces["rec.iu"],
            "align": cl * sum(pieces[f"align.{m}"] for m in self.modalities),
            "mask": cl * sum(pieces[f"mask.{m}"] for m in self.modalities),
            "reg": self.cfg.reg_weight * norms,
        }
        if parts:
            terms.update(pieces, **{"reg.norms": norms})
        return terms

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        h_u, h_i = self()
        return self.predictor(h_u), self.predictor(h_i)  # MMRec's full_sort_predict: g(h_u) . g(h_i)


def _target(x: torch.Tensor, mask: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
    """A target view: ``x`` (the batch's ``rows``) times their rows of the scaled keep ``mask``, no gradient."""
    return x.detach() if mask is None else x.detach() * mask[rows]


def _miss(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - the batch mean of the rows' cosine similarity (a mean: nothing to do under DDP)."""
    return 1.0 - F.cosine_similarity(online, target, dim=-1).mean()
