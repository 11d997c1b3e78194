"""Inspect a results store (:mod:`mentor_ray.report.results`): a summary per dataset and role.

::

    mentor-ray results show --results runs/results
    mentor-ray results show --results runs/results --role final --dataset tiktok

``python -m mentor_ray.results ...`` is the same command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mentor_ray.cli import ArgumentParser, run, setup_logging
from mentor_ray.common.errors import MentorRayError
from mentor_ray.report.results import ROLES, read_results

_DESCRIPTION = "The results store: every finished trial and final run as rows of one Parquet dataset."


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m mentor_ray.results", description="Inspect a results store.")
    p.add_argument("cmd", choices=["show"])
    p.add_argument("--results", required=True, type=Path, help="the results directory of a sweep")
    p.add_argument("--dataset")
    p.add_argument("--role", choices=ROLES)
    args = p.parse_args(argv)
    setup_logging()  # a corrupted or duplicated run file is reported as a warning
    if not args.results.is_dir():
        raise MentorRayError(f"--results {args.results}: no such directory")
    filters = {k: v for k, v in {"dataset": args.dataset, "role": args.role}.items() if v}
    table = read_results(args.results, **filters)
    if table.num_rows == 0:
        print(f"no results under {args.results}{' for ' + str(filters) if filters else ''}")
        return 0
    import pandas as pd

    df = table.to_pandas()
    r20 = df[(df.metric == "recall") & (df.k == 20)]
    view = r20.pivot_table(index=["dataset", "role", "variant"], columns="split", values="value",
                           aggfunc=["mean", "count"])
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(f"{df.run_id.nunique()} runs, {len(df)} rows; Recall@20 by dataset, role and variant:")
        print(view.round(4))
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
