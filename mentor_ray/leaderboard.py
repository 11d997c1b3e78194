"""Paper-style tables and plots from a sweep's results store (:mod:`mentor_ray.report.leaderboard`).

::

    mentor-ray leaderboard --results runs/results --out runs/leaderboard
    mentor-ray leaderboard --results runs/results --out runs/leaderboard --format md,csv

``python -m mentor_ray.leaderboard ...`` is the same command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from mentor_ray.cli import ArgumentParser, run, setup_logging
from mentor_ray.common.io import check_path_roles
from mentor_ray.report.leaderboard import FORMATS, write_leaderboard

_DESCRIPTION = "Paper-style leaderboard of a results store: Table 2, the ablations, Table 3, sweep summaries, plots."


def main(argv: Sequence[str] | None = None) -> int:

    p = ArgumentParser(prog="python -m mentor_ray.leaderboard",
                                description="Paper-style tables and plots from a sweep's results store.")
    p.add_argument("--results", required=True, type=Path, help="the results directory of a sweep (Parquet)")
    p.add_argument("--out", required=True, type=Path, help="where to write leaderboard.*, csv/ and plots/")
    p.add_argument("--format", default=",".join(FORMATS),
                   help=f"comma-separated, of {','.join(FORMATS)} (default: all)")
    args = p.parse_args(argv)
    setup_logging()
    check_path_roles([("--out", args.out, True)], [("--results", args.results, True)])
    sys.stdout.write(write_leaderboard(args.results, args.out, args.format, returns="text"))  # no markup
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
