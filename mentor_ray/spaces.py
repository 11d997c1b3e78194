"""Show a search space of ``tune_spaces/`` (:mod:`mentor_ray.sweep.spaces`): axes, grid size, fixed settings.

::

    mentor-ray spaces show tune_spaces/paper_grid.yaml
    mentor-ray spaces show paper_grid

``python -m mentor_ray.spaces ...`` is the same command.
"""

from __future__ import annotations

from typing import Sequence

from mentor_ray.cli import ArgumentParser, run
from mentor_ray.sweep.spaces import load_space

_DESCRIPTION = "Search spaces for Ray Tune sweeps: the YAML files in ``tune_spaces/``, parsed into one typed object."


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m mentor_ray.spaces", description="Show a search space.")
    p.add_argument("cmd", choices=["show"])
    p.add_argument("space", help="a YAML file, or the name of one in tune_spaces/")
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(run(main))
