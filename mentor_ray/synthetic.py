"""List or write the ``synth-*`` stand-in datasets (:mod:`mentor_ray.datasets.synthetic`).

::

    mentor-ray synthetic list
    mentor-ray synthetic generate synth-baby --out data/ [--seed 1]

``python -m mentor_ray.synthetic ...`` is the same command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mentor_ray.cli import ArgumentParser, run, seed_arg, setup_logging
from mentor_ray.common.errors import DataError
from mentor_ray.common.io import check_writable_dir
from mentor_ray.datasets.synthetic import PRESETS, preset, write

_DESCRIPTION = "Synthetic ``synth-*`` datasets with planted structure, written in the MMRec layout."


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m mentor_ray.synthetic", description=_DESCRIPTION)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the presets")
    gen = sub.add_parser("generate", help="write a preset as an MMRec dataset directory")
    gen.add_argument("name", help=f"one of: {', '.join(PRESETS)}")
    gen.add_argument("--out", type=Path, required=True, help="data root; writes OUT/<name>/")
    gen.add_argument("--seed", type=seed_arg, default=None, help="generator seed (default: the preset's, 0)")
    args = p.parse_args(argv)
    setup_logging()
    if args.cmd == "list":
        for s in PRESETS.values():
            mods = ", ".join(f"{m.name} {m.dim}-d" for m in s.modalities)
            print(f"{s.name:15s} users {s.n_users:>6,}  items {s.n_items:>6,}  "
                  f"interactions {s.n_interactions:>7,}  {mods}")
        return 0
    check_writable_dir(args.out, "--out")
    spec = preset(args.name, args.seed)
    target = args.out / spec.name
    if target.exists():
        raise DataError(f"{target}: already exists; remove it or choose another --out")
    write(spec, target)
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
