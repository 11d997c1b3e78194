"""SLMRec (Tao et al., IEEE TMM 2022) as MMRec implements it (``src/models/slmrec.py``).

``docs/baselines/slmrec.md`` lists each departure with the MMRec line it concerns, and
``tests/test_parity_slmrec.py`` checks losses, gradients, one optimiser step and scores against MMRec's own class.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import ops
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier

SSL_TASKS = ("FAC",)  # the self-supervised tasks implemented (MMRec's SLMRec.yaml: FAC)


class SLMRec(Recommender):
    r"""SLMRec: LightGCN per modality, fused, trained by in-batch InfoNCE plus fine-and-coarse contrast (FAC).

    From `"Self-supervised Learning for Multimedia Recommendation" <https://ieeexplore.ieee.org/document/9811387>`_
    (Tao et al., IEEE TMM 2022), in MMRec's version. With the normalised user-item adjacency :math:`\hat{A}`,
    user and item ID embeddings :math:`E_U, E_I`, and per modality :math:`m = 1..M` the row-L2-normalised
    item features :math:`F_m` and a projection :math:`(W_m, b_m)`, every modality, the IDs included
    (:math:`m = 0`), propagates with the SAME user ID embeddings:

    .. math::
        P_0 = E_I, \quad P_m = F_m W_m^\top + b_m, \qquad
        [\bar{E}^{(m)}_U; \bar{E}^{(m)}_I] = \frac{1}{L+1} \sum_{l=0}^{L} \hat{A}^l [E_U; P_m]

    .. math::
        Z_U = [\bar{E}^{(0)}_U \| \cdots \| \bar{E}^{(M)}_U] W_U^\top + b_U, \qquad
        Z_I = [\bar{E}^{(0)}_I \| \cdots \| \bar{E}^{(M)}_I] W_I^\top + b_I, \qquad y_{ui} = z_u^\top z_i

    Over a batch of :math:`B` pairs :math:`(u_b, i_b)` (the sampled negatives are not used), with
    :math:`\mathrm{nce}(P, Q, \tau) = -\frac{1}{B} \sum_b \log \mathrm{softmax}_c(p_b^\top q_c / \tau)_b` (MMRec's
    ``CrossEntropyLoss`` with labels ``arange(B)``; repeats in the batch are negatives too):

    .. math::
        \mathcal{L} = \mathrm{nce}\big(\mathrm{norm}(Z_{U,u}), \mathrm{norm}(Z_{I,i}), \tau\big)
        + \alpha \sum_{k: m_k} \mathrm{nce}\big(s_k, \; \bar{E}^{(m_k)}_{I,i} H_k^\top + c_k, \; \tau_s\big)
        + \frac{w}{2} \sum_{\theta} \|\theta\|^2

    with the FAC chain :math:`s_0 = \bar{E}^{(0)}_{I,i}`, :math:`s_k = s_{k-1} G_k^\top + g_k` (:math:`k = 1..K`;
    no normalisation), stage :math:`k` contrasting modality :math:`m_k` (where it has one) through its head
    :math:`(H_k, c_k)`; norm scales rows to unit L2 norm. The last term is MMRec's Adam ``weight_decay``
    :math:`w` over every parameter, written as a loss term (the same gradient, :math:`w \theta`).
    :meth:`loss` returns the terms ``infonce``, ``ssl`` (:math:`\alpha` applied) and ``weight_decay``.

    The FAC stages (MMRec's ``fac``: the paper's chain ID -> +visual -> +acoustic -> +textual): for M = 2
    in the dataset's order, stages (1, none, 2), the stage without a modality being MMRec's acoustic link
    ``g_iv_iva``, which it keeps while its acoustic contrast is commented out; M = 1: one stage (MMRec's
    ``kwai`` branch); M >= 3: stages (1, ..., M), the paper's (visual, acoustic, textual) for M = 3. Every
    stage is :math:`d` wide except the last, :math:`\lfloor d/2 \rfloor` when there are several
    (``g_iva_ivat``, ``g_t_ivat``). For M = 2 in the order (image, text) this is MMRec's computation with
    its ``v_feat``, ``t_feat``: stage 1 is ``g_i_iv`` / ``g_v_iv``, stage 2 ``g_iv_iva``, stage 3
    ``g_iva_ivat`` / ``g_t_ivat``; the fusions concatenate ``[ID, image, text]``.

    Args:
        cfg (ModelConfig): the model's settings. It reads ``embedding_dim`` (:math:`d`, MMRec ``recdim``),
            ``n_layers`` (:math:`L`, MMRec ``layer_num``), ``tau`` (:math:`\tau`, MMRec ``temp``),
            ``slmrec_ssl_temp`` (:math:`\tau_s`), ``slmrec_ssl_alpha`` (:math:`\alpha`),
            ``slmrec_weight_decay`` (:math:`w`) and ``slmrec_ssl_task`` (``FAC`` only). MMRec's ``reg`` is
            read by no computation of its SLMRec, so it has no setting here.
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality -> ``(n_items, d_m)`` frozen item features (at least
            one), in the dataset's order.

    Graph: :meth:`set_graphs` gives :math:`\hat{A}` (``graph("ui")``, MMRec ``adj_type: pre``). No randomness:
    FAC draws nothing, and MMRec's ``dropout_rate`` serves only the tasks not implemented (below).

    Data parallelism: the two InfoNCE terms contrast every row with the whole batch. Under DDP each rank
    gathers the other ranks' columns (with their gradient), so that the loss is the global batch's.

    MMRec's choices, followed here (the MENTOR paper's baselines ran with them):

    - The training objective ignores the sampled negatives; MMRec's ``reg`` (a grid axis of its yaml) is
      read by nothing; ``getEmbedding``'s layer-0 rows are computed and unused.
    - Scores are those of the embeddings of the last training batch (MMRec's ``full_sort_predict`` uses the
      ``all_users``, ``all_items`` saved by ``calculate_loss``: one optimiser step stale); before any
      training step, a fresh forward.
    - The FAC projections are not normalised; the main InfoNCE's rows are.

    Departures from MMRec:

    - Only ``ssl_task: FAC`` (MMRec's setting). MMRec's ``FD``, ``FM`` and ``FD+FM`` read
      ``config["data.input.dataset"]`` and the acoustic ``a_dense_emb``, which its SLMRec never defines, so
      they fail in MMRec; ``mm_fusion_mode: mean`` fails too (the fusion layers are built for ``concat``'s
      width) and ``init: normal`` names a missing ``embedding_item_ID``: neither has a setting here.
    - The weight decay is a loss term (above): Adam's coupled ``weight_decay`` adds :math:`w\theta` to the
      gradient, so the step is the same; the reported loss includes it. MMRec's unused ``g_a_iva`` (for
      M = 2) is not built, so it is neither a parameter nor decayed (MMRec's Adam skips it: no gradient).
    - Scores are :math:`z_u^\top z_i` (MMRec: their sigmoid, the same ranking).
    - :math:`\hat{A}` has no 1e-8 added to the degrees (MMRec's ``pre``): degrees are at least 1.
    - Any number of modalities, not only two (above).
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor]):
        super().__init__()
        if not features:
            raise ValueError("SLMRec needs at least one feature modality")
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        if self.cfg.slmrec_ssl_task not in SSL_TASKS:
            raise ValueError(f"SLMRec: ssl_task {self.cfg.slmrec_ssl_task!r} is not implemented ({SSL_TASKS})")
        self.modalities = list(features)
        n_mod, d = len(features), self.cfg.embedding_dim
        self.user_embedding = xavier(n_users, d)
        self.item_embedding = xavier(n_items, d)
        self.dense = nn.ModuleList(_xavier_linear(f.shape[1], d) for f in features.values())  # W_m, b_m
        for k, f in enumerate(features.values()):  # MMRec normalises the features once, at construction
            self.register_buffer(f"feat_{k}", F.normalize(f.detach().float(), dim=1), persistent=False)
        self.user_fusion = _xavier_linear((n_mod + 1) * d, d)  # MMRec embedding_user_after_GCN
        self.item_fusion = _xavier_linear((n_mod + 1) * d, d)  # MMRec embedding_item_after_GCN
        self.fac_stages = fac_stages(n_mod)
        widths = [d] * len(self.fac_stages)
        if len(widths) > 1:
            widths[-1] = d // 2
        self.fac_chain = nn.ModuleList(_xavier_linear(d if k == 0 else widths[k - 1], w)
                                       for k, w in enumerate(widths))  # G_k, g_k
        self.fac_heads = nn.ModuleList(_xavier_linear(d, w) for m, w in zip(self.fac_stages, widths)
                                       if m is not None)  # H_k, c_k, one per modality, in stage order
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # the last training forward's (Z_U, Z_I)

    @classmethod
    def build(cls, cfg, ds) -> "SLMRec":
        return cls(cfg, ds.n_users, ds.n_items, ds.features)

    def propagate(self) -> list[torch.Tensor]:
        r"""The :math:`M + 1` propagated ``(N, d)`` tables :math:`[\bar{E}^{(m)}_U; \bar{E}^{(m)}_I]`, IDs first."""
        items = [self.item_embedding] + [lin(getattr(self, f"feat_{k}")) for k, lin in enumerate(self.dense)]
        x = torch.cat([torch.cat([self.user_embedding, p]) for p in items], 1)  # one spmm per layer for all
        adj = self.graph("ui")
        blocks = ops.propagate_blocks(x, adj, adj, self.cfg.n_layers, self.cfg.embedding_dim)  # symmetric
        return [b / (self.cfg.n_layers + 1) for b in blocks]  # MMRec's mean over layers 0..L

    def forward(self) -> tuple[tuple[torch.Tensor, torch.Tensor], list[torch.Tensor]]:
        """((Z_U (n_users, d), Z_I (n_items, d)), the propagated item tables, IDs first)."""
        reps = self.propagate()
        nu = self.n_users
        users = self.user_fusion(torch.cat([r[:nu] for r in reps], 1))
        items_per = [r[nu:] for r in reps]
        return (users, self.item_fusion(torch.cat(items_per, 1))), items_per

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        terms = self.loss_terms(batch)
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The weighted terms ``infonce``, ``ssl`` and ``weight_decay`` of the batch (its negatives unused)."""
        (users, items), items_per = self()
        self._last = (users.detach(), items.detach())  # what MMRec scores with (all_users, all_items)
        u = F.normalize(users[batch.users], dim=1)
        i = F.normalize(items[batch.pos], dim=1)
        terms = {"infonce": batch_infonce(u, i, self.cfg.tau, batch),
                 "ssl": self.cfg.slmrec_ssl_alpha * sum(self.fac(items_per, batch).values())}
        decay = sum(p.square().sum() for p in self.parameters())
        terms["weight_decay"] = 0.5 * self.cfg.slmrec_weight_decay * decay
        return terms

    def fac(self, items_per: list[torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """FAC's terms (unweighted) over the batch's positive items, by modality: the chain's stage that
        contrasts the modality against the modality's head."""
        idx = batch.pos
        s = items_per[0][idx]
        heads = iter(self.fac_heads)
        out = {}
        for m, link in zip(self.fac_stages, self.fac_chain):
            s = link(s)
            if m is not None:
                cols = next(heads)(items_per[m + 1][idx])
                out[self.modalities[m]] = batch_infonce(s, cols, self.cfg.slmrec_ssl_temp, batch)
        return out

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._last if self._last is not None else self()[0]


