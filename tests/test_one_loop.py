"""One epoch loop: in-process, Ray Train and Tune runs of one config end with the same summary."""

from __future__ import annotations

import pytest
import torch

from mentor_ray.common import config, registry
from mentor_ray.training.trainer import Trainer

ray = pytest.importorskip("ray")

TINY = ["embedding_dim=8", "knn_k=5", "batch_size=64", "eval_batch_size=16", "lr=1e-3", "patience=10"]
# What a run computes; timings, memory, run names and resume bookkeeping differ by path by design.
SAME = ("dataset", "synthetic", "variant", "seed", "best_epoch", "epochs_run", "stop_reason", "valid", "test",
        "valid_curve", "config", "dataset_hash", "graph_builder", "world_size", "device")


def _in_process(cfg):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray worker or trial of one CPU runs
    try:
        return Trainer(cfg).fit()
    finally:
        torch.set_num_threads(threads)


def _ray_train(cfg, tmp_path):
    from mentor_ray.training.ray_train import fit_with_ray

    return fit_with_ray(cfg, workers=1, storage=str(tmp_path / "train"))


def _tune_trial(cfg, tmp_path):
    from ray import tune

    from mentor_ray.sweep.trials import run_trial, trial_summaries

    storage = str(tmp_path / "tune")
    grid = tune.Tuner(run_trial, param_space={"cfg": cfg.model_dump(), "threads": 1},
                      run_config=tune.RunConfig(name="one", storage_path=storage, verbose=0)).fit()
    (summary,) = trial_summaries(grid, synthetic=True, storage=storage)
    assert summary["status"] == "completed"
    return summary


SLOW = pytest.mark.slow  # the evaluation-only paths run in the slow tier


@pytest.mark.parametrize("variant, max_epochs", [
    ("mentor", 3), pytest.param("mentor", 0, marks=SLOW), pytest.param("most_pop", 5, marks=SLOW),
    # baselines, one of each kind of input the trainer hands over: the user-item graph only (LightGCN, LGMRec,
    # stochastic scoring), features without graphs (VBPR), kNN graphs with per-epoch pruning (FREEDOM), an
    # item graph learned per epoch (LATTICE); every model's resume and DDP: test_train.py, test_distributed.py
    *(pytest.param(m, 2, marks=SLOW) for m in ("lightgcn", "vbpr", "freedom", "lattice", "lgmrec", "slmrec", "bm3"))])
def test_every_path_gives_the_same_summary(local_ray, tmp_path, variant, max_epochs):
    cfg = config.make_config(flags={"dataset": "synth-tiny", "variant": variant, "max_epochs": max_epochs},
                             overrides=TINY)
    runs = {"in-process": _in_process(cfg), "ray train": _ray_train(cfg, tmp_path),
            "tune": _tune_trial(cfg, tmp_path)}
    expected = {k: runs["in-process"][k] for k in SAME}
    trained = registry.entry_of(variant).trained
    assert expected["stop_reason"] == ("max_epochs" if trained else "evaluation_only")
    assert expected["epochs_run"] == (max_epochs if trained else 0)
    assert expected["valid"] is not None and expected["test"] is not None
    for path, summary in runs.items():
        assert {k: summary[k] for k in SAME} == expected, path
