"""Inspect a results store (:mod:`mentor_ray.report.results`): a summary per dataset and role; add runs
trained outside a sweep.

::

    mentor-ray results show --results runs/results
    mentor-ray results show --results runs/results --role final --dataset tiktok
    # final runs trained in-process (e.g. on a GPU node without Ray: mentor-ray train ... --summary s.json)
    mentor-ray results add --results runs/results --role final --sweep tiktok_mmssl_point gpu/*.json

``add`` writes each summary's rows as a sweep's final (or ablation) run would be written: the leaderboard's
Table 2, its paired tests over users and Fig. 6 then take them like any other; a later sweep whose final run
has the same settings, data root, epoch budget and seed takes it from the store instead of training it again
(:func:`mentor_ray.report.results.stored_summary`). A run the store already holds (same run id: dataset,
variant, settings, seed) is kept, not replaced, unless ``--replace``. ``python -m mentor_ray.results ...`` is
the same command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from mentor_ray.cli import ArgumentParser, run, setup_logging
from mentor_ray.common.errors import MentorRayError
from mentor_ray.report.results import ROLES, read_results

_DESCRIPTION = "The results store: every finished trial and final run as rows of one Parquet dataset."


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m mentor_ray.results", description="Inspect a results store; add runs "
                       "trained outside a sweep.")
    sub = p.add_subparsers(dest="cmd", required=True)
    show = sub.add_parser("show", help="Recall@20 by dataset, role and variant")
    show.add_argument("--results", required=True, type=Path, help="the results directory of a sweep")
    show.add_argument("--dataset", help="this dataset only")
    show.add_argument("--role", choices=ROLES, help="this role only")
    add_p = sub.add_parser("add", help="write run summaries (train --summary) into the store as final or ablation "
                           "runs")
    add_p.add_argument("--results", required=True, type=Path, help="the results directory (created if absent)")
    add_p.add_argument("--role", required=True, choices=("final", "ablation"), help="the role the runs get")
    add_p.add_argument("--sweep", default="imported", help="the sweep (space) name the runs are recorded under "
                       "(default: imported)")
    add_p.add_argument("--replace", action="store_true", help="replace a run the store holds already")
    add_p.add_argument("summaries", nargs="+", type=Path, metavar="SUMMARY.json", help="run summaries")
    args = p.parse_args(argv)
    setup_logging()  # a corrupted or duplicated run file is reported as a warning
    if args.cmd == "add":
        return add(args.results, args.summaries, args.role, args.sweep, args.replace)
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


def add(results: Path, files: list[Path], role: str, sweep: str, replace: bool) -> int:
    """Write each summary in ``files`` into the store ``results`` as a ``role`` run of ``sweep``. Every file
    is read and checked first: one that is not a run summary stops the command before anything is written."""
    from mentor_ray.common.config import validate
    from mentor_ray.common.io import check_writable_dir
    from mentor_ray.common.names import check_name
    from mentor_ray.report.results import is_recorded, rows_from_summary, summary_run_id, write_run

    if role not in ("final", "ablation"):
        raise MentorRayError(f"results add: --role {role}: allowed final or ablation (a search's trials are "
                             "recorded by its sweep)")
    check_name(sweep, "--sweep")
    if not files:
        raise MentorRayError("results add: no summary files given (the JSON files train --summary wrote)")
    check_writable_dir(results, "--results")
    summaries = []
    for path in files:
        summary = _read_summary(path)
        validate(summary["config"], source=f"{path}: config")  # settings this version knows, in range
        summaries.append((path, summary))
    # every file's rows are made before any is written: a file that cannot be stored stops the command, not half
    tables = [rows_from_summary(summary, role, sweep) for _, summary in summaries]
    ids = [summary_run_id(s, role, sweep) for _, s in summaries]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise MentorRayError(f"results add: {len(ids) - len(set(ids))} summary file(s) repeat a run ({twice[0]}): "
                             "give each run once")
    added = kept = 0
    for (path, summary), rid, table in zip(summaries, ids, tables):
        if is_recorded(results, summary, role, sweep) and not replace:
            print(f"kept   {rid}: the store holds it already ({path}; --replace to overwrite)")
            kept += 1
            continue
        write_run(results, table)
        print(f"added  {rid} ({path})")
        added += 1
    print(f"{added} run(s) written to {results}, {kept} kept as they were")
    return 0


def _read_summary(path: Path) -> dict:
    """The run summary in ``path``; a one-line error naming the file when it is not one: not JSON, or not a
    finished run's summary with values the store can keep (:class:`mentor_ray.report.results.RunSummary`: its
    keys, their types and ranges, the same run in the summary and its config, a finished evaluation)."""
    import json

    from mentor_ray.report.results import check_summary

    try:
        summary = json.loads(path.read_text())
    except OSError as exc:
        raise MentorRayError(f"{path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    except ValueError as exc:
        raise MentorRayError(f"{path}: not JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(summary, dict):
        raise MentorRayError(f"{path}: a run summary is a JSON object; found {type(summary).__name__}")
    check_summary(summary, str(path))
    return summary


if __name__ == "__main__":
    raise SystemExit(run(main))