def fac_stages(n_mod: int) -> list[int | None]:
    """The modality (0-based) each FAC stage contrasts, None for none: MMRec's chain for two (see SLMRec)."""
    if n_mod == 2:
        return [0, None, 1]
    return list(range(n_mod))


def _xavier_linear(d_in: int, d_out: int) -> nn.Linear:
    """``nn.Linear`` with a Xavier-uniform weight and torch's default bias (MMRec's initialisation)."""
    lin = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(lin.weight)
    return lin


def batch_infonce(rows: torch.Tensor, cols: torch.Tensor, temp: float, batch: Batch) -> torch.Tensor:
    """Mean over the batch of ``-log softmax(rows @ cols.T / temp)`` at each row's own column: MMRec's
    in-batch InfoNCE (``CrossEntropyLoss`` with labels ``arange(B)``). Under DDP the columns are the global
    batch's (every rank's, gathered with their gradient) and the mean the global batch's."""
    if batch.world == 1:
        logits = rows @ cols.T / temp
        return F.cross_entropy(logits, torch.arange(rows.shape[0], device=rows.device))
    cols, offset, n_global = ops.gather_rows(cols)
    logits = rows @ cols.T / temp
    labels = torch.arange(rows.shape[0], device=rows.device) + offset
    # DDP averages the ranks' gradients: world x this rank's share of the global sum gives the global mean
    return F.cross_entropy(logits, labels, reduction="sum") * (batch.world / n_global)
