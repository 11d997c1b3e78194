"""The search spaces of ``tune_spaces/`` (:mod:`mentor_ray.sweep.spaces`): list them, or show one's axes, grid
size and fixed settings.

::

    mentor-ray spaces list
    mentor-ray spaces show tune_spaces/paper_grid.yaml
    mentor-ray spaces show paper_grid

``python -m mentor_ray.spaces ...`` is the same command.
"""

from __future__ import annotations

from typing import Sequence

from mentor_ray.cli import ArgumentParser, run
from mentor_ray.common.errors import MentorRayError
from mentor_ray.sweep.spaces import load_space, space_files

_DESCRIPTION = "Search spaces for Ray Tune sweeps: the YAML files in ``tune_spaces/``, parsed into one typed object."


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m mentor_ray.spaces", description="List the search spaces, or show one.")
    p.add_argument("cmd", choices=["list", "show"])
    p.add_argument("space", nargs="?", help="show: a YAML file, or the name of one in tune_spaces/")
    args = p.parse_args(argv)
    if args.cmd == "list":
        if args.space:
            p.error("list takes no space")
        return list_spaces()
    if not args.space:
        p.error("show needs a space: a YAML file, or a name from `spaces list`")
    space = load_space(args.space)
    print(f"{space.name}: {space.description} ({space.path})")
    for key, axis in space.search.items():
        print(f"  search {key}: {axis}")
    print(f"  grid size: {space.grid_size:,}")
    if space.start_from:
        print(f"  starts from the best point of {space.start_from} (per dataset, from the results store)")
    for key, value in space.fixed.items():
        print(f"  fixed  {key} = {value}")
    for d, values in space.datasets.items():
        print(f"  {d}: {values}")
    for alias, target in space.aliases.items():
        print(f"  {alias} -> {target}")
    return 0


def list_spaces() -> int:
    """One line per space: its name, model, grid size and description (a file that does not parse says why)."""
    files = space_files()
    width = max((len(f.stem) for f in files), default=0)
    for path in files:
        try:
            space = load_space(path)
        except MentorRayError as exc:
            print(f"{path.stem:<{width}}  (does not load: {exc})")
            continue
        size = (f"{space.grid_size:,} point{'s' if space.grid_size != 1 else ''}" if space.search
                else "fixed point")
        print(f"{path.stem:<{width}}  {space.model:<8}  {size:>17}  {space.description}")
    print(f"{len(files)} spaces; `mentor-ray spaces show NAME` shows one, `--space NAME` sweeps it")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
