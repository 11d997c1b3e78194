"""Build (or load from cache) a dataset's user-item and item kNN graphs (:mod:`mentor_ray.datasets.graphs`).

::

    mentor-ray graphs build --dataset synth-small [--data-root DIR] [--k 40] [--knn-norm row] \\
        [--builder auto|dgl|torch] [--no-cache] [--json]

``python -m mentor_ray.graphs ...`` is the same command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

from mentor_ray.cli import ArgumentParser, run, setup_logging
from mentor_ray.common.runtime import peak_rss_mb
from mentor_ray.datasets.dataset import load_dataset
from mentor_ray.datasets.graphs import BUILDERS, KNN_NORMS, build_graphs

_DESCRIPTION = "The graph stage: the graphs are built once per (dataset, k, options); the model gets torch CSR."


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m mentor_ray.graphs", description=_DESCRIPTION)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or load from cache) the graphs of a dataset and print a summary")
    b.add_argument("--dataset", required=True, help="dataset name under --data-root, or a synth-* preset")
    b.add_argument("--data-root", type=Path, default=None)
    b.add_argument("--k", type=int, default=40, help="neighbours per item in the kNN graphs (paper: 40)")
    b.add_argument("--knn-norm", choices=KNN_NORMS, default="row", help="kNN normalisation (default: row)")
    b.add_argument("--builder", choices=BUILDERS, default="auto",
                   help="who builds the graphs: dgl, torch (built-in), or auto: DGL where it loads (default)")
    b.add_argument("--no-cache", action="store_true", help="rebuild even if a cached copy exists (and refresh it)")
    b.add_argument("--json", action="store_true", help="print a JSON summary with timings and peak RSS")
    args = p.parse_args(argv)
    setup_logging()
    from mentor_ray.data import format_summary

    t0 = time.perf_counter()
    ds = load_dataset(args.dataset, args.data_root)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    graphs = build_graphs(ds, k=args.k, knn_norm=args.knn_norm, use_cache=not args.no_cache, builder=args.builder)
    t_graphs = time.perf_counter() - t0
    summary = {
        "dataset": ds.name,
        "load_seconds": round(t_load, 3),
        "graph_seconds": round(t_graphs, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **graphs.summary(),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(format_summary(ds.summary()))
    edges = ", ".join(f"{m} {n:,}" for m, n in summary["item_edges"].items())
    print(f"graphs        {graphs.describe()} in {t_graphs:.2f}s (key {summary['key']}); "
          f"user-item {summary['ui_edges']:,} "
          f"directed edges; kNN (k={graphs.k}, {graphs.knn_norm}): {edges or 'none'}")
    print(f"peak RSS      {summary['peak_rss_mb']:,.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
