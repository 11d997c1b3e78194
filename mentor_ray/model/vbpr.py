"""VBPR (He and McAuley, AAAI 2016) as MMRec implements it (``src/models/vbpr.py``)."""

from __future__ import annotations

import torch
import torch.nn as nn

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import losses
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier


class VBPR(Recommender):
    r"""VBPR: matrix factorisation whose item factors are extended by a linear projection of the item features.

    From `"VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback"
    <https://arxiv.org/abs/1510.01784>`_ (He and McAuley, AAAI 2016), in MMRec's version. A user has one
    ``2d`` vector; an item has an ID embedding of ``d`` and the projection of its raw features to ``d``:

    .. math::
        e_u = [\gamma_u \,\|\, \theta_u] \in \mathbb{R}^{2d}, \qquad
        e_i = [\gamma_i \,\|\, W f_i + b] \in \mathbb{R}^{2d}, \qquad
        f_i = [f_i^{m_M} \,\|\, \cdots \,\|\, f_i^{m_1}], \qquad
        y_{ui} = e_u^\top e_i

    and the objective, over a batch :math:`\mathcal{B}` of triplets :math:`(u, i, j)`, is

    .. math::
        \mathcal{L} = \frac{1}{|\mathcal{B}|} \sum_{(u,i,j)} -\log \sigma(y_{ui} - y_{uj})
        + \frac{\lambda}{|\mathcal{B}|} \left( \|E_U\|_F + \|E_I\|_F + \|E_J\|_F \right)

    where :math:`E_U, E_I, E_J` stack the batch's :math:`e_u`, :math:`e_i`, :math:`e_j` rows (with
    repeats). :meth:`loss` returns the terms ``bpr`` and ``reg`` (:math:`\lambda` applied).

    Args:
        cfg (ModelConfig): the model's settings; it reads ``embedding_dim`` (:math:`d`) and
            ``reg_weight`` (:math:`\lambda`).
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality -> ``(n_items, d_m)`` raw item features (at least one),
            in the dataset's order. They are concatenated in REVERSE order, the last modality's columns
            first: for the Amazon sets' ``(image, text)`` that is MMRec's ``torch.cat((t_feat, v_feat))``,
            so MMRec's ``item_linear`` weight loads as it is; with one modality it is that modality.

    Initialisation (MMRec's, drawn in its order so that one torch seed gives MMRec's initial weights):
    :math:`[\gamma_u \| \theta_u]` and :math:`\gamma_i` Xavier-uniform, :math:`W` Xavier-normal, :math:`b = 0`.

    Departures from the paper (all MMRec's, followed here):

    - No bias terms: the paper's :math:`\alpha + \beta_u + \beta_i + \beta'^\top f_i` are absent; the
      projection has a bias :math:`b` instead (``nn.Linear``), so :math:`\theta_u^\top b` acts as a user bias.
    - The features are projected by an affine map from all modalities concatenated, not the visual
      features alone (the paper has one modality).
    - Regularisation: the paper's :math:`\lambda_\Theta \|\Theta\|^2` over all parameters becomes
      :math:`\lambda` times the sum of the UNSQUARED Frobenius norms of the batch's final user,
      positive and negative rows, divided by the batch size (MMRec's ``EmbLoss``); the projected
      features are in those rows, so the term also reaches :math:`W, b`.
    - BPR is averaged over the batch, not summed.

    Departures from MMRec:

    - BPR uses ``-logsigmoid`` (stable); MMRec's ``BPRLoss`` is ``-log(1e-10 + sigmoid)``, which
      differs by at most ``1e-10 / sigmoid`` and saturates at ``log(1e10) = 23`` for a wrongly ranked pair.
    - Items are projected only for the batch's rows in :meth:`loss` (MMRec projects every item each
      step); the loss and its gradient are the same.
    - MMRec's ``forward(dropout)`` takes an embedding dropout that its ``calculate_loss`` never uses
      (always 0); there is none here and the model does not read ``dropout``.
    - Any number of modalities (MMRec: image and/or text); see ``features``.
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor]):
        super().__init__()
        if not features:
            raise ValueError("VBPR needs at least one feature modality")
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        d = self.cfg.embedding_dim
        self.u_embedding = xavier(n_users, 2 * d)  # [gamma_u | theta_u]
        self.i_embedding = xavier(n_items, d)  # gamma_i
        raw = torch.cat([f.float() for f in reversed(list(features.values()))], 1)  # MMRec: cat(t, v)
        self.register_buffer("item_raw_features", raw, persistent=False)  # (n_items, sum d_m), frozen input
        self.item_linear = nn.Linear(raw.shape[1], d)  # its default init draws too: kept for MMRec's RNG order
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)

    @classmethod
    def build(cls, cfg, ds) -> "VBPR":
        return cls(cfg, ds.n_users, ds.n_items, ds.features)

    def item_embeddings(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """(n, 2d) :math:`[\\gamma_i \\| W f_i + b]` of ``items`` (all items when None)."""
        if items is None:
            return torch.cat([self.i_embedding, self.item_linear(self.item_raw_features)], 1)
        return torch.cat([self.i_embedding[items], self.item_linear(self.item_raw_features[items])], 1)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        u = self.u_embedding[batch.users]
        p, n = self.item_embeddings(batch.pos), self.item_embeddings(batch.neg)
        terms = {"bpr": losses.bpr_loss((u * p).sum(1), (u * n).sum(1))}
        # MMRec's EmbLoss: unsquared Frobenius norms of the batch's rows, over the batch size
        # (each norm from the global batch's sum of squares: DDP gives one process's value, Batch.global_sum)
        norms = sum(batch.global_sum(x.square().sum()).sqrt() for x in (u, p, n))
        terms["reg"] = self.cfg.reg_weight * norms / batch.global_size()
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.u_embedding, self.item_embeddings()
