"""Train one model (MENTOR, an ablation or a baseline) with early stopping on validation Recall@20.

``Trainer(cfg).fit()`` runs the paper's protocol (BPR triplets with uniform negatives, Adam, evaluation
every epoch, the test split read at the best validation epoch) and returns the run summary; the same
epoch loop serves in-process runs, Ray Train DDP (:mod:`mentor_ray.training.ray_train`) and Ray Tune
trials. The protocol and how the loop is sharded over ranks: ``docs/architecture.md`` (*Training*).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

from mentor_ray.common import embeddings
from mentor_ray.common.config import TrainConfig
from mentor_ray.common.errors import ConfigError, DataError, DivergedError
from mentor_ray.common.names import METRICS, USER_METRICS, VALID_METRIC
from mentor_ray.common.runtime import (
    code_version,
    current_rss_mb,
    kill_point,
    peak_rss_mb,
    reset_peak_memory,
    tune_allocator,
)
from mentor_ray.datasets.dataset import Dataset, load_dataset
from mentor_ray.model import Batch, Recommender, build_model, ops
from mentor_ray.model.base import aux_step
from mentor_ray.training import metrics

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- sampling


class TripletSampler:
    """BPR triplets: every training (user, item) once per epoch, one uniform negative each."""

    def __init__(self, ds: Dataset, seed: int, check: bool = True):
        self.users, self.items = ds.train.users, ds.train.items
        self.n_items, self.seed = ds.n_items, seed
        self.keys = np.sort(self.users * self.n_items + self.items)  # membership test for negatives
        if check and self.keys.size:  # a user with every item in training has no negative: sampling never ends
            per_user = np.bincount(np.unique(self.keys) // self.n_items)
            if per_user.max() >= self.n_items:
                user = int(per_user.argmax())
                raise DataError(f"{ds.name}: user {user} has a training interaction with every one of the "
                                f"{self.n_items} items, so BPR can draw no negative item for it; remove that user "
                                f"or add items")

    def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The epoch's shuffled triplets (users, positives, negatives), from ``(seed, epoch)`` alone."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.users.size)
        users, items = self.users[order], self.items[order]
        return users, items, self._negatives(rng, users)

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """This rank's part of every global batch of the epoch.

        Global batch k is triplets ``[k B, (k+1) B)`` of :meth:`epoch`, exactly the batches of a
        single process; rank r takes every w-th triplet of it starting at r. Every rank gets the same
        number of batches (DDP needs that); a last global batch smaller than ``world_size`` joins the
        one before it, so no rank ever gets an empty batch.
        """
        users, items, neg = self.epoch(epoch)
        starts = list(range(0, users.size, batch_size))
        if len(starts) > 1 and users.size - starts[-1] < world_size:
            starts.pop()
        ends = starts[1:] + [users.size]
        return [
            (users[s + rank : e : world_size], items[s + rank : e : world_size], neg[s + rank : e : world_size])
            for s, e in zip(starts, ends)
        ]

    def _negatives(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        neg = rng.integers(self.n_items, size=users.size)
        bad = self._seen(users, neg)
        for _ in range(1000):
            if not bad.any():
                return neg
            neg[bad] = rng.integers(self.n_items, size=int(bad.sum()))
            bad[bad] = self._seen(users[bad], neg[bad])
        raise DataError("negative sampling did not converge in 1,000 draws: a user has interacted with almost every "
                        "item; remove such users or add items")

    def _seen(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        k = users * self.n_items + items
        pos = np.minimum(np.searchsorted(self.keys, k), self.keys.size - 1)
        return self.keys[pos] == k


# --------------------------------------------------------------------------- trainer


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but no CUDA device is visible; use device=cpu or device=auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


PROGRESS_SECONDS = 10.0  # an epoch longer than this gets progress lines, this far apart
# "1": time the parts of every training step (ops.StepTimer); the run summary gets "step_parts" (benchmarks)
STEP_TIMER_ENV = "MENTOR_RAY_STEP_TIMER"
SLOW_EPOCH_SECONDS = 60.0  # an all-scope CPU epoch longer than this gets the infonce_scope hint


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory on CUDA, else this process's peak RSS, in MB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


class _LossStep(torch.nn.Module):
    """``model.loss`` as a module's forward, so that DDP can wrap it."""

    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch):
        return self.model.loss(batch)


