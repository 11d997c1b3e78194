"""Every cluster file parses and says what the cluster README promises."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO

CLUSTER = REPO / "cluster"
DOCKER_INSTRUCTIONS = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "CMD", "ARG", "LABEL", "EXPOSE", "ENTRYPOINT"}


def _load(name: str):
    return yaml.safe_load((CLUSTER / name).read_text())


def test_dockerfile_parses_and_copies_files_that_exist():
    lines, current = [], ""
    for raw in (CLUSTER / "Dockerfile").read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    assert lines[0].startswith("FROM python:3.11")
    for line in lines:
        assert line.split()[0] in DOCKER_INSTRUCTIONS, line
    for line in lines:
        if line.startswith("COPY"):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), f"COPY source {src} is missing"
    assert any('-c "requirements/$PROFILE.txt"' in line and "pip install" in line for line in lines)
    assert "ARG PROFILE=current" in lines  # GPU clusters take the current profile (README)
    for profile in ("pinned", "current"):
        assert (REPO / "requirements" / f"{profile}.txt").exists()


def test_runtime_env():
    env = _load("runtime_env.yaml")
    assert env["working_dir"] == "." and ".venv/" in env["excludes"]
    assert env["env_vars"]["DGLBACKEND"] == "pytorch" and "MENTOR_RAY_CACHE" in env["env_vars"]


def test_kuberay_manifests():
    cluster, job = _load("kuberay/raycluster.yaml"), _load("kuberay/rayjob.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert re.search(r"python -m mentor_ray\.train .*--workers 2 --gpus-per-worker 1", job["spec"]["entrypoint"])
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        assert spec["rayVersion"] == "2.60.0"
        gpu_groups = [g for g in spec["workerGroupSpecs"]
                      if g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")]
        assert gpu_groups


def test_kuberay_sweep_job_runs_the_main_job_on_gpus():
    job = _load("kuberay/rayjob-sweep.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    entry = job["spec"]["entrypoint"]
    assert re.search(r"python -m mentor_ray\.tune --dataset all .*--ablation .*--gpus-per-trial 0\.25", entry)
    from mentor_ray import tune as tune_cmd

    args = tune_cmd._parser().parse_args(entry.split()[3:])  # the entrypoint's flags are the sweep's
    assert args.resume and args.space == "paper_grid" and args.leaderboard.startswith("/mnt/shared/")
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == "2.60.0"


def test_ray_up_config_has_gpu_workers():
    cfg = _load("ray-up-aws.yaml")
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    assert any(t["resources"].get("GPU", 0) >= 1 for t in types.values())
    assert cfg["docker"]["image"].startswith("mentor-ray")
