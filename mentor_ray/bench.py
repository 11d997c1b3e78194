"""Benchmarks, written to ``docs/benchmarks.md`` with the command, the machine and the date.

Each measurement runs in a fresh subprocess, so its peak RSS is its own (not this driver's) and
a cold start is really cold. Results replace the block of the same benchmark in the Markdown file
(between ``<!-- bench:ID -->`` markers) or are appended, so re-running updates rather than piles up.

Commands::

    python -m mentor_ray.bench graphs --dataset synth-clothing --write docs/benchmarks.md
    python -m mentor_ray.bench graphs --dataset tiktok --data-root ../shared/datasets
"""

from __future__ import annotations

import argparse
import datetime as dt
from importlib import metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from mentor_ray.cli import run, setup_logging
from mentor_ray.errors import MentorRayError


def machine() -> str:
    """One line describing this machine and the key library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, dgl {metadata.version('dgl')}"
    )


def _run_json(args: list[str]) -> tuple[dict, float]:
    """Run ``python -m <args>`` expecting one JSON line on stdout; (parsed, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MentorRayError(f"benchmark step 'python -m {' '.join(args)}' failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def bench_graphs(dataset: str, data_root: Path | None, k: int, knn_norm: str) -> dict:
    common = ["mentor_ray.graphs", "build", "--dataset", dataset, "--k", str(k), "--knn-norm", knn_norm, "--json"]
    if data_root is not None:
        common += ["--data-root", str(data_root)]
    print(f"[bench] preparing {dataset} (generation / parse cache, not timed)", file=sys.stderr)
    _run_json(common)  # make sure the dataset exists and its parse is cached
    print(f"[bench] cold graph build of {dataset} (k={k}, {knn_norm})", file=sys.stderr)
    cold, cold_wall = _run_json(common + ["--no-cache"])
    print(f"[bench] second call (cache hit) of {dataset}", file=sys.stderr)
    warm, warm_wall = _run_json(common)
    if not warm["from_cache"]:
        raise MentorRayError("benchmark: the second graph build was not a cache hit")
    return {"cold": cold, "cold_wall": cold_wall, "warm": warm, "warm_wall": warm_wall}


def graphs_markdown(res: dict, command: str, dataset: str, k: int, knn_norm: str) -> str:
    cold, warm = res["cold"], res["warm"]
    parts = ", ".join(f"{name} {sec:.1f}s" for name, sec in cold.get("build_seconds", {}).items())
    edges = ", ".join(f"{m} {n:,}" for m, n in cold["item_edges"].items())
    return "\n".join(
        [
            f"### Graph build: {dataset} (k={k}, knn_norm={knn_norm})",
            "",
            f"- Command: `{command}`",
            f"- Machine: {machine()}",
            f"- Date: {dt.date.today().isoformat()}",
            f"- Graphs: user-item {cold['ui_edges']:,} directed edges; kNN {edges}",
            "",
            "| call | graph stage (s) | process wall (s) | peak RSS (MB) |",
            "|---|---:|---:|---:|",
            f"| first (built with DGL; {parts}) | {cold['graph_seconds']:.2f} | {res['cold_wall']:.1f} "
            f"| {cold['peak_rss_mb']:,.0f} |",
            f"| second (cache hit) | {warm['graph_seconds']:.3f} | {res['warm_wall']:.1f} | {warm['peak_rss_mb']:,.0f} |",
            "",
            "Process wall time includes Python start-up, imports and loading the dataset "
            f"({cold['load_seconds']:.1f}s from the Parquet cache and .npy files).",
        ]
    )


def upsert_block(path: Path, block_id: str, body: str) -> None:
    """Replace the block ``block_id`` in the Markdown file ``path``, or append it."""
    start, end = f"<!-- bench:{block_id} -->", f"<!-- /bench:{block_id} -->"
    block = f"{start}\n{body}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mentor_ray.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("graphs", help="graph build time and peak RSS, then the cache-hit time of a second call")
    g.add_argument("--dataset", required=True)
    g.add_argument("--data-root", type=Path, default=None)
    g.add_argument("--k", type=int, default=40)
    g.add_argument("--knn-norm", default="row")
    g.add_argument("--write", type=Path, default=None, metavar="MD", help="update this Markdown file (e.g. docs/benchmarks.md)")
    args = p.parse_args(argv)
    setup_logging()
    command = "python -m mentor_ray.bench " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    res = bench_graphs(args.dataset, args.data_root, args.k, args.knn_norm)
    md = graphs_markdown(res, command, args.dataset, args.k, args.knn_norm)
    print(md)
    if args.write:
        upsert_block(args.write, f"graphs:{args.dataset}:k{args.k}:{args.knn_norm}", md)
        print(f"\n[bench] written to {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
