"""Writing the MMRec layout: the ``.inter`` interaction table (the loader is :mod:`.dataset`)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv


def write_inter(table: pa.Table, path: Path) -> None:
    """Write an interaction table as MMRec TSV (header, tab separator, no quoting)."""
    with open(path, "wb") as f:  # pyarrow quotes header names, so the header line is ours
        f.write(("\t".join(table.column_names) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
        pacsv.write_csv(table, f, write_options=options)
