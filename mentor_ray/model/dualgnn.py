"""DualGNN (Wang et al., IEEE TMM 2021) as MMRec implements it (``src/models/dualgnn.py``)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from mentor_ray.common.config import ModelConfig
from mentor_ray.model import ops
from mentor_ray.model.base import Batch, Recommender, as_model_config

MAX_USER_NEIGHBOURS = 200  # MMRec's preprocessing keeps each user's 200 most co-occurring users


class DualGNN(Recommender):
    r"""DualGNN: per-modality graph convolution on the user-item graph, fused per user with learned weights
    and smoothed over a user co-occurrence graph.

    From `"DualGNN: Dual Graph Neural Network for Multimedia Recommendation"
    <https://ieeexplore.ieee.org/abstract/document/9662655>`_ (Wang et al., IEEE TMM 2021), in MMRec's
    version. Each modality :math:`m` has user preferences :math:`P_m` and an item MLP; their rows,
    L2-normalised, are propagated over the symmetric normalised user-item adjacency :math:`\hat A`:

    .. math::
        X_m = \mathrm{rownorm}\big([P_m;\ W_2^m\, \mathrm{LeakyReLU}(W_1^m f^m + b_1^m) + b_2^m]\big), \qquad
        R_m = \sum_{l=0}^{L} \hat A^l X_m

    Items sum the modalities; users weigh them with their own softmax-initialised weights
    :math:`\alpha_u` and then add their co-occurrence neighbours:

    .. math::
        e_i = \sum_m R_{m,i}, \qquad
        \bar e_u = \sum_m \alpha_{u,m}\, Q_{m,u}, \quad Q_1 = \sum_m R_m,\ Q_m = R_m\ (m \ge 2), \qquad
        e_u = \bar e_u + \sum_{v \in \mathcal{N}_u} s_{uv}\, \bar e_v, \qquad y_{ui} = e_u^\top e_i

    where :math:`\mathcal{N}_u` holds user u's ``dualgnn_user_k`` users with the most common training items
    (ties to the lower user index), padded each epoch by redrawing from the list as it grows when there are
    fewer, and :math:`s_{u\cdot} = \mathrm{softmax}` of their common-item counts (MMRec's
    ``topk_sample``; a user without co-occurring users gets none). The objective over a batch
    :math:`\mathcal{B}` of triplets :math:`(u, i, j)` is

    .. math::
        \mathcal{L} = \frac{1}{|\mathcal{B}|} \sum_{(u,i,j)} -\log_2 \sigma(y_{ui} - y_{uj})
        + \lambda \Big( \sum_m \overline{P_{m,\mathcal{B}_u}^2} + \overline{\alpha^2} + \overline{\beta^2} \Big)

    (a bar: the mean over all entries; :math:`P_{m,\mathcal{B}_u}` the batch's user rows, repeats included;
    :math:`\beta` the item weights, which nothing else uses). :meth:`loss` returns ``bpr`` and ``reg``
    (:math:`\lambda` applied).

    Args:
        cfg (ModelConfig): the model's settings. It reads ``embedding_dim`` (the width of :math:`P_m` and
            :math:`X_m`; MMRec hard-codes 64), ``n_layers`` (:math:`L`; MMRec hard-codes 2), ``reg_weight``
            (:math:`\lambda`) and ``dualgnn_user_k`` (:math:`|\mathcal{N}_u|`; MMRec hard-codes 40).
        n_users (int): the number of users.
        n_items (int): the number of items.
        features (dict[str, torch.Tensor]): modality -> ``(n_items, d_m)`` raw item features (at least one),
            in the dataset's order. :math:`\alpha` and :math:`\beta` are ``(n, M, 1)``. For (image, text)
            the formulas above are MMRec's exactly (``v_feat``, ``t_feat``: image's slot holds the sum, see
            below); with one modality :math:`\bar e_u = R_{1,u}` and :math:`\alpha` is in the L2 term only.
        train_users, train_items (torch.Tensor): the training interactions (the co-occurrence graph).

    The user-item adjacency is the trainer's ``graph("ui")``, :math:`D^{-1/2} A D^{-1/2}` without
    self-loops: MMRec's ``Base_gcn`` (``aggr='add'``, self-loops removed) on the training edges.

    Initialisation (MMRec's): :math:`P_m` Xavier-normal; :math:`\alpha, \beta` Xavier-normal, then a
    softmax over the modalities; the MLPs ``nn.Linear``'s.

    Departures from the paper (MMRec's code, followed here):

    - MMRec adds the second modality's output to the first's in place (``representation += self.t_rep``), so
      the image slot of the user fusion holds image + text: :math:`Q_1 = \sum_m R_m` above.
    - Scores come from the embeddings of the last training batch's forward pass (``full_sort_predict`` reads
      ``result_embed``), one optimiser step behind the weights; before any training they are computed.
    - BPR in base 2 (``torch.log2``); L2 on mean squares, including the item weights :math:`\beta`, which the
      model never uses otherwise.
    - The neighbour lists are cut at 200 (MMRec's preprocessing) and padded by resampling the list.
    - MMRec's modality-missing item dropping (``edge_index_dropv``/``dropt``) is built but never used by its
      forward pass, and ``MLP_v``, ``MLP_t``, ``MLP_user`` never receive a gradient: none of them is here.

    Departures from MMRec:

    - The co-occurrence graph is built here from the training pairs (MMRec: a precomputed
      ``user_graph_dict.npy`` from ``preprocessing/dualgnn-gen-u-u-matrix.py``, the same counts); ties among
      equal counts go to the lower user index (MMRec: ``torch.topk``'s order); it never holds the dense
      ``n_users x n_users`` matrix (blocks of at most 2^25 counts).
    - The padding is drawn from torch's generator (MMRec: numpy's global one), on the CPU.
    - BPR as ``-logsigmoid / ln 2`` (stable; MMRec's ``log2(sigmoid)`` is ``-inf`` where the sigmoid underflows).
    - ``embedding_dim``, ``n_layers`` and ``dualgnn_user_k`` are settings (MMRec hard-codes 64, 2, 40);
      MMRec's ``user_aggr_mode='mean'`` and ``construction='cat_mlp'`` are not implemented.
    """

    def __init__(self, cfg: ModelConfig, n_users: int, n_items: int, features: dict[str, torch.Tensor],
                 train_users: torch.Tensor, train_items: torch.Tensor):
        super().__init__()
        if not features:
            raise ValueError("DualGNN needs at least one feature modality")
        self.cfg, self.n_users, self.n_items = as_model_config(cfg), n_users, n_items
        self.modalities = list(features)
        d, n_mod = self.cfg.embedding_dim, len(features)
        self.pref = nn.ParameterDict({m: nn.Parameter(nn.init.xavier_normal_(torch.empty(n_users, d)))
                                      for m in self.modalities})
        self.mlp = nn.ModuleDict({m: nn.Sequential(nn.Linear(f.shape[1], 4 * d), nn.LeakyReLU(), nn.Linear(4 * d, d))
                                  for m, f in features.items()})
        for m, f in features.items():
            self.register_buffer(f"feat_{m}", f.detach().float(), persistent=False)  # frozen input
        self.weight_u = nn.Parameter(torch.softmax(nn.init.xavier_normal_(torch.empty(n_users, n_mod, 1)), 1))
        self.weight_i = nn.Parameter(torch.softmax(nn.init.xavier_normal_(torch.empty(n_items, n_mod, 1)), 1))
        # the co-occurrence candidates, on the CPU (the padding is drawn there: the same graph on any device)
        k = self.cfg.dualgnn_user_k
        self._cand, self._cand_count, self._cand_len = cooccurrence_neighbours(
            train_users, train_items, n_users, n_items, min(k, MAX_USER_NEIGHBOURS))
        self._user_graph: tuple[torch.Tensor, torch.Tensor] | None = None  # the epoch's (S, S^T), CSR
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # the last training forward's embeddings

    @classmethod
    def build(cls, cfg, ds) -> "DualGNN":
        return cls(cfg, ds.n_users, ds.n_items, ds.features, torch.from_numpy(ds.train.users),
                   torch.from_numpy(ds.train.items))

    def start_epoch(self, epoch: int) -> None:
        """MMRec's ``pre_epoch_processing``: the epoch's user graph (the padding of short lists is redrawn)."""
        idx, weight = sample_user_graph(self._cand, self._cand_count, self._cand_len, self.cfg.dualgnn_user_k)
        self.set_user_graph(idx, weight)

    def set_user_graph(self, idx: torch.Tensor, weight: torch.Tensor) -> None:
        """Use ``(n_users, k)`` neighbours ``idx`` with weights ``weight`` (a row of zeros: none)."""
        n, k = idx.shape
        rows = torch.arange(n).repeat_interleave(k)
        cols, val = idx.reshape(-1).cpu(), weight.reshape(-1).float().cpu()
        device = self.weight_u.device
        self._user_graph = tuple(_csr(r, c, val, n).to(device) for r, c in ((rows, cols), (cols, rows)))

    # ------------------------------------------------------------------ forward

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_users, d), (n_items, d) final embeddings."""
        if self._user_graph is None:
            self.start_epoch(0)
        if self._user_graph[0].device != self.weight_u.device:
            self._user_graph = tuple(a.to(self.weight_u.device) for a in self._user_graph)
        d, nu = self.cfg.embedding_dim, self.n_users
        x = torch.cat([F.normalize(torch.cat([self.pref[m], self.mlp[m](getattr(self, f"feat_{m}"))]), dim=1)
                       for m in self.modalities], 1)  # (N, M d)
        reps = ops.propagate_blocks(x, self.graph("ui"), self.graph("ui.T"), self.cfg.n_layers, d)
        total = reps[0]
        for r in reps[1:]:
            total = total + r  # MMRec: representation += t_rep, into the first modality's tensor
        if len(reps) == 1:
            users = reps[0][:nu]
        else:
            slots = [total, *reps[1:]]  # the first slot holds the sum (MMRec's in-place add)
            users = sum(self.weight_u[:, k] * s[:nu] for k, s in enumerate(slots))
        users = users + ops.spmm(self._user_graph[0], users, self._user_graph[1])
        return users, total[nu:]

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        users, items = self()
        self._last = (users.detach(), items.detach())  # what MMRec scores with (its result_embed)
        u = users[batch.users]
        diff = (u * items[batch.pos]).sum(1) - (u * items[batch.neg]).sum(1)
        lam = self.cfg.reg_weight
        reg = lam * sum(self.pref[m][batch.users].pow(2).mean() for m in self.modalities)
        reg = reg + lam * self.weight_u.pow(2).mean() + lam * self.weight_i.pow(2).mean()
        terms = {"bpr": -F.logsigmoid(diff).mean() / math.log(2.0), "reg": reg}  # log base 2, as MMRec
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def user_item_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._last if self._last is not None else self()


def cooccurrence_neighbours(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int, k: int,
                            chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each user's ``k`` users with the most training items in common (MMRec's ``user_graph_dict``).

    Returns ``(n_users, k)`` neighbour ids and their common-item counts, most first (ties: lower user id
    first), and ``(n_users,)`` how many are real (count > 0); the rest are 0. A pair counted twice in the
    training data counts once (MMRec's preprocessing takes each user's item set). Blocks of users at a time:
    at most ``n_users x chunk`` counts are held.
    """
    pairs = torch.unique(users.long() * n_items + items.long())
    u, i = pairs // n_items, pairs % n_items
    r = torch.sparse_coo_tensor(torch.stack([u, i]), torch.ones(u.numel()), (n_users, n_items),
                                check_invariants=False).coalesce().to_sparse_csr()
    k = min(k, max(n_users - 1, 0))
    idx = torch.zeros(n_users, k, dtype=torch.long)
    cnt = torch.zeros(n_users, k)
    if k == 0:
        return idx, cnt, torch.zeros(n_users, dtype=torch.long)
    chunk = chunk or max(1, min(n_users, (1 << 25) // max(n_users, 1)))
    # key = count * n_users + (n_users - 1 - id): by count, then by the lower id; unique, so topk is exact.
    # int32 where it fits (a count is at most n_items): half the memory traffic of int64
    dtype = torch.int32 if n_items * n_users + n_users < 2**31 else torch.long
    order = (n_users - 1 - torch.arange(n_users)).to(dtype)
    for s in range(0, n_users, chunk):
        e = min(n_users, s + chunk)
        sel = (u >= s) & (u < e)
        block = torch.zeros(e - s, n_items).index_put_((u[sel] - s, i[sel]), torch.ones(int(sel.sum())))
        # (e - s, n_users): items in common, exact integers, laid out row by row for the topk
        common = torch.sparse.mm(r, block.T).T.to(dtype, memory_format=torch.contiguous_format)
        common[torch.arange(e - s), torch.arange(s, e)] = 0  # not one's own neighbour
        top = common.mul_(n_users).add_(order).topk(k, dim=1).values
        cnt[s:e] = (top // n_users).float()
        idx[s:e] = (n_users - 1 - top % n_users).long()
    length = (cnt > 0).sum(1)
    idx[cnt == 0] = 0
    return idx, cnt, length


def sample_user_graph(cand: torch.Tensor, count: torch.Tensor, length: torch.Tensor, k: int):
    """MMRec's ``topk_sample``: ``(n_users, k)`` neighbours and softmax weights of their counts.

    A user with at least ``k`` candidates takes its first ``k``; one with fewer (but some) fills position
    ``p`` with a uniform draw among positions ``0..p-1`` (the list as it grows, duplicates included), one
    draw per position from torch's generator; one with none gets user 0 with weight 0.
    """
    n = cand.shape[0]
    take = min(k, cand.shape[1])
    idx = torch.zeros(n, k, dtype=torch.long)
    cnt = torch.zeros(n, k)
    idx[:, :take], cnt[:, :take] = cand[:, :take], count[:, :take]
    rows = torch.arange(n)
    for p in range(1, k):
        draw = torch.randint(0, p, (n,))
        fill = (length <= p) & (length > 0)
        idx[fill, p] = idx[rows[fill], draw[fill]]
        cnt[fill, p] = cnt[rows[fill], draw[fill]]
    weight = torch.softmax(cnt, dim=1)
    weight[length == 0] = 0.0
    idx[length == 0] = 0
    return idx, weight


def _csr(rows: torch.Tensor, cols: torch.Tensor, val: torch.Tensor, n: int) -> torch.Tensor:
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), val, (n, n), check_invariants=False)
    return coo.coalesce().to_sparse_csr()
