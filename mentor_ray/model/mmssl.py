"""MMSSL (Wei et al., WWW 2023): adversarially generated modality user-item graphs and cross-modal contrast.

Follows the authors' code (github.com/HKUDS/MMSSL: ``MMSSL/Models.py`` and the training loop of
``MMSSL/main.py``), the implementation behind the published numbers; ``docs/baselines/mmssl.md`` lists each
departure with the file and line it concerns, and ``tests/test_parity_mmssl.py`` checks every loss term,
gradient, generated graph and the scores, batch after batch, against the authors' own code.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import ops
from mentor_ray.model.base import Batch, Recommender, as_model_config, xavier

GP_LAMBDA = 0.3  # the authors' gradient-penalty factor (main.py, gradient_penalty: LAMBDA), times gp_rate
CRITIC_SCALE = 100.0  # the critic's output is 100 * sigmoid(.) (Models.py, Discriminator.forward)
BN_EPS = 1e-5  # nn.BatchNorm1d's


class MMSSL(Recommender):
    r"""MMSSL: multi-modal self-supervised learning for recommendation.

    From `"Multi-Modal Self-Supervised Learning for Recommendation" <https://arxiv.org/abs/2302.10632>`_
    (Wei et al., WWW 2023), as the authors' code runs it. With :math:`R` the training interactions,
    :math:`\hat{A} = D_U^{-1/2} R` and :math:`\hat{A}' = D_I^{-1/2} R^\top` (row-only normalisation with
    :math:`(\deg + 10^{-8})^{-1/2}`, the authors' ``csr_norm(mean_flag=True)``), each modality :math:`m` has
    projected item features, their user and item aggregates, and ID aggregates over its *generated* graph
    :math:`G_m` (normalised the same way; initially :math:`R`):

    .. math::
        F_m = \mathrm{drop}_p(X_m W_m^\top + b_m), \quad U^f_m = \hat{A} F_m, \quad I^f_m = \hat{A}' U^f_m,
        \quad U^g_m = \hat{G}_m E_I, \quad I^g_m = \hat{G}'_m E_U

    The modality ID views are fused and added to the ID embeddings, which then propagate :math:`L` layers
    (user side first; the last layer's output goes through a softmax over the embedding dimension):

    .. math::
        u^{(0)} = E_U + \alpha_{id} \,\mathrm{norm}\big(\tfrac{1}{M}\textstyle\sum_m U^g_m W\big), \quad
        i^{(0)} = E_I + \alpha_{id} \,\mathrm{norm}\big(\tfrac{1}{M}\textstyle\sum_m I^g_m W\big), \quad
        W = \textstyle\sum_{h=1}^{H} W_{cat}^{(h)}

        u^{(l)} = \sigma_l(\hat{A} i^{(l-1)}), \quad i^{(l)} = \sigma_l(\hat{A}' u^{(l)}), \qquad
        \sigma_L = \mathrm{softmax}, \ \sigma_{l<L} = \mathrm{id}

        h_u = \tfrac{1}{L+1}\textstyle\sum_{l=0}^{L} u^{(l)} + \alpha_m \textstyle\sum_m \mathrm{norm}(U^f_m),
        \quad h_i = \tfrac{1}{L+1}\textstyle\sum_{l=0}^{L} i^{(l)} + \alpha_m \textstyle\sum_m
        \mathrm{norm}(I^f_m), \quad y_{ui} = h_u^\top h_i

    (:math:`\mathrm{norm}` scales rows to unit length.) For a batch user :math:`u`, a row over all items,
    training items zeroed and scaled to unit length, :math:`s(a_u, B) = \mathrm{norm}((a_u B^\top) \odot
    (1 - R_u))`, gives the modality rows :math:`f_{u,m} = s(U^f_{m,u}, I^f_m)` (the "fake" user-item rows) and
    the real row :math:`r_u = \mathrm{norm}(\mathrm{softmax}(R_u + \gamma g_u) + \beta\, s(h_u, H_I))` with
    standard Gumbel noise :math:`g_u`. A critic :math:`D` (three linear layers over the item dimension,
    batch norm and dropout between them, :math:`100\,\mathrm{sigmoid}` out) is trained first, per batch, by
    its own Adam (WGAN-GP, :meth:`aux_losses`):

    .. math::
        \mathcal{L}_D = \overline{D(f)} - \overline{D(r)} + \lambda_{gp} \cdot 0.3\,
        \overline{(\|\nabla_{\hat{x}} D(\hat{x})\| - 1)^2}, \qquad \hat{x} = a\, r + (1 - a) f, \ a \sim U(0, 1)

    then the recommender on (:meth:`loss`)

    .. math::
        \mathcal{L} = \underbrace{-\overline{\log\sigma(y_{ui} - y_{uj})}}_{\texttt{bpr}}
        + \underbrace{\tfrac{\lambda}{2B}\big(\|h_u\|^2 + \|h_i\|^2 + \|h_j\|^2\big)}_{\texttt{reg}}
        + \underbrace{\tfrac{\lambda_f}{2 |I|} \textstyle\sum_m (\|U^f_m\|^2 + \|I^f_m\|^2)}_{\texttt{feat\_reg}}
        + \underbrace{\lambda_c \textstyle\sum_m \mathrm{NCE}_\tau(U^g_{m,\mathcal{B}}, H_{U,\mathcal{B}})}_{
        \texttt{cl}}
        - \underbrace{\lambda_a \overline{D(f)}}_{\texttt{adv}}

    where bars are batch means, the squared norms are summed over the batch's rows (reg) or the full tables
    (feat_reg), and :math:`\mathrm{NCE}_\tau(Z_1, Z_2)` is the mean over the batch of :math:`-\log(e^{c(z_{1a},
    z_{2a})/\tau} / (\sum_{b \ne a} e^{c(z_{1a}, z_{1b})/\tau} + \sum_b e^{c(z_{1a}, z_{2b})/\tau}) + 10^{-8})`
    (:math:`c`: cosine; computed with a log-sum-exp). After each batch's forward, the generated graphs move
    on: every ``mmssl_rebuild_every`` (:math:`T`) batches of an epoch, except its first, :math:`G_m` is
    rebuilt from the (user, item) pairs gathered since the last rebuild, and on the other batches the
    batch's :math:`k = \lfloor |I| \rho \rfloor` top items of each :math:`f_{u,m}` are gathered (see
    *Generated graphs*).

    Args:
        cfg (ModelConfig): the model's settings. The model reads ``embedding_dim`` (:math:`d`), ``n_layers``
            (:math:`L`, the authors' ``len(weight_size)``), ``dropout`` (:math:`p`, ``drop_rate``),
            ``reg_weight`` (:math:`\lambda`, ``regs[0]``), ``tau`` (:math:`\tau`), and its own
            ``mmssl_cl_weight`` (:math:`\lambda_c`, ``cl_rate``), ``mmssl_adv_weight`` (:math:`\lambda_a`,
            ``G_rate``), ``mmssl_feat_reg`` (:math:`\lambda_f`, ``feat_reg_decay``), ``mmssl_model_cat``
            (:math:`\alpha_m`, ``model_cat_rate``), ``mmssl_id_cat`` (:math:`\alpha_{id}`, ``id_cat_rate``),
            ``mmssl_heads`` (:math:`H`, ``head_num``), ``mmssl_d_lr`` (the critic's Adam, ``D_lr``),
            ``mmssl_d_dropout1``/``mmssl_d_dropout2`` (the critic's dropouts, ``G_drop1``/``G_drop2``),
            ``mmssl_gp_weight`` (:math:`\lambda_{gp}`, ``gp_rate``), ``mmssl_gumbel_scale`` (:math:`\gamma`,
            ``log_log_scale / real_data_tau``), ``mmssl_ui_pre_scale`` (:math:`\beta`, ``ui_pre_scale``),
            ``mmssl_rebuild_every`` (:math:`T`, ``T``) and ``mmssl_topk_rate`` (:math:`\rho`,
            ``m_topk_rate``).
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality -> ``(n_items, d_m)`` item features (frozen), at least one.
        train_users, train_items: the training pairs (the graphs :math:`R`, the masks :math:`1 - R_u`).

    Auxiliary optimiser: the critic :math:`D` (``self.critic``) has its own ``Adam(lr=mmssl_d_lr, betas=(0.5,
    0.9))`` (:meth:`aux_optimizers`, ``"disc"``); :meth:`aux_losses` returns :math:`\mathcal{L}_D`, which the
    trainer steps before each :meth:`loss`, as the authors do. :meth:`loss` reads :math:`D` (the ``adv``
    term) with its parameters as constants: the authors' backward also computes gradients on :math:`D`, which
    their next critic step zeroes unused; here they are not computed.

    Generated graphs (state that is not a parameter): the current edges of each :math:`G_m` and the pairs
    gathered since its last rebuild are buffers (``gen_edges_<m>``, ``gen_pending_<m>``: ``(2, E)`` user and
    item ids, repeated pairs counted), so a checkpoint holds them and a run resumed at an epoch boundary
    continues identically (the batch counter restarts each epoch, as the authors' ``idx``; the pending pairs
    carry over epochs, as theirs). Under DDP every rank gathers every rank's batch rows (their positions in
    the global batch, users and top-k items) and applies the same update, so all ranks hold the same graphs.

    Randomness (all from torch's global generator, through :meth:`_draw`, in the authors' order per batch):
    the critic step's forward (each modality's feature dropout), the critic's two dropout masks on the fake
    rows, the Gumbel uniforms, the masks on the real rows, the interpolation weights, the masks on the
    interpolates; then the main step's forward and the critic's masks on its fake rows. Per-row draws are
    made for the global batch and each rank takes its rows (rank r holds positions r, r + w, ... of the
    trainer's global batch), and the critic's batch norm uses the global batch's statistics (all-reduced),
    so that DDP ranks compute one process's step.

    M modalities: the authors hard-code image and text; here every sum over modalities runs over the
    dataset's, the critic's fake batch stacks the M modalities' rows (and its real batch M copies of the real
    rows), and :math:`\mathcal{L}_D`'s means run over the M B rows. For M = 2 in the order (image, text) this
    is the authors' computation.

    The authors' code, followed here (where the paper reads otherwise, this is what was run):

    - The "multi-head self-attention" over the modalities' ID views is the identity followed by
      :math:`W_{cat}`: its softmax over the key modality multiplies the query modality's own (unprojected)
      value, so the weights sum to one (``multi_head_self_attention``, Models.py l. 139-169). It is computed
      as the equivalent :math:`\frac{1}{M}\sum_m U^g_m W`; ``w_q`` (whose gradient is zero up to rounding),
      ``w_k``, ``w_v``, ``w_self_attention_item/user``, ``common_trans``, ``batch_norm`` and the
      ``image/text_embedding`` tables never reach the loss and are not parameters here.
    - The critic's ``nn.LeakyReLU(True)`` sets ``negative_slope=True``, i.e. 1: the identity (omitted). Its
      batch norm always normalises by the current batch (it is never in eval mode), so it keeps no running
      statistics here.
    - The generated pairs: the authors tile the batch's users against the row-major top-k items
      (``torch.tensor(users).repeat(1, k)`` with ``image_ui_id.view(-1)``, main.py l. 400-405), so for
      :math:`k \ge 2` user ``users[j mod B]`` is paired with the :math:`j`-th of all batch rows' top items
      (row ``j // k``). Followed. With the authors' :math:`T = 1`, only the first batch of an epoch gathers
      pairs, the second rebuilds the graphs from them and every later one from none: a non-empty generated
      graph serves one batch per epoch (the third), and evaluation sees empty graphs (the run's first two
      batches see :math:`R`). With :math:`\rho = 10^{-4}` and fewer than 10,000 items (TikTok, Baby),
      :math:`k = 0`: the generated graphs are empty from the run's third batch on.
    - ``reg`` divides by the batch size; ``feat_reg`` by the number of items, over the full feature tables.

    Departures from the authors' code:

    - Batches are the trainer's: every training pair once per epoch with a uniform negative (the authors
      sample ``batch_size`` distinct users, one positive and one negative each, ``n_train // batch_size + 1``
      times). ``reg`` divides by the global batch's size, not the configured one (they agree on full batches).
    - The main optimiser is the trainer's Adam; the authors use ``AdamW`` (its default weight decay 0.01)
      with a learning-rate schedule that is never stepped (constant).
    - A critic layer narrower than one unit (fewer than 8 items) is widened to one.
    - The contrastive loss leaves the diagonal out of a log-sum-exp where the authors subtract it from a sum
      of exponentials: the same value, finite at small :math:`\tau` (theirs cancels catastrophically).
    - Every modality of the dataset is used; the authors' code reads two feature files (``image_feat.npy``,
      ``text_feat.npy``), also for TikTok, whose README lists three modalities.
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor],
                 train_users, train_items):
        super().__init__()
        if not features:
            raise ValueError("MMSSL needs at least one feature modality")
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        self.modalities = list(features)
        c, d = self.cfg, self.cfg.embedding_dim
        self.user_embedding = xavier(n_users, d)
        self.item_embedding = xavier(n_items, d)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], d) for f in features.values())
        for proj in self.projections:
            nn.init.xavier_uniform_(proj.weight)  # the bias keeps Linear's default (the authors')
        self.w_cat = xavier(c.mmssl_heads * d, d)  # the authors' w_self_attention_cat
        for k, f in enumerate(features.values()):  # positional: modality names may hold '.'
            self.register_buffer(f"feat_{k}", f.detach().float(), persistent=False)  # frozen input
        users = torch.as_tensor(train_users, dtype=torch.long)
        items = torch.as_tensor(train_items, dtype=torch.long)
        a = _bipartite(users, items, n_users, n_items)
        self._graphs = {"ui": a[0], "ui.T": a[1], "iu": a[2], "iu.T": a[3]}
        # training items per user (CSR), for the rows R_u
        order = torch.argsort(users * n_items + items)
        indptr = torch.zeros(n_users + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(users, minlength=n_users), 0)
        self._graphs.update({"R.indptr": indptr, "R.items": items[order]})
        for k in range(len(self.modalities)):  # the generated graphs start as the training graph
            self.register_buffer(f"gen_edges_{k}", torch.stack([users, items]))
            self.register_buffer(f"gen_pending_{k}", torch.zeros(2, 0, dtype=torch.long))
        self._gen_cache: dict[int, tuple[torch.Tensor, ...]] = {}
        self._batch_in_epoch = 0
        self.critic = Critic(n_items, c.mmssl_d_dropout1, c.mmssl_d_dropout2)
        self._aux = {"disc": torch.optim.Adam(self.critic.parameters(), lr=c.mmssl_d_lr, betas=(0.5, 0.9))}

    @classmethod
    def build(cls, cfg, ds) -> "MMSSL":
        return cls(cfg, ds.n_users, ds.n_items, ds.features, ds.train.users, ds.train.items)

    # ------------------------------------------------------------------ state

    def start_epoch(self, epoch: int) -> None:
        self._batch_in_epoch = 0  # the authors' idx: the rebuild schedule restarts each epoch

    def aux_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._aux

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the generated graphs' buffers change size during training: take the checkpoint's sizes first
        for name in [n for n in self._buffers if n.startswith("gen_")]:
            saved = state_dict.get(prefix + name)
            if saved is not None:
                self._buffers[name] = torch.empty_like(saved, device=self._buffers[name].device)
        self._gen_cache.clear()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def generated_graph(self, k: int) -> tuple[torch.Tensor, ...]:
        """Modality k's normalised generated graph: ``(G (U x I), G.T, G' (I x U), G'.T)``, CSR."""
        edges = self._buffers[f"gen_edges_{k}"]
        cached = self._gen_cache.get(k)
        if cached is None or cached[0] is not edges:
            cached = (edges, _bipartite(edges[0], edges[1], self.n_users, self.n_items, self.user_embedding.dtype))
            self._gen_cache[k] = cached
        return cached[1]

    def _advance_graphs(self, batch: Batch, pos: torch.Tensor, sims: list[torch.Tensor]) -> None:
        """The authors' per-batch update of the generated graphs (main.py l. 378-405), after the forward."""
        step, self._batch_in_epoch = self._batch_in_epoch, self._batch_in_epoch + 1
        if step % self.cfg.mmssl_rebuild_every == 0 and step != 0:
            for k in range(len(self.modalities)):
                pending = self._buffers[f"gen_pending_{k}"]
                self._buffers[f"gen_edges_{k}"] = pending
                self._buffers[f"gen_pending_{k}"] = pending[:, :0]
            return
        k_top = min(int(self.n_items * self.cfg.mmssl_topk_rate), self.n_items)
        if k_top == 0:  # nothing gathered (the same on every rank)
            return
        for k, s in enumerate(sims):
            top = torch.topk(s.detach(), k_top, dim=-1).indices  # (B, k)
            rows = torch.cat([pos[:, None], batch.users[:, None], top], 1)
            if batch.world > 1:  # every rank's rows, back in the global batch's order
                rows = ops.gather_rows(rows)[0]
                rows = rows[torch.argsort(rows[:, 0])]
            users, top = rows[:, 1], rows[:, 2:]
            # the authors' pairing: the users tiled k times against the row-major top items
            new = torch.stack([users.repeat(k_top), top.reshape(-1)])
            self._buffers[f"gen_pending_{k}"] = torch.cat([self._buffers[f"gen_pending_{k}"], new], 1)

    # ------------------------------------------------------------------ randomness

    def _draw(self, kind: str, shape: tuple[int, ...], p: float = 0.0) -> torch.Tensor | None:
        """One random draw from torch's global generator: ``drop``, the scaled keep mask that CPU dropout
        draws at ratio ``p`` (None at p = 0, which draws nothing); ``uniform``, ``Tensor.uniform_(0, 1)``;
        ``rand``, ``torch.rand``. Tests replace it to replay the authors' recorded draws."""
        dev = self.user_embedding.device
        if kind == "drop":
            return F.dropout(torch.ones(shape, device=dev), p, training=True) if p > 0 else None
        if kind == "uniform":
            return torch.empty(shape, device=dev).uniform_(0, 1)
        return torch.rand(shape, device=dev)

    # ------------------------------------------------------------------ forward

    def encode(self, train: bool) -> dict[str, object]:
        """One forward pass (the authors' ``MMSSL.forward``): ``users``/``items`` (h), and per modality
        ``feat_users``/``feat_items`` (U^f_m, I^f_m) and ``id_users`` (U^g_m). ``train``: feature dropout."""
        c, d = self.cfg, self.cfg.embedding_dim
        ui, ui_t, iu, iu_t = (self.graph(n) for n in ("ui", "ui.T", "iu", "iu.T"))
        e_u, e_i = self.user_embedding, self.item_embedding
        fu, fi, gu, gi = [], [], [], []
        for k, proj in enumerate(self.projections):
            f = proj(self._buffers[f"feat_{k}"])
            mask = self._draw("drop", (self.n_items, d), c.dropout) if train else None
            if mask is not None:
                f = f * mask
            fu.append(ops.spmm(ui, f, ui_t))
            fi.append(ops.spmm(iu, fu[-1], iu_t))
            g, g_t, g2, g2_t = self.generated_graph(k)
            gu.append(ops.spmm(g, e_i, g_t))
            gi.append(ops.spmm(g2, e_u, g2_t))
        w = self.w_cat.view(c.mmssl_heads, d, d).sum(0)  # the H heads' blocks of W_cat (see the docstring)
        u = e_u + c.mmssl_id_cat * F.normalize((torch.stack(gu) @ w).mean(0), dim=1)
        i = e_i + c.mmssl_id_cat * F.normalize((torch.stack(gi) @ w).mean(0), dim=1)
        us, its = [u], [i]
        for layer in range(c.n_layers):
            u = ops.spmm(ui, i, ui_t)
            if layer == c.n_layers - 1:
                u = torch.softmax(u, dim=-1)
            i = ops.spmm(iu, u, iu_t)
            if layer == c.n_layers - 1:
                i = torch.softmax(i, dim=-1)
            us.append(u)
            its.append(i)
        h_u = torch.stack(us).mean(0) + c.mmssl_model_cat * sum(F.normalize(x, dim=1) for x in fu)
        h_i = torch.stack(its).mean(0) + c.mmssl_model_cat * sum(F.normalize(x, dim=1) for x in fi)
        return {"users": h_u, "items": h_i, "feat_users": fu, "feat_items": fi, "id_users": gu}

    def interaction_rows(self, users: torch.Tensor) -> torch.Tensor:
        """R_u, dense ``(B, n_items)`` 0/1: the batch users' training items."""
        indptr, items = self.graph("R.indptr"), self.graph("R.items")
        start, count = indptr[users], indptr[users + 1] - indptr[users]
        row = torch.repeat_interleave(torch.arange(len(users), device=users.device), count)
        first = torch.repeat_interleave(start - (torch.cumsum(count, 0) - count), count)
        cols = items[first + torch.arange(int(count.sum()), device=users.device)]
        out = torch.zeros(len(users), self.n_items, device=self.user_embedding.device)
        out[row, cols] = 1.0
        return out

    def critic_rows(self, users: torch.Tensor, h_u: torch.Tensor, h_i: torch.Tensor, seen: torch.Tensor):
        """s(h_u, H_I): the users' score rows over all items, training items zeroed, unit length
        (the authors' ``u_sim_calculation``; its item chunks change nothing)."""
        return F.normalize((h_u[users] @ h_i.T) * (1 - seen), dim=1)

    # ------------------------------------------------------------------ the critic's step

    def aux_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.critic_terms(batch)
        return {"disc": c["fake"] - c["real"] + self.cfg.mmssl_gp_weight * c["gp"]}

    def critic_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The critic step's pieces (main.py l. 339-357): ``fake`` and ``real``, the batch means of D on the
        modality rows and on the real rows, and ``gp``, the gradient penalty (0.3 included, gp_rate not)."""
        c, m = self.cfg, len(self.modalities)
        pos, n = _layout(batch)
        rows = torch.cat([k * n + pos for k in range(m)])  # the M stacked blocks' rows, global positions
        with torch.no_grad():
            out = self.encode(train=self.training)
            seen = self.interaction_rows(batch.users)
            fake = torch.cat([self.critic_rows(batch.users, a, b, seen)
                              for a, b in zip(out["feat_users"], out["feat_items"])])
            ui_rows = self.critic_rows(batch.users, out["users"], out["items"], seen)
        d_fake = self.critic(fake, self._draw, batch, rows, m * n)
        g = self._draw("uniform", (n, self.n_items))[pos]
        real = torch.softmax(seen - c.mmssl_gumbel_scale * torch.log(-torch.log(g + 1e-8) + 1e-8), dim=1)
        real = F.normalize(real + c.mmssl_ui_pre_scale * ui_rows, dim=1)
        d_real = self.critic(real, self._draw, batch, rows, m * n, copies=m)
        a = self._draw("rand", (m * n, 1))[rows]
        mix = (a * real.repeat(m, 1) + (1 - a) * fake).requires_grad_()
        grad = torch.autograd.grad(self.critic(mix, self._draw, batch, rows, m * n), mix,
                                   grad_outputs=torch.ones(mix.shape[0], device=mix.device), create_graph=True)[0]
        gp = _gmean((grad.norm(2, dim=1) - 1).square(), batch, m * n) * GP_LAMBDA
        return {"fake": _gmean(d_fake, batch, m * n), "real": _gmean(d_real, batch, m * n), "gp": gp}

    # ------------------------------------------------------------------ the recommender's step

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        terms = self.loss_terms(batch)
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    def loss_terms(self, batch: Batch, parts: bool = False) -> dict[str, torch.Tensor]:
        """The weighted terms ``bpr``, ``reg``, ``feat_reg``, ``cl``, ``adv``; with ``parts`` also the
        unweighted ``cl.<m>`` and ``critic`` (the batch mean of D on the fake rows), for checks."""
        c, m = self.cfg, len(self.modalities)
        pos, n = _layout(batch)
        out = self.encode(train=self.training)
        h_u, h_i = out["users"], out["items"]
        u, p, q = h_u[batch.users], h_i[batch.pos], h_i[batch.neg]
        terms = {
            "bpr": _gmean(-F.logsigmoid((u * p).sum(1) - (u * q).sum(1)), batch, n),
            "reg": c.reg_weight * 0.5 * (u.square().sum() + p.square().sum() + q.square().sum()) * batch.world / n,
        }
        seen = self.interaction_rows(batch.users)
        fake = [self.critic_rows(batch.users, a, b, seen) for a, b in zip(out["feat_users"], out["feat_items"])]
        self._advance_graphs(batch, pos, fake)
        terms["feat_reg"] = c.mmssl_feat_reg * 0.5 * sum(
            x.square().sum() for x in (*out["feat_items"], *out["feat_users"])) / self.n_items
        cl = {name: _contrast(g[batch.users], h_u[batch.users], c.tau, batch, n)
              for name, g in zip(self.modalities, out["id_users"])}
        terms["cl"] = c.mmssl_cl_weight * sum(cl.values())
        rows = torch.cat([k * n + pos for k in range(m)])
        critic = _gmean(self.critic(torch.cat(fake), self._draw, batch, rows, m * n, frozen=True), batch, m * n)
        terms["adv"] = -c.mmssl_adv_weight * critic
        if parts:
            terms.update({f"cl.{k}": v for k, v in cl.items()}, critic=critic)
        return terms

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encode(train=False)  # the authors' test(): model.eval(), the current generated graphs
        return out["users"], out["items"]


class Critic(nn.Module):
    """The authors' ``Discriminator`` over user-item rows: ``Linear(I, I/4) -> BN -> Dropout(p1) ->
    Linear(I/4, I/8) -> BN -> Dropout(p2) -> Linear(I/8, 1) -> 100 sigmoid`` (their LeakyReLU(True) is the
    identity). Kaiming-normal weights, zero biases (their ``weights_init``). Batch norm with the global
    batch's statistics; dropout masks drawn by the model for the global batch (see :class:`MMSSL`)."""

    def __init__(self, n_items: int, p1: float, p2: float):
        super().__init__()
        widths = [n_items, max(1, n_items // 4), max(1, n_items // 8), 1]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        for lin in self.linears:
            nn.init.kaiming_normal_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.norm_weight = nn.ParameterList(nn.Parameter(torch.ones(w)) for w in widths[1:3])
        self.norm_bias = nn.ParameterList(nn.Parameter(torch.zeros(w)) for w in widths[1:3])
        self.p = (p1, p2)

    def forward(self, x: torch.Tensor, draw, batch: Batch, rows: torch.Tensor, n_rows: int,
                copies: int = 1, frozen: bool = False) -> torch.Tensor:
        """D of this rank's ``x`` (``x.repeat(copies, 1)`` when ``copies`` > 1: the first layer runs once),
        whose rows sit at ``rows`` of a global batch of ``n_rows``: one value per row. ``draw``: the model's
        :meth:`MMSSL._draw`, for the dropout masks (drawn for the global batch; this rank's rows kept).
        ``frozen``: the parameters enter as constants (the recommender's step, whose gradients on D the
        authors compute and then discard: not computed here, the same values and generator gradients)."""
        weights = [(lin.weight, lin.bias) for lin in self.linears]
        norms = list(zip(self.norm_weight, self.norm_bias))
        if frozen:
            weights = [(w.detach(), b.detach()) for w, b in weights]
            norms = [(w.detach(), b.detach()) for w, b in norms]
        h = F.linear(x, *weights[0])
        if copies > 1:
            h = h.repeat(copies, 1)
        for k in range(2):
            h = _batch_norm(h, *norms[k], batch, n_rows)
            mask = draw("drop", (n_rows, h.shape[1]), self.p[k])
            if mask is not None:
                h = h * mask[rows]
            h = F.linear(h, *weights[k + 1])
        return CRITIC_SCALE * torch.sigmoid(h).view(-1)


# ---------------------------------------------------------------------- helpers


def _bipartite(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """The authors' row-normalised bipartite graphs of the (user, item) pairs, repeated pairs summed
    (``csr_norm(mean_flag=True)``): ``(D_U^-1/2 C, its transpose, D_I^-1/2 C^T, its transpose)``, CSR
    (``dtype``), with ``D = row sums + 1e-8``."""
    dev = users.device
    c = torch.sparse_coo_tensor(torch.stack([users, items]), torch.ones(users.shape[0], device=dev, dtype=dtype),
                                (n_users, n_items), check_invariants=False).coalesce()  # ids in range
    (u, i), v = c.indices(), c.values()
    du = torch.zeros(n_users, device=dev, dtype=dtype).index_add_(0, u, v).add_(1e-8).pow_(-0.5)
    di = torch.zeros(n_items, device=dev, dtype=dtype).index_add_(0, i, v).add_(1e-8).pow_(-0.5)

    def csr(rows, cols, vals, shape):
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, shape,
                                       check_invariants=False).coalesce().to_sparse_csr()

    return (csr(u, i, v * du[u], (n_users, n_items)), csr(i, u, v * du[u], (n_items, n_users)),
            csr(i, u, v * di[i], (n_items, n_users)), csr(u, i, v * di[i], (n_users, n_items)))


def _layout(batch: Batch) -> tuple[torch.Tensor, int]:
    """This rank's rows' positions in the global batch (the trainer gives rank r positions r, r + w, ...)
    and the global batch's size."""
    b = len(batch.users)
    if batch.world == 1:
        return torch.arange(b, device=batch.users.device), b
    import torch.distributed as dist

    return dist.get_rank() + batch.world * torch.arange(b, device=batch.users.device), batch.global_size()


def _gmean(x: torch.Tensor, batch: Batch, n: int) -> torch.Tensor:
    """The global batch's mean of per-row ``x`` (``n`` rows in all): this rank's sum times the ranks over
    ``n`` (DDP and :func:`~mentor_ray.model.base.aux_step` average the ranks)."""
    return x.sum() * (batch.world / n)


def _batch_norm(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, batch: Batch, n: int) -> torch.Tensor:
    """Training-mode batch norm (biased variance, eps 1e-5) with the statistics of the global batch's ``n``
    rows (``Batch.global_sum``: differentiable, so the critic's gradients are one process's)."""
    if batch.world == 1 and n > 1:  # torch's own kernel: the authors' nn.BatchNorm1d, to the bit (it refuses
        return F.batch_norm(h, None, None, weight, bias, training=True, eps=BN_EPS)  # a batch of one row)
    mean = batch.global_sum(h.sum(0)) / n
    var = batch.global_sum((h - mean).square().sum(0)) / n
    return (h - mean) * torch.rsqrt(var + BN_EPS) * weight + bias


def _contrast(z1: torch.Tensor, z2: torch.Tensor, tau: float, batch: Batch, n: int) -> torch.Tensor:
    """The authors' ``batched_contrastive_loss`` (main.py l. 218-249) over the global batch, as a
    log-sum-exp: per row a, -log(exp(c(z1_a, z2_a)/tau) / (sum_{b != a} exp(c(z1_a, z1_b)/tau) +
    sum_b exp(c(z1_a, z2_b)/tau)) + 1e-8), averaged. Under DDP the columns are every rank's rows."""
    a1, a2 = F.normalize(z1), F.normalize(z2)
    offset = 0
    if batch.world > 1:
        c1, offset, _ = ops.gather_rows(a1)
        c2 = ops.gather_rows(a2)[0]
    else:
        c1, c2 = a1, a2
    refl, between = a1 @ c1.T / tau, a1 @ c2.T / tau  # (b, n)
    own = torch.arange(a1.shape[0], device=a1.device)
    refl = refl.index_put((own, own + offset), torch.tensor(float("-inf"), device=a1.device))  # b != a
    log_den = torch.logsumexp(torch.cat([refl, between], 1), dim=1)
    ratio = torch.exp(between[own, own + offset] - log_den)
    return _gmean(-torch.log(ratio + 1e-8), batch, n)


