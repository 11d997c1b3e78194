"""MENTOR (Xu et al., AAAI 2025): the model, its forward pass and its loss.

:class:`Mentor` states the model's equations, its loss terms, the settings it reads and where it
departs from the paper; ``docs/paper_notes.md`` has the equation-to-code map and each departure with
the authors' code alongside. The losses are :mod:`mentor_ray.model.losses`, the kernels
:mod:`mentor_ray.model.ops`; the baselines live in :mod:`mentor_ray.model.baselines`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import losses, ops
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier


@dataclass
class Reps:
    """One forward pass: final representations of every node (users first, then items)."""

    modalities: list[str]
    raw0: torch.Tensor  # (N, d (1 + M)) layer 0 before normalisation: [ID | m_1 | ... | m_M]
    ids: torch.Tensor  # (N, d) ID modality after Eq. 1-3
    ui: dict[str, torch.Tensor]  # m -> (N, d) feature modality after Eq. 1-3 (user-item graph only)
    final: dict[str, torch.Tensor]  # m -> (N, d) ... plus the item-item aggregation, Eq. 6
    fused: torch.Tensor  # (N, M d) Eq. 7: [w_1 final_1 || ... || w_M final_M]
    weights: torch.Tensor  # (M,) fusion weights
    noise: torch.Tensor | None = None  # (N, 2 M d) propagated perturbation: view 1's blocks, then view 2's

    def noise_block(self, v: int, m: str) -> torch.Tensor:
        d = self.ids.shape[1]
        k = v * len(self.modalities) + self.modalities.index(m)
        return self.noise[:, k * d : (k + 1) * d]

    def view(self, v: int, m: str) -> torch.Tensor:
        """Perturbed view ``v`` (0 or 1) of modality ``m`` (Eq. 20): clean user-item output + noise."""
        return self.ui[m] + self.noise_block(v, m)


def share(n: int, batch: Batch) -> tuple[int, int]:
    """(start, end): rank ``batch.rank``'s contiguous share of ``n`` rows among ``batch.world`` ranks, sizes
    differing by at most one (``(0, n)`` in one process)."""
    return n * batch.rank // batch.world, n * (batch.rank + 1) // batch.world


class Mentor(Recommender):
    r"""MENTOR: a multimodal graph recommender trained with multi-level self-supervision.

    From `"MENTOR: Multi-level Self-supervised Learning for Multimodal Recommendation"
    <https://arxiv.org/abs/2402.19407>`_ (Xu et al., AAAI 2025). Every modality (ID, and each feature
    modality :math:`m`) propagates its layer-0 embeddings over the normalised user-item graph :math:`A`
    (Eq. 1-3); each feature modality's items then aggregate their frozen kNN neighbours (Eq. 6); the
    feature modalities are fused with trainable weights (Eq. 7), and the fused representation alone
    scores a user-item pair (Eq. 23):

    .. math::
        \bar{E}_m = \sum_{l=0}^{L} A^l E_m^{(0)}, \qquad
        \ddot{E}_{i,m} = \bar{E}_{i,m} + A_m^{h} \bar{E}_{i,m}, \qquad
        \ddot{E}_f = [w_1 \ddot{E}_{m_1} \,\|\, \cdots \,\|\, w_M \ddot{E}_{m_M}], \qquad
        y_{ui} = \ddot{E}_{f,u}^\top \ddot{E}_{f,i}

    where :math:`E_m^{(0)}` holds the users' preference embeddings and the items' projected features
    (for ID: the ID embeddings; ID has no item graph and serves the alignment only), :math:`A_m` is the
    kNN adjacency of modality :math:`m`, :math:`h` is ``item_layers`` and
    :math:`w = [\alpha_1, \dots, \alpha_{M-1}, 1 - \sum_k \alpha_k]`. The objective (Eq. 22-24) is

    .. math::
        \mathcal{L} = \mathcal{L}_{bpr}
        + \lambda_{align} (\mathcal{L}_{L1} + \mathcal{L}_{L2} + \mathcal{L}_{L3})
        + \lambda_f \mathcal{L}_f + \lambda_g \mathcal{L}_g
        + \frac{\lambda_E}{B} \sum_{r \in \mathrm{batch}} \sum_m \|E_{m,r}^{(0)}\|_2^2

    and :meth:`loss` returns its terms, each already weighted, under these keys:

    - ``bpr``: :math:`\mathcal{L}_{bpr}`, BPR on the fused scores of the batch's triplets (Eq. 23).
    - ``reg``: :math:`\lambda_E \|E^{(0)}\|^2`, L2 on the batch's layer-0 feature-modality rows (its
      users, positives and negatives; before the normalisation), divided by the batch size (Eq. 24).
    - ``align``: :math:`\lambda_{align} (\mathcal{L}_{L1} + \mathcal{L}_{L2} + \mathcal{L}_{L3})`, gaps
      between the modalities' per-node means and variances (Eq. 8-16), up to the variant's level.
    - ``mask_f``: :math:`\lambda_f \mathcal{L}_f`, feature masking of the fused representation (Eq. 17, 22).
    - ``perturb_g``: :math:`\lambda_g \mathcal{L}_g`, InfoNCE between two noise-perturbed views of each
      feature modality, over users and over items (Eq. 18-22).

    ``align``, ``mask_f`` and ``perturb_g`` are there only when the variant turns them on
    (:data:`mentor_ray.common.config.VARIANTS`). Shapes: ``N = n_users + n_items`` nodes, users first;
    ``d = embedding_dim``; ``M`` feature modalities.

    Args:
        cfg (ModelConfig): the model's settings (a :class:`~mentor_ray.common.config.TrainConfig` is cut
            down to them). The model reads:

            - ``variant``: the alignment levels (Eq. 9-16) and whether feature masking (Eq. 17) and
              graph perturbation (Eq. 18-21) are on.
            - ``embedding_dim``: :math:`d`, the width of every modality (Eq. 1-3).
            - ``n_layers``: :math:`L`, user-item graph layers (Eq. 1-3, 18-20).
            - ``layer_combine``: ``sum`` of layers 0..L (Eq. 3, 20) or their ``mean``.
            - ``normalize_input``: L2-normalise every layer-0 row (the input of Eq. 1-3).
            - ``item_layers``: :math:`h`, item-item graph hops (Eq. 6).
            - ``reg_weight``: :math:`\lambda_E` (Eq. 24).
            - ``lambda_align``: :math:`\lambda_{align}` (the alignment loss after Eq. 16).
            - ``align_stats``: statistics per ``node`` or over the whole ``matrix`` (Eq. 8).
            - ``dropout``: the masking ratio :math:`p` (Eq. 17).
            - ``lambda_f``, ``lambda_g``: :math:`\lambda_f`, :math:`\lambda_g` (Eq. 22).
            - ``tau``: the InfoNCE temperature :math:`\tau` (Eq. 21).
            - ``infonce_scope``: InfoNCE over ``all`` users and items (Eq. 21) or the ``batch``'s.
            - ``perturb_noise``, ``perturb_eps``: the noise :math:`\Delta` and its scale (Eq. 18-19).
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality name -> ``(n_items, d_m)`` item features (at least
            one modality), projected by ``Linear(d_m, 4d) -> LeakyReLU -> Linear(4d, d)`` (layer 0).
        infonce_chunk (int): rows per block of the chunked InfoNCE (Eq. 21; speed and memory only); 0: the
            device's default (:func:`~mentor_ray.model.ops.infonce_chunk`).
        infonce_threads (int): CPU threads running the InfoNCE blocks side by side (Eq. 21; speed only).

    Departures (each with the authors' code alongside in ``docs/paper_notes.md``):

    - Layer 0: the feature projection and the L2 normalisation of every layer-0 row
      (``normalize_input``) are the authors' code; the paper is silent.
    - Eq. 3: ``layer_combine=mean`` divides the layer sum by L + 1 (LightGCN's mean); the default is the sum.
    - Eq. 6: the item graph starts from the user-item output and runs ``item_layers`` hops (the paper
      leaves both open); the graph stage normalises it by ``knn_norm`` (default ``row``, A/k, the
      authors' numbers; ``none`` is Eq. 6 as written).
    - Eq. 7 for M modalities: ``w = [α_1, ..., α_(M-1), 1 - Σα]``, initialised to 1/M (exactly Eq. 7 for two).
    - Eq. 8: population variance; ``align_stats=matrix`` (one value over the whole matrix, the authors')
      is an option.
    - Eq. 9-16: per-node gaps averaged over nodes; with more than two feature modalities, level 1
      aligns every pair.
    - Eq. 17: the BM3 construction the wording describes: target ``sg(dropout_p(Ë))``, online
      ``Ë W + b``; 1 - cosine averaged over users and over items.
    - Eq. 18-19: Δ ~ U(0, 1) drawn per node and dimension, scaled by ``perturb_eps`` (1 by default);
      ``perturb_noise=simgcl`` (the authors' ``sign(h) normalize(U) eps``) is an option.
    - Eq. 21: cosine similarity / τ on L2-normalised views, averaged over users and over items (the
      paper: dot products / τ, summed); ``infonce_scope=batch`` (the batch's unique users and positive
      items, as SimGCL) is an option.
    - Eq. 23: BPR averaged over the batch, not summed.
    - Eq. 24: λ_E on the squared norms of the batch's layer-0 feature rows divided by the batch size, not
      on the whole parameter matrices.

    Data parallelism (``batch.world`` > 1 ranks, ``batch.rank`` this one; ``docs/paper_notes.md``, *Eq. 21
    across ranks*). DDP averages the ranks' gradients. The batch terms (``bpr``, ``reg``, the batch-scope
    InfoNCE) are means over each rank's part of the batch, as ever. The full-graph terms that are means
    over nodes are split by rows: each rank takes a contiguous range of the users and one of the items
    (of all nodes, for the alignment), computes only those rows' terms, sums them and divides by the
    global row count, times ``world`` (DDP divides by it), so that the average over ranks is the single
    process's value and gradient; the trainer averages the reported terms alike. Split:

    - ``perturb_g`` with ``infonce_scope=all`` (Eq. 21): a rank's user (item) rows against ALL user (item)
      columns, the chunked InfoNCE of its rows only: the step's largest cost, divided by ``world``.
    - ``mask_f`` (Eq. 17): the predictor and the cosine of a rank's rows only. Its dropout mask is drawn
      for every row on every rank, so that the global generator stays in step with one process's.
    - ``align`` with ``align_stats=node`` (Eq. 8-16, per-node gaps averaged over nodes): the moments and
      gaps of a rank's node rows only (cheap, O(N d), but it costs nothing to split).

    Replicated on every rank (each computes the same value; the average of identical gradients is that
    gradient, so these need no scaling):

    - the feature MLPs, the propagation of every modality (Eq. 1-3, 6) and the fusion (Eq. 7): every
      split term's rows depend on every node's layer 0 through the graph, and the InfoNCE's columns are
      every node; splitting them needs a graph partition with halo exchange (not done).
    - the perturbation noise (Eq. 18-20): drawn in full from torch's global generator, seeded per epoch
      on every rank alike, and propagated over the whole graph (the InfoNCE's columns need every row).
    - ``align`` with ``align_stats=matrix``: gaps between whole-matrix means and variances, |mean_a -
      mean_b|, which is not a sum over nodes; splitting it needs an all-reduce of the moments inside the
      forward pass for an O(N d) term.
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor],
                 infonce_chunk: int = 0, infonce_threads: int = 2):
        super().__init__()
        if not features:
            raise ValueError("MENTOR needs at least one feature modality")
        self.cfg = as_model_config(cfg)
        self.spec = self.cfg.spec
        self.infonce_chunk, self.infonce_threads = infonce_chunk, infonce_threads  # speed and memory only
        self.n_users, self.n_items = n_users, n_items
        self.modalities = list(features)
        d, n_mod = cfg.embedding_dim, len(features)
        # Users: [ID embedding | preference per feature modality], one parameter, blocks of d.
        blocks = [nn.init.xavier_uniform_(torch.empty(n_users, d)) for _ in range(1 + n_mod)]
        self.user_emb = nn.Parameter(torch.cat(blocks, 1))
        self.item_id = xavier(n_items, d)
        self.proj = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(f.shape[1], 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))
                for m, f in features.items()
            }
        )
        for m, f in features.items():
            self.register_buffer(f"feat_{m}", f.float(), persistent=False)  # (n_items, d_m), frozen input
        self.fusion = nn.Parameter(torch.full((n_mod - 1,), 1.0 / n_mod))  # Eq. 7 α
        # Eq. 17 W, b; only when feature masking is on (DDP rejects parameters that get no gradient)
        self.predictor = nn.Linear(n_mod * d, n_mod * d) if self.spec.feature_masking else None

    @classmethod
    def build(cls, cfg, ds) -> "Mentor":
        return cls(cfg, ds.n_users, ds.n_items, ds.features, cfg.infonce_chunk, cfg.infonce_threads)

    def fusion_weights(self) -> torch.Tensor:
        """(M,) = [α_1, ..., 1 - sum α]; two modalities: [α, 1 - α] (Eq. 7)."""
        return torch.cat([self.fusion, 1.0 - self.fusion.sum().reshape(1)])

    def forward(self, perturb: bool = False) -> Reps:
        """One pass from layer 0 through Eq. 1-3, 6 and 7 for every node, as :class:`Reps`; with
        ``perturb`` also the propagated noise of both perturbed views of each feature modality
        (Eq. 18-20), computed without autograd (:meth:`_view_noise`)."""
        d = self.cfg.embedding_dim
        items0 = torch.cat([self.item_id] + [self.proj[m](getattr(self, f"feat_{m}")) for m in self.modalities], 1)
        raw0 = torch.cat([self.user_emb, items0])  # (N, d (1 + M)): [ID | m_1 | ... | m_M]
        x = ops.block_normalize(raw0, d) if self.cfg.normalize_input else raw0  # (N, d (1 + M))
        # Eq. 1-3: one sparse matmul per layer for all modalities, handed back one tensor per modality
        ids, *blocks = ops.propagate_blocks(x, self.graph("ui"), self.graph("ui.T"), self.cfg.n_layers, d)
        mean = 1.0 / (self.cfg.n_layers + 1) if self.cfg.layer_combine == "mean" else None
        if mean:  # LightGCN's layer mean, a departure from Eq. 3's sum
            ids, blocks = ids * mean, [b * mean for b in blocks]
        ui = dict(zip(self.modalities, blocks))  # m -> (N, d)
        final = {m: ui[m] + self._item_graph(m, ui[m]) for m in self.modalities}  # Eq. 6 (users: + 0)
        w = self.fusion_weights()
        fused = torch.cat([w[k] * final[m] for k, m in enumerate(self.modalities)], 1)  # Eq. 7
        noise = self._view_noise(x[:, d:]) if perturb else None
        if noise is not None and mean:
            noise.mul_(mean)  # the views are layer sums too (Eq. 20)
        return Reps(self.modalities, raw0, ids, ui, final, fused, w, noise)

    def _item_graph(self, m: str, e: torch.Tensor) -> torch.Tensor:
        """Eq. 6: (N, d) kNN aggregation of modality ``m`` over ``item_layers`` hops from the
        user-item output; the graph is padded to N x N with empty user rows, so user rows are 0."""
        a = e
        for _ in range(self.cfg.item_layers):
            a = ops.spmm(self.graph(f"item.{m}"), a, self.graph(f"item.{m}.T"))
        return a if self.cfg.item_layers else torch.zeros_like(e)

    @torch.no_grad()
    def _view_noise(self, x0: torch.Tensor) -> torch.Tensor:
        """Eq. 18-20 for both views of every feature modality, exploiting linearity.

        A perturbed view runs h'_l = A h'_(l-1) + Δ_l from the same layer 0. Writing h'_l = h_l + c_l
        with the clean layer h_l gives c_l = A c_(l-1) + Δ_l, c_0 = 0, so the view's layer sum is the
        clean one plus sum_l c_l. The noise does not depend on the parameters, so the views cost one
        gradient-free sparse matmul per extra layer instead of a second differentiable propagation.
        ``x0``: layer 0 of the feature columns, (N, M d); only the ``simgcl`` noise needs the clean
        layers (for sign(h'_l)), which it recomputes without gradient.
        Returns (N, 2 M d): view 1's blocks, then view 2's.
        """
        n, width = x0.shape[0], 2 * x0.shape[1]
        adj = self.graph("ui")
        c, total, h = None, None, torch.cat([x0, x0], 1) if self.cfg.perturb_noise == "simgcl" else None
        for _ in range(self.cfg.n_layers):
            prop = None if c is None else ops.spmm(adj, c)  # A c_(l-1)
            if self.cfg.perturb_noise == "uniform":
                c = ops.uniform(n, width, device=x0.device).to(x0.dtype).mul_(self.cfg.perturb_eps)  # float32: as is
            else:
                h = ops.spmm(adj, h)  # clean layer l, both views
                c = self._simgcl_noise(h if prop is None else h + prop)  # sign of A h'_(l-1)
            if prop is not None:
                c.add_(prop)
            total = c if total is None else total.add_(c)  # c is fresh every layer: no copy needed
        return total if total is not None else x0.new_zeros(n, width)

    def _simgcl_noise(self, pre: torch.Tensor) -> torch.Tensor:
        """The authors' noise: eps * sign(h) * normalize(U(0,1)^d), per node and modality block."""
        d = self.cfg.embedding_dim
        u = ops.uniform(*pre.shape, device=pre.device).to(pre.dtype)
        u = F.normalize(u.view(pre.shape[0], -1, d), dim=2).view_as(pre)
        return self.cfg.perturb_eps * torch.sign(pre) * u

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The objective (Eq. 22-24) on ``batch``: the total, and each weighted term as a float under
        its key (``bpr``, ``reg``, and ``align``, ``mask_f``, ``perturb_g`` as the variant has them)."""
        cfg, spec = self.cfg, self.spec
        with ops.part("propagation"):  # feature MLPs, Eq. 1-3, 6, 7 and the views' noise: every rank in full
            reps = self(perturb=spec.graph_perturbation)
        n_u, d, b = self.n_users, cfg.embedding_dim, len(batch.users)
        world = batch.world
        with ops.part("batch terms"):
            rows = torch.cat([batch.users, n_u + batch.pos, n_u + batch.neg])  # one gather per tensor
            u, p, n = reps.fused[rows].split(b)
            terms = {"bpr": losses.bpr_loss((u * p).sum(1), (u * n).sum(1))}  # Eq. 23
            terms["reg"] = cfg.reg_weight * losses.l2_reg([reps.raw0[rows][:, d:]], b)  # Eq. 24: E_v, E_t rows
        with ops.part("align, mask"):
            if spec.align_levels:
                terms["align"] = cfg.lambda_align * self._alignment_loss(reps, batch)  # Eq. 8-16
            if spec.feature_masking:
                f = reps.fused
                shares = None if world == 1 else (share(n_u, batch), share(self.n_items, batch))
                mask = losses.feature_masking_loss(f[:n_u], f[n_u:], self.predictor, cfg.dropout, shares)  # Eq. 17
                terms["mask_f"] = cfg.lambda_f * (mask if shares is None else mask * world)
        if spec.graph_perturbation:
            with ops.part("infonce"):
                terms["perturb_g"] = cfg.lambda_g * self._perturbation_loss(reps, batch)  # Eq. 21
        total = sum(terms.values())
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def _alignment_loss(self, reps: Reps, batch: Batch) -> torch.Tensor:
        """Eq. 8-16, unweighted; per-node stats over this rank's share of the nodes when distributed."""
        levels = self.spec.align_levels
        if batch.world == 1 or self.cfg.align_stats == "matrix":  # whole-matrix stats: not a sum over nodes
            return losses.alignment_loss(self.distribution_stats(reps), self.modalities, levels)[0]
        n = self.n_users + self.n_items
        s, e = share(n, batch)
        stats = self.distribution_stats(reps, slice(s, e))
        return losses.alignment_loss(stats, self.modalities, levels, count=n)[0] * batch.world

    def distribution_stats(self, reps: Reps, rows: slice | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Eq. 8 for ID, every feature modality and the fused modality: (mean, variance) per node
        (``align_stats=node``) or over the whole matrix (``matrix``), from first and second moments.
        ``rows``: only these nodes (one rank's share; per-node stats only)."""
        d = self.cfg.embedding_dim
        pick = (lambda x: x) if rows is None else (lambda x: x[rows])
        moments = {m: losses.block_moments(pick(x), d) for m, x in reps.final.items()}  # (N, 1) each
        moments["id"] = losses.block_moments(pick(reps.ids), d)
        w, n_mod = reps.weights, len(self.modalities)
        moments["fused"] = (  # fused = [w_k E_k]: its moments follow from the modalities'
            sum(w[k] * moments[m][0] for k, m in enumerate(self.modalities)) / n_mod,
            sum(w[k] ** 2 * moments[m][1] for k, m in enumerate(self.modalities)) / n_mod,
        )
        whole = self.cfg.align_stats == "matrix"
        return {name: losses.moments_to_stats(mu, sq, whole_matrix=whole) for name, (mu, sq) in moments.items()}

    def _perturbation_loss(self, reps: Reps, batch: Batch) -> torch.Tensor:
        """Eq. 21 summed over feature modalities: InfoNCE of users and of items between the views.

        All scope with ``batch.world`` > 1: this rank's share of the user rows and of the item rows,
        against every column, each part's sum over its rows / the row count, times ``world`` (the class
        docstring, *Data parallelism*)."""
        cfg, n_u, world = self.cfg, self.n_users, batch.world
        pairs = []  # (rows of view 1, all rows of view 2, first row, row count): one InfoNCE each
        if cfg.infonce_scope == "batch":  # as SimGCL: the batch's unique users and positive items
            users, items = torch.unique(batch.users), n_u + torch.unique(batch.pos)
            rows = torch.cat([users, items])
            for m in self.modalities:
                clean = reps.ui[m][rows]  # one gather; both views add their noise to it
                v0, v1 = (clean + reps.noise_block(v, m)[rows] for v in (0, 1))
                pairs += [(v0[: len(users)], v1[: len(users)], 0, None), (v0[len(users) :], v1[len(users) :], 0, None)]
        elif world == 1:
            for m in self.modalities:
                v0, v1 = reps.view(0, m), reps.view(1, m)
                pairs += [(v0[:n_u], v1[:n_u], 0, None), (v0[n_u:], v1[n_u:], 0, None)]
        else:  # this rank's rows of view 1 against every row of view 2, users and items apart
            for m in self.modalities:
                v1 = reps.view(1, m)
                for lo, hi in ((0, n_u), (n_u, n_u + self.n_items)):
                    s, e = share(hi - lo, batch)
                    v0 = reps.ui[m][lo + s : lo + e] + reps.noise_block(0, m)[lo + s : lo + e]
                    pairs.append((v0, v1[lo:hi], s, hi - lo))

        chunk = ops.infonce_chunk(self.infonce_chunk, reps.fused.device)

        def nce(pair):
            v0, v1, start, count = pair
            return losses.info_nce_chunked(v0, v1, cfg.tau, chunk, start, count)

        # Side-by-side blocks pay off only for large blocks (all columns x a chunk), and never beyond torch's
        # thread budget (a Ray worker with one CPU gets one thread; oversubscribed cores stall OpenMP regions).
        big = max(pair[1].shape[0] for pair in pairs) >= ops.PARALLEL_INFONCE_MIN_ROWS
        workers = min(self.infonce_threads, torch.get_num_threads()) if big else 1
        parts = ops.parallel_cpu(nce, pairs, workers) if reps.fused.device.type == "cpu" else map(nce, pairs)
        total = sum(parts, reps.fused.new_zeros(()))
        return total * world if world > 1 and cfg.infonce_scope == "all" else total

    @torch.no_grad()
    def modality_item_embeddings(self) -> dict[str, torch.Tensor]:
        """The representations the alignment acts on (Eq. 8-13): ID after Eq. 1-3, each feature modality
        after Eq. 6, item rows."""
        reps = self(perturb=False)
        return {"id": reps.ids[self.n_users:], **{m: reps.final[m][self.n_users:] for m in self.modalities}}

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        f = self(perturb=False).fused
        return f[: self.n_users], f[self.n_users :]
