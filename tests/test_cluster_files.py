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


# --- security: every cluster file that starts a Ray head turns token authentication on -----------------

EXPOSED_HOSTS = {"0.0.0.0", "::", "[::]"}
HEAD_COMMAND = re.compile(r"\bray start\b[^\n]*--head\b")
DASHBOARD_HOST_FLAG = re.compile(r"--dashboard-host[=\s]+[\"']?([^\s\"']+)")
AUTH_MODE_TOKEN = re.compile(r"\bRAY_AUTH_MODE\s*=\s*[\"']?token\b")


def _walk(node):
    """Every node (mapping, list, scalar) of a parsed YAML document."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def _contents(path):
    """(parsed YAML documents or None, the strings that are not comments) of one cluster file."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        return docs, [s for d in docs for s in _walk(d) if isinstance(s, str)]
    return None, [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def _kuberay_cluster_specs(docs):
    return [node for d in docs or [] for node in _walk(d) if isinstance(node, dict) and "headGroupSpec" in node]


def _head_auth_problems(path) -> list[str]:
    """Why the Ray head this file starts is reachable without the token (empty: it is not)."""
    docs, strings = _contents(path)
    problems = []
    for spec in _kuberay_cluster_specs(docs):
        # authOptions is what gives the token to every Ray container, the autoscaler, the RayJob
        # submitter and the operator's own job-status calls; env alone would leave those out.
        if (spec.get("authOptions") or {}).get("mode") != "token":
            problems.append("KubeRay spec without authOptions.mode: token")
        for group in [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]:
            for container in group["template"]["spec"]["containers"]:
                env = {e.get("name"): str(e.get("value")) for e in container.get("env") or []}
                if env.get("RAY_AUTH_MODE") != "token":
                    problems.append(f"container {container.get('name')} without env RAY_AUTH_MODE=token")
        # KubeRay binds the dashboard to 0.0.0.0 when rayStartParams does not say otherwise.
        host = str((spec["headGroupSpec"].get("rayStartParams") or {}).get("dashboard-host", "0.0.0.0"))
        if host in EXPOSED_HOSTS and (spec.get("authOptions") or {}).get("mode") != "token":
            problems.append(f"dashboard / job API on {host} without token authentication")
    commands = [s for s in strings if HEAD_COMMAND.search(s)]
    if commands:
        auth_on = any(AUTH_MODE_TOKEN.search(s) for s in strings)
        if not auth_on:
            problems.append("`ray start --head` without RAY_AUTH_MODE=token")
        if not any("auth_token" in s or "RAY_AUTH_TOKEN" in s for s in strings):
            problems.append("no token for the nodes (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
        for command in commands:
            for host in DASHBOARD_HOST_FLAG.findall(command):
                if host in EXPOSED_HOSTS and not auth_on:
                    problems.append(f"dashboard / job API on {host} without token authentication: {command}")
    return problems


def _head_starting_files():
    """Every cluster file (not the docs) that starts a Ray head: found by content, so new ones count."""
    found = []
    for path in sorted(p for p in CLUSTER.rglob("*") if p.is_file() and p.suffix != ".md"):
        docs, strings = _contents(path)
        if _kuberay_cluster_specs(docs) or any(HEAD_COMMAND.search(s) for s in strings):
            found.append(path)
    return found


def test_every_cluster_file_that_starts_a_ray_head_turns_token_auth_on():
    problems = {str(p.relative_to(CLUSTER)): _head_auth_problems(p) for p in _head_starting_files()}
    known = {"ray-up-aws.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "kuberay/rayjob-sweep.yaml"}
    assert known <= set(problems)  # discovery finds them by content
    assert not any(problems.values()), {name: found for name, found in problems.items() if found}
