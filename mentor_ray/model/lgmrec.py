"""LGMRec (Guo et al., AAAI 2024) as MMRec implements it (``src/models/lgmrec.py``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import losses, ops
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier


@dataclass
class HyperNoise:
    """The randomness of one forward pass, drawn by :meth:`LGMRec.draw_noise` or given (parity tests).

    ``gumbel[m]``: modality m's standard Gumbel noise ``(items (n_items, H), users (n_users, H))``;
    ``keep[m]``: its dropout masks, same shapes, already scaled (entries 0 or 1 / (1 - p)); None: no dropout.
    """

    gumbel: dict[str, tuple[torch.Tensor, torch.Tensor]]
    keep: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None


class LGMRec(Recommender):
    r"""LGMRec: local (graph) embeddings of IDs and modalities plus global hypergraph embeddings.

    From `"LGMRec: Local and Global Graph Learning for Multimodal Recommendation"
    <https://arxiv.org/abs/2312.16400>`_ (Guo et al., AAAI 2024), in MMRec's version. With the normalised
    user-item adjacency :math:`\hat{A}`, the binary interactions :math:`R \in \{0,1\}^{U \times I}`,
    user degrees :math:`D_u`, item features :math:`F_m` and, per modality :math:`m`, a projection
    :math:`W_m` and hyperedge embeddings :math:`V_m` (:math:`H` hyperedges):

    .. math::
        E_c = \tfrac{1}{L+1} \sum_{l=0}^{L} \hat{A}^l [E_U; E_I], \qquad
        E_m = \hat{A}^{L_m} [D_u^{-1} R F_m W_m; \; F_m W_m], \qquad
        E_{loc} = E_c + \sum_m \mathrm{norm}(E_m)

    .. math::
        H_{i,m} = \mathrm{softmax}\big((F_m V_m + G)/\tau\big), \quad
        H_{u,m} = \mathrm{softmax}\big((R F_m V_m + G')/\tau\big), \quad
        \tilde{H} = \mathrm{drop}_p(H)

    .. math::
        Z^{(k)} = \tilde{H}_{i,m}^\top X_m^{(k-1)}, \quad X_m^{(k)} = \tilde{H}_{i,m} Z^{(k)}, \quad
        Y_m = \tilde{H}_{u,m} Z^{(K)}, \quad X_m^{(0)} = E_{c,I}, \qquad
        E = E_{loc} + \alpha \, \mathrm{norm}\big(\textstyle\sum_m [Y_m; X_m^{(K)}]\big)

    where :math:`G, G'` are standard Gumbel noise (``F.gumbel_softmax(hard=False)``), norm scales rows to
    unit L2 norm, and :math:`y_{ui} = e_u^\top e_i`. The objective, over a batch :math:`\mathcal{B}` of
    triplets :math:`(u, i, j)` with the batch's rows (repeats kept) :math:`E_U, E_I, E_J` of :math:`E`:

    .. math::
        \mathcal{L} = \frac{1}{|\mathcal{B}|} \sum_{(u,i,j)} -\log \sigma(y_{ui} - y_{uj})
        + \lambda_c \sum_{a < b} \big( \ell(Y_a, Y_b, \mathcal{B}_u) + \ell(X_a, X_b, \mathcal{B}_i) \big)
        + \frac{\lambda}{|\mathcal{B}|} \left( \|E_U\|_F + \|E_I\|_F + \|E_J\|_F \right)

    .. math::
        \ell(P, Q, S) = \sum_{s \in S} -\log \frac{\exp(\cos(p_s, q_s)/\tau)}{\sum_{t} \exp(\cos(p_s, q_t)/\tau)}

    with :math:`S` the batch's users (or positive items), repeats kept, and :math:`t` over ALL users (items).
    :meth:`loss` returns the terms ``bpr``, ``cl`` (:math:`\lambda_c` applied) and ``reg`` (:math:`\lambda`
    applied).

    Args:
        cfg (ModelConfig): the model's settings. It reads ``embedding_dim`` (:math:`d`, also the width of
            :math:`W_m`: MMRec's ``feat_embed_dim`` must equal it, as :math:`E_c + E_m` needs),
            ``n_layers`` (:math:`L`, MMRec's ``n_ui_layers``; 0 is its ``cf_model: mf``),
            ``lgmrec_mm_layers`` (:math:`L_m`), ``lgmrec_hyper_layers`` (:math:`K \ge 1`),
            ``lgmrec_hyper_num`` (:math:`H`), ``dropout`` (:math:`p`, MMRec's ``1 - keep_rate``),
            ``lgmrec_alpha`` (:math:`\alpha`), ``lgmrec_cl_weight`` (:math:`\lambda_c`), ``tau``
            (:math:`\tau`, Gumbel and contrastive temperature, MMRec's hard-coded 0.2) and ``reg_weight``
            (:math:`\lambda`).
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality -> ``(n_items, d_m)`` frozen item features (at least
            one), in the dataset's order: the first plays MMRec's ``v_feat``, the second its ``t_feat``.
        train_users, train_items (np.ndarray): the training pairs (:math:`R`, :math:`D_u`).

    Randomness: :meth:`draw_noise` draws, from torch's generator, in MMRec's order: the Gumbel noise of each
    modality (items, then users), then (training only) the dropout masks likewise, each as torch's own
    ``gumbel_softmax`` and (CPU) ``dropout`` draw it; so on CPU a torch seed gives MMRec's noise. :meth:`loss`
    and :meth:`user_item_embeddings` take a :class:`HyperNoise` to replay given noise instead.

    M modalities (MMRec has exactly two, ``v`` and ``t``): :math:`\sum_m \mathrm{norm}(E_m)` and
    :math:`\sum_m [Y_m; X_m]` add the modalities in the given order, and the contrastive loss sums
    :math:`\ell` over every pair :math:`a < b` in that order (anchor :math:`a`, negatives from :math:`b`); for
    two modalities this is MMRec's computation, operation for operation. One modality: no pair, ``cl`` is 0.

    MMRec's implementation details, followed here (the MENTOR paper's baselines ran with them; where the
    LGMRec paper's equations read otherwise, this is the version that was run):

    - The user side of :math:`E_m` is the mean of the user's items' projected features, propagated
      :math:`L_m` layers, last layer only (``mge``); :math:`E_c` is the mean of layers 0..L (``cge``).
    - Users' hyperedge logits are :math:`R F_m V_m`, a sum over the user's items (not a mean); the
      hyperedge matrices are dropped out (ratio ``1 - keep_rate``) once per training forward; one
      temperature (``self.tau = 0.2``) serves the Gumbel softmax and the contrastive loss.
    - The contrastive loss runs over the batch's users and positive items (repeats kept), summed, not
      averaged; it anchors the first modality against the second only.
    - Regularisation is :math:`\lambda` times the UNSQUARED Frobenius norms of the batch's final rows over
      the batch size (not a squared norm of the parameters); BPR is averaged over the batch.

    Departures from MMRec:

    - More or fewer than two modalities (above); MMRec's one-modality branch cannot run (it returns the
      undefined hypergraph embeddings).
    - Evaluation draws the Gumbel noise once per :meth:`user_item_embeddings` call (one per evaluation);
      MMRec redraws it for every batch of users in ``full_sort_predict``. Both evaluate with noise and
      without dropout (``model.eval()``).
    - The contrastive loss is computed as log-sum-exp minus the positive logit (MMRec: ``-log(exp / sum
      exp)``), which is the same number without overflow, by a fused kernel that never holds the (B, n)
      logits (:func:`~mentor_ray.model.losses.contrast_all`); the positive rows' normalisation is shared with
      the negatives' (same values).
    - :math:`\hat{A}` is the trainer's ``graph("ui")``, :math:`D^{-1/2} A D^{-1/2}` without MMRec's 1e-7 added
      to the degrees (a relative 1e-7 / degree difference).
    - Duplicate training pairs count once in :math:`R` (MMRec's sparse tensor would sum them; mentor_ray's
      datasets have none).
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor],
                 train_users: np.ndarray, train_items: np.ndarray):
        super().__init__()
        if not features:
            raise ValueError("LGMRec needs at least one feature modality")
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        self.modalities = list(features)
        d, h = self.cfg.embedding_dim, self.cfg.lgmrec_hyper_num
        # MMRec's order of initialisation: users, items, then per modality the projection and the hyperedges
        self.user_emb = xavier(n_users, d)
        self.item_emb = xavier(n_items, d)
        self.proj, self.hyper = nn.ParameterDict(), nn.ParameterDict()
        for m, f in features.items():
            self.proj[m] = xavier(f.shape[1], d)  # W_m (MMRec: item_image_trs / item_text_trs)
            self.hyper[m] = xavier(f.shape[1], h)  # V_m (MMRec: v_hyper / t_hyper)
            self.register_buffer(f"feat_{m}", f.float(), persistent=False)  # (n_items, d_m), frozen input
        # R (U x I, binary) and its transpose for the backward of spmm; graphs, not buffers (DDP)
        pairs = np.unique(np.asarray(train_users, dtype=np.int64) * n_items + np.asarray(train_items, dtype=np.int64))
        u, i = torch.from_numpy(pairs // n_items), torch.from_numpy(pairs % n_items)  # each pair once
        r = torch.sparse_coo_tensor(torch.stack([u, i]), torch.ones(u.numel()), (n_users, n_items),
                                    check_invariants=False).coalesce()  # the dataset's ids are in range
        self._r, self._r_t = r.to_sparse_csr(), r.t().coalesce().to_sparse_csr()
        # 1 / (degree + 1e-7) in float64, then float32: MMRec's num_inters (0 for a user without items)
        deg = torch.bincount(u, minlength=n_users).double()
        self.register_buffer("inv_deg", (1.0 / (deg + 1e-7)).float()[:, None], persistent=False)  # (U, 1)

    @classmethod
    def build(cls, cfg, ds) -> "LGMRec":
        return cls(cfg, ds.n_users, ds.n_items, ds.features, ds.train.users, ds.train.items)

    def set_graphs(self, ui_adj: torch.Tensor, item_adj: dict[str, torch.Tensor]) -> None:
        super().set_graphs(ui_adj, item_adj)
        self._graphs["r"], self._graphs["r.T"] = self._r, self._r_t  # moved with the others (graphs_to)

    # ------------------------------------------------------------------ randomness

    def draw_noise(self, train: bool) -> HyperNoise:
        """Gumbel noise of every modality (items, users), then with ``train`` and ``dropout > 0`` the
        dropout masks likewise: MMRec's order (its ``forward`` draws all Gumbel noise before any dropout)."""
        dev, h = self.user_emb.device, self.cfg.lgmrec_hyper_num
        shapes = ((self.n_items, h), (self.n_users, h))
        # as F.gumbel_softmax draws it: -log(Exp(1))
        gumbel = {m: tuple(-torch.empty(s, device=dev).exponential_().log() for s in shapes) for m in self.modalities}
        keep = None
        q = 1.0 - self.cfg.dropout
        if train and self.cfg.dropout > 0:  # as CPU dropout draws it: Bernoulli(1 - p), scaled by 1 / (1 - p)
            keep = {m: tuple(torch.empty(s, device=dev).bernoulli_(q).div_(q) for s in shapes)
                    for m in self.modalities}
        return HyperNoise(gumbel, keep)

    # ------------------------------------------------------------------ forward

    def forward(self, noise: HyperNoise) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """(N, d) final embeddings, users first, and each modality's hypergraph embeddings (users, items)."""
        cfg, n_u, tau = self.cfg, self.n_users, self.cfg.tau
        r, r_t = self.graph("r"), self.graph("r.T")
        # hyperedge dependencies, all modalities first (MMRec's forward)
        assign = {}
        for m in self.modalities:
            i_logit = getattr(self, f"feat_{m}") @ self.hyper[m]  # (I, H)
            u_logit = ops.spmm(r, i_logit, r_t)  # (U, H): summed over the user's items
            g_i, g_u = noise.gumbel[m]
            assign[m] = (((i_logit + g_i) / tau).softmax(dim=1), ((u_logit + g_u) / tau).softmax(dim=1))
        cge = self._collaborative()  # (N, d)
        mge = None
        for m in self.modalities:
            e = F.normalize(self._modal(m))
            mge = e if mge is None else mge + e
        lge = cge + mge  # local embeddings
        hyper, ghe = {}, None
        for m in self.modalities:
            i_h, u_h = assign[m]
            if noise.keep is not None:
                i_h, u_h = i_h * noise.keep[m][0], u_h * noise.keep[m][1]
            hyper[m] = self._hypergraph(i_h, u_h, cge[n_u:])
            both = torch.cat(hyper[m])  # (N, d)
            ghe = both if ghe is None else ghe + both
        return lge + cfg.lgmrec_alpha * F.normalize(ghe), hyper

    def _collaborative(self) -> torch.Tensor:
        """LightGCN: the mean of layers 0..L of the ID embeddings (MMRec's ``cge``)."""
        h = torch.cat([self.user_emb, self.item_emb])
        layers = [h]
        for _ in range(self.cfg.n_layers):
            h = ops.spmm(self.graph("ui"), h, self.graph("ui.T"))
            layers.append(h)
        return torch.stack(layers, dim=1).mean(dim=1)

    def _modal(self, m: str) -> torch.Tensor:
        """Projected item features, users as their items' mean, propagated ``lgmrec_mm_layers`` (``mge``)."""
        items = getattr(self, f"feat_{m}") @ self.proj[m]  # (I, d)
        users = ops.spmm(self.graph("r"), items, self.graph("r.T")) * self.inv_deg  # (U, d)
        h = torch.cat([users, items])
        for _ in range(self.cfg.lgmrec_mm_layers):
            h = ops.spmm(self.graph("ui"), h, self.graph("ui.T"))
        return h

    def _hypergraph(self, i_h: torch.Tensor, u_h: torch.Tensor, items: torch.Tensor):
        """K hypergraph layers from the items' collaborative embeddings: (users (U, d), items (I, d))."""
        x = items
        for _ in range(self.cfg.lgmrec_hyper_layers):  # >= 1 (the config's bound; MMRec fails with 0)
            lat = i_h.T @ x  # (H, d): hyperedge embeddings
            x = i_h @ lat
            y = u_h @ lat
        return y, x

    # ------------------------------------------------------------------ loss and scores

    def loss(self, batch: Batch, noise: HyperNoise | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        noise = noise if noise is not None else self.draw_noise(train=True)
        e, hyper = self(noise)
        u, p, n = e[batch.users], e[self.n_users + batch.pos], e[self.n_users + batch.neg]
        terms = {"bpr": losses.bpr_loss((u * p).sum(1), (u * n).sum(1))}
        cl = e.new_zeros(())
        for a, b in itertools.combinations(self.modalities, 2):
            (ua, ia), (ub, ib) = hyper[a], hyper[b]
            cl = cl + (self._contrast(ua, ub, batch.users) + self._contrast(ia, ib, batch.pos))
        terms["cl"] = self.cfg.lgmrec_cl_weight * cl * batch.world  # a batch sum: DDP's global sum (Batch.world)
        # unsquared Frobenius norms (MMRec), from the global batch's sums of squares (DDP: Batch.global_sum)
        reg = sum(batch.global_sum(x.square().sum()).sqrt() for x in (u, p, n)) / batch.global_size()
        terms["reg"] = self.cfg.reg_weight * reg
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    def _contrast(self, anchor: torch.Tensor, other: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """sum over ``rows`` (repeats kept) of -log softmax_t(cos(anchor_s, other_t) / tau) at t = s: the fused
        log-sum-exp of :func:`~mentor_ray.model.losses.contrast_all` (a mean) times the rows."""
        return losses.contrast_all(anchor, other, rows, self.cfg.tau) * rows.shape[0]

    @torch.no_grad()
    def user_item_embeddings(self, noise: HyperNoise | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """MMRec's evaluation: fresh Gumbel noise, no dropout."""
        e, _ = self(noise if noise is not None else self.draw_noise(train=False))
        return e[: self.n_users], e[self.n_users :]