class Trainer:
    """Owns the dataset, graphs, model, optimiser and early-stopping state of one run.

    With ``world_size > 1`` it expects ``torch.distributed`` to be initialised (Ray Train does that,
    and so do the tests): gradients are averaged by DDP and metric sums are all-reduced, so every
    rank holds the same metrics and takes the same early-stopping decisions.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        ds: Dataset | None = None,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | None = None,
        graphs=None,
        rank_profile: bool = False,
    ):
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        if rank_profile and world_size > 1:
            raise ConfigError("--rank-profile: in-process runs only (ranks hold a share of the users each); "
                              "drop --workers or --rank-profile")
        self.rank_profile = rank_profile
        tune_allocator()
        self.device = device or resolve_device(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.ds = ds or load_dataset(cfg.dataset, cfg.data_root)
        reset_peak_memory()  # this run's peak, not an earlier run's in the same process
        self.rss_start_mb = current_rss_mb()  # with the data loaded: the peak above it is the model's own
        self._hinted = False  # the infonce_scope hint, given once per run
        # seconds between progress lines inside a long epoch; None: none (a quiet sweep's trials)
        self.progress_seconds: float | None = PROGRESS_SECONDS
        unmet = cfg.entry.unmet(cfg.variant, self.ds.name, self.ds.modalities)
        if unmet:
            raise ConfigError(unmet)
        torch.manual_seed(cfg.seed)  # same on every rank: identical initial weights
        self.model: Recommender = build_model(cfg, self.ds)
        self.graph_builder: str | None = None  # which builder made the graphs (None: the model needs none)
        if cfg.entry.needs_graphs:
            if graphs is None:
                from mentor_ray.datasets.graphs import build_graphs  # DGL stays out of the training loop

                graphs = build_graphs(self.ds, k=cfg.knn_k, knn_norm=cfg.knn_norm)
            # knn_k above the item count means every item (the builder's k, with a warning)
            if (graphs.k, graphs.knn_norm) != (min(cfg.knn_k, self.ds.n_items), cfg.knn_norm):
                raise ConfigError(f"graphs built with knn_k={graphs.k} knn_norm={graphs.knn_norm} given to a run "
                                  f"with knn_k={cfg.knn_k} knn_norm={cfg.knn_norm}; build them with the run's")
            self.graph_builder = graphs.builder
            log.info("%s: graphs %s (knn_k %d, %s)", self.ds.name, graphs.describe(), graphs.k, graphs.knn_norm)
            self.model.set_graphs(graphs.ui_adj, graphs.item_adj)
        self.model.graphs_to(self.device)  # also the graphs a model built itself (MMGCN's)
        self.model.to(self.device)
        # auxiliary groups (a discriminator, denoisers) have the model's own optimisers: not the main one's
        self.aux_optimizers = self.model.aux_optimizers()
        aux = {id(p) for o in self.aux_optimizers.values() for g in o.param_groups for p in g["params"]}
        params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in aux]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr) if params else None
        self.step: torch.nn.Module = _LossStep(self.model)
        # per-part step times (ops.StepTimer), opt-in: one dict of seconds per step per part for each epoch
        self.step_timer = os.environ.get(STEP_TIMER_ENV) == "1"
        self.step_parts: list[dict[str, float]] = []
        # gloo reduces CPU tensors; NCCL needs them on the GPU
        self.comm_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        if world_size > 1 and params:
            from torch.nn.parallel import DistributedDataParallel

            # Graphs are attributes, not buffers, and the features are identical on every rank.
            ids = [self.device.index] if self.device.type == "cuda" else None
            if aux:  # averaged by aux_step, once per auxiliary step, not by DDP's hooks on the main backward
                ignore = [f"model.{n}" for n, p in self.model.named_parameters() if id(p) in aux]
                DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.step, ignore)
            self.step = DistributedDataParallel(self.step, device_ids=ids, broadcast_buffers=False,
                                                find_unused_parameters=self.model.ddp_find_unused)
            if self.step_timer:  # the gradient all-reduce timed apart (waited for in the hook)
                self.step.register_comm_hook(None, ops.timed_allreduce_hook)
        self.sampler = TripletSampler(self.ds, cfg.seed, check=bool(params))  # MostPop draws no negatives
        self.train_csr = self.ds.train_csr
        self.gt = {s: self.ds.csr(s) for s in ("valid", "test")}
        # early-stopping state
        self.epoch = 0
        self.best: dict[str, Any] = {"epoch": -1, "valid": None, "test": None}
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.started_at = time.time()  # wall-clock start of the run (kept across resumes)
        self.code_version = code_version()  # the code this process loaded, before the checkout moves on
        self.wall_before = 0.0  # seconds spent in fit() by earlier attempts (a resumed run adds them)
        self._fit_started: float | None = None

    @property
    def trainable(self) -> bool:
        return self.optimizer is not None

    def train_epoch(self, epoch: int, on_batch: Callable[[int, int], None] | None = None) -> dict[str, float]:
        """One pass over this rank's part of every batch of the epoch; mean loss terms and seconds.

        Loss terms are averaged over the epoch's batches and, when distributed, over the ranks.
        """
        t0 = time.perf_counter()
        self.model.train()
        torch.manual_seed(self.cfg.seed * 100_003 + epoch)  # dropout / noise: per epoch, same on all ranks
        # per-epoch sampling (edge dropout, a rebuilt item graph), same on all ranks; a model that trains auxiliary
        # groups here (DiffMM's denoisers) returns their mean losses, identical on every rank
        aux = self.model.start_epoch(epoch) or {}
        sums: dict[str, float] = {}
        batches = self.sampler.batches(epoch, self.cfg.batch_size, self.rank, self.world_size)
        timing = ops.step_timer(self.device) if self.step_timer else contextlib.nullcontext()
        with timing as timer:
            self._train_steps(epoch, batches, sums, t0, on_batch)
        if timer is not None:
            self.step_parts.append({k: v / max(len(batches), 1) for k, v in timer.seconds.items()})
        out = {k: v / max(len(batches), 1) / self.world_size for k, v in self._all_reduce(sums).items()}
        out.update({f"aux.{k}": float(v) for k, v in aux.items()})
        out["seconds"] = time.perf_counter() - t0
        check_finite(out, epoch, self.cfg)  # after the all-reduce: every rank decides alike
        bad = [n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:  # the last step's update: the epoch's losses were finite, the model is not
            raise DivergedError(
                f"epoch {epoch}: training diverged, parameter {bad[0]} became NaN or infinite "
                f"({len(bad)} of {len(list(self.model.parameters()))} tensors); lower lr (now {self.cfg.lr:g})"
            )
        return out

    def _train_steps(self, epoch: int, batches: list, sums: dict[str, float], t0: float,
                     on_batch: Callable[[int, int], None] | None) -> None:
        """The epoch's steps, one per batch; the loss terms added into ``sums``."""
        last_note, every = t0, self.progress_seconds
        for k, part in enumerate(batches):
            if self.rank == 0 and every is not None and time.perf_counter() - last_note >= every:
                last_note = time.perf_counter()
                self._note_progress(epoch, k, len(batches), last_note - t0)
            if on_batch:
                on_batch(epoch, k)
            kill_point(f"rank{self.rank}-epoch{epoch}-batch{k}")  # fault campaign: a worker lost mid-epoch
            batch = Batch(*(torch.from_numpy(a).to(self.device) for a in part), world=self.world_size,
                          rank=self.rank)
            for name, aux_loss in self.model.aux_losses(batch).items():  # MMSSL's discriminator, before the rest
                value = aux_step(self.aux_optimizers[name], aux_loss, self.world_size)
                sums[f"aux.{name}"] = sums.get(f"aux.{name}", 0.0) + value
            self.optimizer.zero_grad(set_to_none=True)
            with ops.part("forward"):
                loss, terms = self.step(batch)  # DDP averages the gradients over the ranks
            with ops.part("backward"):
                loss.backward()
            with ops.part("optimizer"):
                self.optimizer.step()
            for k, v in {**terms, "loss": float(loss.detach())}.items():
                sums[k] = sums.get(k, 0.0) + v

    def release_ddp(self) -> None:
        """Drop the DDP wrapper in an order that cannot deadlock, before the process group is destroyed.

        Freeing DDP's reducer while it holds the last reference to a gloo process group runs
        ``~ProcessGroupGloo`` with the GIL held, which joins gloo's worker threads; one that is freeing a
        tensor waits for the GIL: a deadlock (pytorch#56297, #75097; seen after ``bench gpu``'s DDP part).
        So: a barrier (every rank's collectives have ended: gloo's barrier waits for the pending work), the
        wrapper dropped and collected while the process group is still registered (the reducer is freed, not
        the group), and a second barrier, whose wait releases the GIL so that gloo's threads finish freeing
        what they hold. ``torch.distributed.destroy_process_group()`` is then safe. A no-op without DDP."""
        from torch.nn.parallel import DistributedDataParallel

        if not isinstance(self.step, DistributedDataParallel):
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
        self.step = _LossStep(self.model)
        gc.collect()
        if dist.is_initialized():
            dist.barrier()

    def _note_progress(self, epoch: int, done: int, total: int, elapsed: float) -> None:
        """A progress line inside a long epoch, with an ETA; once, where it applies, how to go faster."""
        eta = elapsed / max(done, 1) * (total - done)
        log.info("epoch %d: batch %d/%d (%.0f%%), %.0fs, ETA %.0fs", epoch, done, total, 100 * done / total,
                 elapsed, eta)
        slow = self.device.type == "cpu" and getattr(self.cfg, "infonce_scope", None) == "all"
        if slow and not self._hinted and elapsed + eta > SLOW_EPOCH_SECONDS:
            self._hinted = True
            log.info("infonce_scope=all contrasts every user and item in each batch; on a CPU, "
                     "infonce_scope=batch is several times faster (docs/benchmarks.md) and the paper's "
                     "setting stays a key=value away")

    @torch.no_grad()
    def evaluate_sums(self, split: str, per_user: dict[str, list] | None = None) -> dict[str, float]:
        """Summed per-user metrics of ``split``; each rank ranks every w-th user, then the sums add up.
        ``per_user``: as in :func:`metrics.evaluate`, this rank's users only."""
        self.model.eval()
        u_emb, i_emb = self.model.user_item_embeddings()
        users = np.arange(self.ds.n_users)[self.rank :: self.world_size]
        sums = metrics.evaluate(
            lambda batch: u_emb[batch] @ i_emb.T,
            self.train_csr,
            self.gt[split],
            users=users,
            batch_size=self.cfg.eval_batch_size,
            device=self.device,
            per_user=per_user,
        )
        return self._all_reduce(sums)

    def _all_reduce(self, values: dict[str, float]) -> dict[str, float]:
        """Sum a dict of floats over the ranks (identity in a single process)."""
        if self.world_size == 1:
            return values
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def evaluate(self, split: str, users: bool = False) -> dict[str, Any]:
        """Means over the users of ``split``. With ``users``, also ``"users"``: every evaluated user's id
        (``"user"``, ascending) and values of :data:`USER_METRICS`, from all ranks, as plain lists (they
        go into checkpoints, which hold tensors and plain types only)."""
        collected: dict[str, list] | None = {} if users else None
        out: dict[str, Any] = metrics.finalize(self.evaluate_sums(split, collected))
        if collected is not None:
            local = {k: np.concatenate(v).tolist() if v else [] for k, v in collected.items()}
            parts = self._all_gather(local)
            ids = np.array([u for p in parts for u in p.get("user", [])], dtype=np.int64)
            order = np.argsort(ids, kind="stable")
            out["users"] = {"user": ids[order].tolist(),
                            **{m: np.array([v for p in parts for v in p.get(m, [])])[order].tolist()
                               for m in USER_METRICS}}
        return out

    def _all_gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (``[value]`` in a single process)."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    @torch.no_grad()
    def profile(self, split: str) -> dict[str, float]:
        """:func:`metrics.rank_profile` of the current model on ``split``, popularity = training counts."""
        self.model.eval()
        u_emb, i_emb = (e.cpu() for e in self.model.user_item_embeddings())
        popularity = np.bincount(self.ds.train.items, minlength=self.ds.n_items)
        return metrics.rank_profile(lambda b: u_emb[b] @ i_emb.T, self.train_csr, self.gt[split], popularity,
                                    batch_size=self.cfg.eval_batch_size)

    @torch.no_grad()
    def _kept_embeddings(self) -> str | None:
        """The model's per-modality item embeddings on the dataset's fixed item sample (Fig. 4), packed; None
        for a model without them. Taken at each new best epoch, as the test metrics are."""
        self.model.eval()
        found = self.model.modality_item_embeddings()
        if not found:
            return None
        items = embeddings.sample_items(self.ds.n_items)
        return embeddings.encode(items, {m: e.float().cpu().numpy() for m, e in found.items()})

    def evaluate_test(self) -> dict[str, Any]:
        """The test split at a new best epoch, with its per-user values (the paired tests over users)."""
        return self.evaluate("test", users=True)

    def end_epoch(self, epoch: int, train: dict[str, float], valid: dict[str, float],
                  test_fn: Callable[[], dict[str, float]], eval_seconds: float) -> dict[str, Any]:
        """Early-stopping bookkeeping after ``epoch``; evaluates test only when validation improves."""
        improved = self.best["valid"] is None or valid[VALID_METRIC] > self.best["valid"][VALID_METRIC]
        if improved:
            self.best = {"epoch": epoch, "valid": valid, "test": test_fn(), "embeddings": self._kept_embeddings()}
            if self.rank_profile:
                self.best["rank_profile"] = self.profile("test")
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        record = {"epoch": epoch, "train": train, "valid": valid, "eval_seconds": eval_seconds, "improved": improved}
        self.history.append(record)
        self.epoch = epoch + 1
        return record

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs. No RNG state: every epoch re-seeds its randomness from
        ``(seed, epoch)``, so a run resumed at an epoch boundary draws exactly what it would have."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else None,
            "aux_optimizers": {n: o.state_dict() for n, o in self.aux_optimizers.items()},
            "epoch": self.epoch,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "started_at": self.started_at,
            "wall_seconds": self.wall_seconds(),
            "config": self.cfg.model_dump(),
            "dataset_hash": self.ds.content_hash,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("dataset_hash") != self.ds.content_hash:
            raise ConfigError(
                f"checkpoint: it was trained on dataset content {str(state.get('dataset_hash'))[:12]}, "
                f"not {self.ds.name} ({self.ds.content_hash[:12]}); use another --storage or run name"
            )
        self.model.load_state_dict(state["model"])
        if self.optimizer and state["optimizer"]:
            self.optimizer.load_state_dict(state["optimizer"])
        for name, opt in self.aux_optimizers.items():
            if name in state.get("aux_optimizers", {}):
                opt.load_state_dict(state["aux_optimizers"][name])
        self.epoch, self.best, self.bad_epochs = state["epoch"], state["best"], state["bad_epochs"]
        self.history = list(state["history"])
        self.started_at = state["started_at"]
        self.wall_before = state.get("wall_seconds", 0.0)

    def stop_reason(self) -> str | None:
        """Why the run has ended by its own rules, or None while it would go on."""
        if not self.trainable:
            return "evaluation_only"  # MostPop: nothing to train
        if self.bad_epochs >= self.cfg.patience:
            return "early_stopping"
        if self.epoch >= self.cfg.max_epochs:
            return "max_epochs"
        return None

    def should_stop(self) -> bool:
        return self.stop_reason() is not None

    def wall_seconds(self) -> float:
        """Seconds spent in :meth:`fit`, summed over every attempt of the run."""
        running = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.wall_before + running

    def fit(
        self,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Train to early stopping (or ``max_epochs``); the run summary.

        This is the only epoch loop: in-process runs, Ray Train workers and Tune trials all call it
        and differ only in their hooks. ``on_epoch(record)`` runs after every evaluated epoch (report,
        checkpoint, log); ``on_batch(epoch, batch)`` before every training batch. A model with nothing
        to train (MostPop), or ``max_epochs=0``, is evaluated once as epoch 0, and ``on_epoch`` sees it.
        """
        self._fit_started = time.perf_counter()
        if not self.history and (not self.trainable or self.cfg.max_epochs == 0):
            t0 = time.perf_counter()
            valid = self.evaluate("valid")
            record = self.end_epoch(0, {}, valid, self.evaluate_test, time.perf_counter() - t0)
            self.epoch = 0  # evaluated, not trained
            if on_epoch:
                on_epoch(record)
        while not self.should_stop():
            train = self.train_epoch(self.epoch, on_batch)
            t0 = time.perf_counter()
            valid = self.evaluate("valid")
            record = self.end_epoch(self.epoch, train, valid, self.evaluate_test, time.perf_counter() - t0)
            if on_epoch:
                on_epoch(record)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """The run so far: the best epoch's metrics, timings, and why it stopped (None: it has not)."""
        secs = [h["train"]["seconds"] for h in self.history if h["train"]]
        evals = [h["eval_seconds"] for h in self.history]

        def pick(d):
            return {k: d[k] for k in METRICS} if d else None

        return {
            "dataset": self.ds.name,
            "synthetic": self.ds.synthetic,
            "variant": self.cfg.variant,
            "seed": self.cfg.seed,
            "best_epoch": self.best["epoch"],
            "epochs_run": len(secs),
            "stop_reason": self.stop_reason(),
            "valid": pick(self.best["valid"]),
            "test": pick(self.best["test"]),
            "seconds_per_epoch": statistics.median(secs[1:] or secs) if secs else 0.0,
            "eval_seconds": statistics.median(evals) if evals else 0.0,
            "wall_seconds": self.wall_seconds(),
            "started_at": self.started_at,  # unix seconds; with the store's finished_at it bounds the run in time
            "peak_rss_mb": peak_memory_mb(torch.device("cpu")),
            "rss_start_mb": self.rss_start_mb,  # the process before the model: interpreter, libraries, data
            "peak_gpu_mb": peak_memory_mb(self.device) if self.device.type == "cuda" else None,
            "device": str(self.device),
            # results depend on these too: a CPU thread count or torch build changes the floating-point sums
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "code_version": self.code_version,
            "graph_builder": self.graph_builder,
            "world_size": self.world_size,
            "valid_curve": [h["valid"][VALID_METRIC] for h in self.history if h["train"]],
            "config": self.cfg.model_dump(),
            "dataset_hash": self.ds.content_hash,
            **({"rank_profile": self.best.get("rank_profile")} if self.rank_profile else {}),
            # MENTOR_RAY_STEP_TIMER=1: seconds per step of each part, median over the epochs after the first
            **({"step_parts": step_parts_median(self.step_parts)} if self.step_parts else {}),
            "item_embeddings": self.best.get("embeddings"),  # Fig. 4's sample at the best epoch (or None)
            # per-user test values at the best epoch: user ids, then each of USER_METRICS (6 decimals)
            **({"test_users": _rounded_users(self.best["test"]["users"])}
               if self.best["test"] and "users" in self.best["test"] else {}),
        }


def step_parts_median(epochs: list[dict[str, float]]) -> dict[str, float]:
    """Seconds per step of each timed part, the median over the epochs after the first (all of them if one)."""
    kept = epochs[1:] or epochs
    return {k: statistics.median(e.get(k, 0.0) for e in kept) for k in sorted({k for e in kept for k in e})}


def _rounded_users(users: dict[str, list]) -> dict[str, list]:
    return {k: v if k == "user" else [round(x, 6) for x in v] for k, v in users.items()}


def check_finite(terms: dict[str, float], epoch: int, cfg: TrainConfig) -> None:
    """Raise :class:`DivergedError` when an epoch's mean loss or one of its terms is NaN or infinite.

    Evaluating a diverged model would give plausible-looking metrics of a broken model, so the run stops.
    """
    bad = [k for k, v in terms.items() if k != "seconds" and not math.isfinite(v)]
    if not bad:
        return
    named = [k for k in bad if k != "loss"] or bad
    raise DivergedError(
        f"epoch {epoch}: training diverged, loss term {named[0]} = {terms[named[0]]} "
        f"(non-finite: {', '.join(bad)}); lower lr (now {cfg.lr:g}) or check the features for NaN or Inf"
    )


def format_epoch(record: dict[str, Any]) -> str:
    """One log line per epoch."""
    t, v = record["train"], record["valid"]
    if not t:
        return (f"epoch {record['epoch']:4d} | evaluation only | valid R@20 {v['recall@20']:.4f} "
                f"N@20 {v['ndcg@20']:.4f} | eval {record['eval_seconds']:.1f}s")
    terms = " ".join(f"{k} {t[k]:.4f}" for k in t if k not in ("loss", "seconds"))
    mark = " *" if record["improved"] else ""
    return (
        f"epoch {record['epoch']:4d} | loss {t['loss']:.4f} ({terms}) | valid R@20 {v['recall@20']:.4f} "
        f"N@20 {v['ndcg@20']:.4f} | train {t['seconds']:.1f}s eval {record['eval_seconds']:.1f}s{mark}"
    )
