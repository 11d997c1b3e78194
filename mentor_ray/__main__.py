"""``python -m mentor_ray <command> ...``: the same as the ``mentor-ray`` console script."""

from mentor_ray.cli import console

console()
