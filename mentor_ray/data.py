"""Inspect a dataset, or convert the DiffMM layout to MMRec's (:mod:`mentor_ray.datasets`).

::

    mentor-ray data info --dataset tiktok --data-root ../shared/datasets
    mentor-ray data info --dataset synth-small [--json]
    mentor-ray data convert-diffmm SRC DST --name tiktok

``python -m mentor_ray.data ...`` is the same command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from mentor_ray.cli import ArgumentParser, run, setup_logging
from mentor_ray.common.io import check_path_roles
from mentor_ray.datasets.convert import convert_diffmm
from mentor_ray.datasets.dataset import load_dataset, load_dataset_dir

_DESCRIPTION = "Datasets in the MMRec layout: reading, validation, a Parquet cache, and two commands."


# --------------------------------------------------------------------------- command line


def format_summary(s: dict) -> str:
    n = s["interactions"]
    total = sum(n.values())
    label = " (synthetic stand-in, not real data)" if s["synthetic"] else ""
    mods = ", ".join(f"{m} {v['dim']}-d ({v['dtype_on_disk']} on disk)" for m, v in s["modalities"].items())
    lines = [
        f"dataset       {s['name']}{label}",
        f"path          {s['path']}",
        f"users         {s['users']:,}",
        f"items         {s['items']:,}",
        f"interactions  {total:,}: train {n['train']:,} / valid {n['valid']:,} / test {n['test']:,}",
        f"density       {s['density']:.5%}  (median training interactions per user: "
        f"{s['train_interactions_per_user_median']:g})",
        f"modalities    {mods or 'none (ID-only models only)'}",
        f"cold users    {s['cold_users']:,} without training interactions "
        f"({s['cold_users_in_valid']:,} of them in valid, {s['cold_users_in_test']:,} in test)",
        f"cold items    {s['cold_items']:,} without training interactions; "
        f"valid: {s['valid_interactions_on_cold_items']:,} interactions on {s['valid_cold_items']:,} such items, "
        f"test: {s['test_interactions_on_cold_items']:,} interactions on {s['test_cold_items']:,}",
        f"content hash  {s['content_hash'][:16]}",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m mentor_ray.data", description=_DESCRIPTION)
    sub = p.add_subparsers(dest="cmd", required=True)
    info = sub.add_parser("info", help="print the statistics of a dataset")
    info.add_argument("--dataset", required=True, help="dataset directory name under --data-root, or a synth-* preset")
    info.add_argument("--data-root", type=Path, default=None, help="directory holding dataset directories")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    conv = sub.add_parser("convert-diffmm", help="convert the DiffMM pickle layout to the MMRec layout")
    conv.add_argument("src", type=Path, help="directory with trnMat.pkl, valMat.pkl, tstMat.pkl, *_feat.npy")
    conv.add_argument("dst", type=Path, help="data root to write <dst>/<name>/ into")
    conv.add_argument("--name", required=True, help="dataset name (directory and .inter file name)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging()
    if args.cmd == "info":
        summary = load_dataset(args.dataset, args.data_root).summary()
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    elif args.cmd == "convert-diffmm":
        check_path_roles([("dst", args.dst / args.name, True)], [("src", args.src, True)])
        out = convert_diffmm(args.src, args.dst, args.name)
        print(format_summary(load_dataset_dir(out).summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
