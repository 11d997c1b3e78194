"""The trainer: triplet sampling, early stopping on validation only, repeatability, and the CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from mentor_ray import train as train_cmd
from mentor_ray.cli import run
from mentor_ray.common import config, registry
from mentor_ray.datasets import dataset as data
from mentor_ray.training import trainer as train

TINY = ["embedding_dim=8", "knn_k=5", "batch_size=64", "eval_batch_size=16"]


def _train_items(ds, user: int):
    indptr, items = ds.train_csr
    return items[indptr[user] : indptr[user + 1]]


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset("synth-tiny")


def _trainer(ds, variant="mentor", extra=()):
    cfg = config.make_config(flags={"variant": variant, "dataset": "synth-tiny"}, overrides=[*TINY, *extra])
    return train.Trainer(cfg, ds=ds)


def test_negatives_are_never_training_items_and_shards_partition_the_epoch(ds):
    s = train.TripletSampler(ds, seed=0)
    u, p, n = s.epoch(3)
    assert sorted(zip(u, p)) == sorted(zip(ds.train.users, ds.train.items))  # every interaction once
    for user, neg in zip(u, n):
        assert neg not in set(_train_items(ds, user))
    assert np.array_equal(s.epoch(3)[2], n) and not np.array_equal(s.epoch(4)[0], u)
    single = s.batches(3, 64)
    for world in (2, 3):
        parts = [s.batches(3, 64, rank=r, world_size=world) for r in range(world)]
        assert len({len(p) for p in parts}) == 1  # every rank: the same number of batches
        for k, batch in enumerate(single):  # rank parts of global batch k = single-process batch k
            merged = sorted(t for r in range(world) for t in zip(*parts[r][k]))
            assert merged == sorted(zip(*batch)) and all(len(parts[r][k][0]) for r in range(world))


def test_a_tiny_last_batch_joins_the_previous_one(ds):
    s = train.TripletSampler(ds, seed=0)
    n = len(ds.train)
    b = n - 1  # global batches of n-1 and 1 triplets: the single one would leave rank 1 empty
    assert [len(x[0]) for x in s.batches(0, b)] == [n - 1, 1]
    assert [len(x[0]) for x in s.batches(0, b, rank=1, world_size=2)] == [n // 2]


def test_fit_summary_has_the_documented_keys(ds):
    summary = _trainer(ds, extra=["max_epochs=2"]).fit()
    assert {"dataset", "variant", "seed", "best_epoch", "epochs_run", "stop_reason", "valid", "test",
            "seconds_per_epoch", "wall_seconds", "started_at", "peak_rss_mb", "config"} <= set(summary)
    assert 0 < summary["wall_seconds"] < time.time() - summary["started_at"] + 1
    keys = {f"{m}@{k}" for m in ("recall", "ndcg") for k in (5, 10, 20, 50)}
    assert set(summary["valid"]) == keys and set(summary["test"]) == keys
    assert summary["epochs_run"] == 2 and summary["dataset"] == "synth-tiny" and summary["synthetic"]


def test_same_seed_same_run_on_cpu(ds):
    a = _trainer(ds, extra=["max_epochs=2"]).fit()
    b = _trainer(ds, extra=["max_epochs=2"]).fit()
    assert a["valid"] == b["valid"] and a["test"] == b["test"]
    c = _trainer(ds, extra=["max_epochs=2", "seed=1"]).fit()
    assert c["valid"] != a["valid"]


def test_selection_uses_validation_only_and_test_is_read_at_the_best_epoch(ds):
    t = _trainer(ds, extra=["patience=2"])
    valids = [0.1, 0.3, 0.2, 0.25]
    tests = iter([{"recall@20": 0.9}, {"recall@20": 0.1}])
    for epoch, v in enumerate(valids):
        t.end_epoch(epoch, {"loss": 0.0, "seconds": 0.0}, {"recall@20": v}, lambda: next(tests), 0.0)
    assert t.best["epoch"] == 1 and t.best["test"] == {"recall@20": 0.1}  # not the better test of epoch 0
    assert t.bad_epochs == 2 and t.should_stop()


def test_early_stopping_counts_epochs_without_improvement(ds):
    summary = _trainer(ds, "mf_bpr", extra=["lr=1e-12", "patience=2", "max_epochs=50"]).fit()
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 0  # nothing moves: stop after 1 + 2


def test_most_pop_needs_no_training(ds):
    summary = _trainer(ds, "most_pop").fit()
    assert summary["epochs_run"] == 0 and summary["best_epoch"] == 0 and summary["test"]["recall@20"] > 0


def test_most_pop_protocol_on_tiktok(tiktok_root):
    cfg = config.make_config(flags={"variant": "most_pop", "dataset": "tiktok", "data_root": str(tiktok_root)})
    s = train.Trainer(cfg).fit()
    assert abs(s["test"]["recall@20"] - 0.0597) < 0.001 and abs(s["test"]["ndcg@20"] - 0.0255) < 0.001


def test_command_line_writes_summary(tmp_path, capsys):
    out = tmp_path / "s.json"
    rc = run(train_cmd.main, ["--dataset", "synth-tiny", "--variant", "mentor_fg", "--max-epochs", "1",
                          "--summary", str(out), *TINY])
    assert rc == 0
    summary = json.loads(out.read_text())
    assert summary["variant"] == "mentor_fg" and summary["epochs_run"] == 1
    assert "synth-tiny (synthetic) / mentor_fg" in capsys.readouterr().out


def test_command_line_rejects_a_bad_override(capsys):
    assert run(train_cmd.main, ["--dataset", "synth-tiny", "tau=-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: override: tau = -1") and "\n" not in err


@pytest.mark.parametrize("variant", [m for m, e in registry.MODELS.items() if e.trained])  # every trained model
def test_resuming_from_a_checkpoint_ends_like_an_uninterrupted_run(ds, tmp_path, variant):
    extra = ["max_epochs=5", "patience=2", "lr=1e-3"]
    whole = _trainer(ds, variant, extra=extra)
    full = whole.fit()
    first = _trainer(ds, variant, extra=["max_epochs=2", "patience=2", "lr=1e-3"])
    first.fit()
    torch_save = tmp_path / "state.pt"
    import torch

    torch.save(first.state_dict(), torch_save)
    resumed = _trainer(ds, variant, extra=extra)
    resumed.load_state_dict(torch.load(torch_save))
    assert resumed.epoch == 2
    end = resumed.fit()
    assert end["best_epoch"] == full["best_epoch"] and end["epochs_run"] == full["epochs_run"]
    assert end["valid"] == full["valid"] and end["test"] == full["test"]


def test_a_checkpoint_of_other_data_is_refused(ds):
    t = _trainer(ds)
    state = t.state_dict()
    state["dataset_hash"] = "0" * 64
    with pytest.raises(train.ConfigError, match="checkpoint: it was trained on dataset content 000000000000"):
        t.load_state_dict(state)


def test_graphs_of_another_k_are_refused(ds):
    from mentor_ray.datasets.graphs import build_graphs

    cfg = config.make_config(flags={"variant": "mentor", "dataset": "synth-tiny"}, overrides=TINY)
    other = build_graphs(ds, k=3, knn_norm=cfg.knn_norm)
    with pytest.raises(train.ConfigError, match="graphs built with knn_k=3 .* given to a run with knn_k=5"):
        train.Trainer(cfg, ds=ds, graphs=other)


def test_rank_profile_is_the_best_epochs_test_ranking(ds, tmp_path, capsys):
    cfg = config.make_config(flags={"variant": "lightgcn", "dataset": "synth-tiny", "max_epochs": 1},
                             overrides=TINY)
    t = train.Trainer(cfg, ds=ds, rank_profile=True)
    profile = t.fit()["rank_profile"]  # one epoch: the best epoch is the model as it stands
    assert profile == t.profile("test")
    hits = sum(v for k, v in profile.items() if k.startswith("hits@"))
    assert 0 < hits and profile["hits_cold"] <= profile["gt_cold"] and profile["distinct@20"] <= ds.n_items
    assert "rank_profile" not in _trainer(ds).summary()  # only when asked for

    out = tmp_path / "s.json"
    argv = ["--dataset", "synth-tiny", "--variant", "most_pop", "--rank-profile", "--summary", str(out)]
    assert run(train_cmd.main, argv) == 0
    assert "test ranking at the best epoch: hits@1-5 " in capsys.readouterr().out
    assert json.loads(out.read_text())["rank_profile"]["distinct@20"] >= 1
    assert run(train_cmd.main, ["--dataset", "synth-tiny", "--rank-profile", "--workers", "2"]) == 2
    assert "--rank-profile: in-process runs only" in capsys.readouterr().err


@pytest.mark.parametrize(
    "lr, message",
    # One batch per epoch: the loss was finite, the update was not.
    [("1e30 batch_size=4096 lambda_g=1e30",  # lr=inf is refused by the config now
      r"epoch 0: training diverged, parameter \w+ became NaN or infinite .*lr \(now 1e\+30\)"),
     ("1e30", r"epoch 0: training diverged, loss term \w+ = (nan|inf) \(non-finite: .*lower lr \(now 1e\+30\)")],
)
def test_a_diverged_run_stops_with_the_epoch_and_the_term(ds, lr, message, capsys):
    from mentor_ray.common.errors import DivergedError

    lr, *more = lr.split()
    t = _trainer(ds, extra=[f"lr={lr}", "max_epochs=3", *more])
    with pytest.raises(DivergedError, match=message):
        t.fit()
    assert t.history == []  # the diverged epoch is never evaluated, nor selected
    rc = run(train_cmd.main, ["--dataset", "synth-tiny", "--max-epochs", "3", *TINY, f"lr={lr}", *more])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: epoch ") and "diverged" in err[-1]


def test_a_long_epoch_shows_progress_and_the_scope_hint_once(ds, monkeypatch, caplog):
    import logging

    monkeypatch.setattr(train, "PROGRESS_SECONDS", 0.0)  # every batch counts as "long" here
    monkeypatch.setattr(train, "SLOW_EPOCH_SECONDS", 0.0)
    t = _trainer(ds, extra=["max_epochs=2", "infonce_scope=all"])
    with caplog.at_level(logging.INFO, logger="mentor_ray.training.trainer"):
        t.fit()
    n = len(t.sampler.batches(0, t.cfg.batch_size, 0, 1))
    lines = [r.getMessage() for r in caplog.records]
    assert f"epoch 0: batch 1/{n} ({100 / n:.0f}%)" in "\n".join(lines) and any("ETA" in m for m in lines)
    assert sum("infonce_scope=batch is several times faster" in m for m in lines) == 1

    caplog.clear()  # a quiet sweep's trial: no progress lines at all
    quiet = _trainer(ds, extra=["max_epochs=2", "infonce_scope=batch"])
    quiet.progress_seconds = None
    with caplog.at_level(logging.INFO, logger="mentor_ray.training.trainer"):
        quiet.fit()
    assert not any("ETA" in r.getMessage() for r in caplog.records)


def test_max_epochs_0_says_the_model_is_untrained(capsys):
    assert run(train_cmd.main, ["--dataset", "synth-tiny", *TINY, "max_epochs=0"]) == 0
    assert "mentor (untrained: max_epochs=0 evaluates the initial model)" in capsys.readouterr().out


def test_threads_flag_sets_and_records_the_thread_count(tmp_path):
    import torch

    before = torch.get_num_threads()
    try:
        out = tmp_path / "s.json"
        assert run(train_cmd.main, ["--dataset", "synth-tiny", "--variant", "mf_bpr", "--max-epochs", "1",
                                    "--threads", "1", "--summary", str(out), *TINY]) == 0
        assert json.loads(out.read_text())["threads"] == 1
    finally:
        torch.set_num_threads(before)
