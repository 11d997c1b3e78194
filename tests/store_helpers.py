"""Writing a results store in tests: one run's rows without ``results.record``'s git call (fast)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from mentor_ray.report import results


def record(root, summary, role="final", sweep="smoke", finished=None):
    """results.record without its git call, optionally with a fixed finished_at (unix seconds)."""
    table = results.rows_from_summary(summary, role, sweep, version="test")
    if finished is not None:
        field = results.SCHEMA.field("finished_at")
        stamp = dt.datetime.fromtimestamp(finished, dt.timezone.utc)
        table = table.set_column(table.schema.get_field_index("finished_at"), field,
                                 pa.array([stamp] * table.num_rows, type=field.type))
    return results.write_run(root, table)
