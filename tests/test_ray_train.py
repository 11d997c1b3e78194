"""Ray Train: resume equals an uninterrupted run, and a killed worker restarts from a checkpoint."""

from __future__ import annotations

import os

import pytest

from mentor_ray.common import config
from mentor_ray.training.ray_train import ensure_ray, fit_with_ray, run_name
from tests.faults import KillOnce

ray = pytest.importorskip("ray")

TINY = ["embedding_dim=8", "knn_k=5", "batch_size=64", "eval_batch_size=16", "lr=1e-3", "patience=10"]


def _cfg(max_epochs: int, variant: str = "mentor"):
    return config.make_config(flags={"dataset": "synth-tiny", "variant": variant, "max_epochs": max_epochs},
                              overrides=TINY)


@pytest.fixture(scope="module")
def local_ray():
    ensure_ray(num_cpus=4, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_run_names_are_deterministic_and_ignore_the_epoch_budget():
    assert run_name(_cfg(2)) == run_name(_cfg(4)) == run_name(_cfg(4))
    assert run_name(_cfg(4)).startswith("synth-tiny-mentor-s0-")
    assert run_name(_cfg(4, "lightgcn")) != run_name(_cfg(4))


@pytest.mark.slow  # kill/resume on Ray Train: the slow tier (.ci/run)
def test_a_resumed_run_ends_like_an_uninterrupted_one(local_ray, tmp_path):
    full = fit_with_ray(_cfg(4), workers=2, storage=str(tmp_path / "whole"))
    fit_with_ray(_cfg(2), workers=2, storage=str(tmp_path / "split"))  # stopped after epoch 1
    resumed = fit_with_ray(_cfg(4), workers=2, storage=str(tmp_path / "split"))  # the same command, more epochs
    assert full["resumed_at_epochs"] == [] and resumed["resumed_at_epochs"] == [2]
    assert resumed["epochs_run"] == full["epochs_run"] == 4
    assert resumed["best_epoch"] == full["best_epoch"]
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]


@pytest.mark.slow  # kill/resume on Ray Train: the slow tier (.ci/run)
def test_a_run_resumes_when_only_runtime_settings_change(local_ray, tmp_path):
    fit_with_ray(_cfg(1), workers=1, storage=str(tmp_path))
    more = config.make_config(flags={"dataset": "synth-tiny", "variant": "mentor", "max_epochs": 2},
                              overrides=TINY + ["infonce_chunk=7", "infonce_threads=1", "eval_batch_size=5"])
    resumed = fit_with_ray(more, workers=1, storage=str(tmp_path))
    assert resumed["resumed_at_epochs"] == [1] and resumed["epochs_run"] == 2


@pytest.mark.slow  # kill/resume on Ray Train: the slow tier (.ci/run)
def test_a_killed_worker_restarts_from_the_last_checkpoint(local_ray, tmp_path):
    marker = tmp_path / "killed"
    fault = KillOnce(epoch=1, batch=2, rank=1, marker=str(marker))
    summary = fit_with_ray(_cfg(3), workers=2, storage=str(tmp_path / "runs"), max_failures=2, batch_hook=fault)
    assert marker.read_text().startswith("killed rank 1 at epoch 1 batch 2")
    assert summary["resumed_at_epochs"] == [1]  # restarted from the checkpoint of epoch 0
    assert summary["epochs_run"] == 3 and summary["world_size"] == 2


def test_gloo_is_pinned_to_the_interface_of_the_node_ip(local_ray, monkeypatch):
    import psutil

    from mentor_ray.training.ray_compat import pin_gloo_interface

    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "")
    iface = pin_gloo_interface()
    assert iface is not None and os.environ["GLOO_SOCKET_IFNAME"] == iface
    assert ray.util.get_node_ip_address() in [a.address for a in psutil.net_if_addrs()[iface]]
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "eth7")
    assert pin_gloo_interface() == "eth7"  # an explicit choice wins


def test_an_untested_ray_version_stops_with_a_message(monkeypatch):
    from mentor_ray.common.errors import MentorRayError
    from mentor_ray.training import ray_compat

    ray_compat.check_ray_version()  # the installed one is the tested one
    monkeypatch.setattr(ray, "__version__", "2.61.0")
    with pytest.raises(MentorRayError, match=r"Ray 2\.61\.0 is installed; mentor_ray is tested with Ray 2\.60\.x"):
        ray_compat.cluster_address()
    monkeypatch.setenv("MENTOR_RAY_ALLOW_RAY", "2.61.0")  # the user's explicit choice to try it
    ray_compat._checked()


@pytest.mark.slow  # kill/resume on Ray Train: the slow tier (.ci/run)
def test_a_diverged_run_fails_with_the_workers_message(local_ray, tmp_path):
    from mentor_ray.common.errors import DivergedError

    cfg = config.make_config(flags={"dataset": "synth-tiny", "variant": "mentor", "max_epochs": 3},
                             overrides=[*TINY, "lr=1e30"])
    with pytest.raises(DivergedError, match=r"^Ray Train run synth-tiny-mentor-s0-\w+: epoch 0: training diverged"):
        fit_with_ray(cfg, workers=2, storage=str(tmp_path), max_failures=0)
