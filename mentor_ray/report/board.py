"""Tables as data: a :class:`Table` is a pandas DataFrame and one typed :class:`Column` per frame column;
:mod:`.render` turns it into Markdown, LaTeX, HTML or plain text. The leaderboard's board (tables, CSV
frames, notes, plots) lives here too.

Column kinds (what a frame value of that column is, and how it is shown; a missing value, None or NaN, is
the dash in every kind):

==========  ======================================================  ==================  =====
kind        frame value                                             shown               align
==========  ======================================================  ==================  =====
text        ``str`` ("" is a blank cell)                            as it is, escaped   left
number      ``int`` / ``float``, ``decimals`` fixed                 ``1,234.50 MB``     right
sci         ``float``, ``decimals`` in the mantissa                 ``1.2e-07``         right
percent     ``float`` in percent units (37.5 is 37.5%)              ``37.5%``           right
metric      :class:`Cell` (mean, std, best/second mark, star)       ``0.0520* ± 0.0020``  right
duration    seconds                                                 ``5m 00s``          right
interval    ``(low, high)``, signed                                 ``[-0.0010, +0.0120]``  right
pvalue      ``float``, ``decimals`` fixed                           ``0.012``, ``<0.001``  right
fraction    ``(part, whole)``                                       ``3 / 6``           right
==========  ======================================================  ==================  =====

A cell of any kind but text may also hold a :class:`Percent` (Table 2's Improv. row, in metric columns) or a
``str`` shown as it is (``n/a``, ``> 40%``), still right-aligned.

pandas is imported only where it is there: the GPU check (:mod:`mentor_ray.benchmarks.gpucheck`) runs where
only torch, numpy, pyarrow, pyyaml and pydantic are, and renders its tables as Markdown and plain text,
which need no pandas; :attr:`Table.frame` and the LaTeX and HTML renderers (pandas' ``Styler``) do.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Sequence

try:
    import pandas as pd
except ImportError:  # pragma: no cover - the GPU check's bare torch node (module docstring)
    pd = None

DIGITS = 4  # decimals shown for metrics (and compared for the best / second marks)
DASH = "–"
SECTIONS = ("Overall performance (Table 2)", "Ablations", "Efficiency (Table 3)", "Sweeps")
KINDS = ("text", "number", "sci", "percent", "metric", "duration", "interval", "pvalue", "fraction")
LOAD_NOTE = (
    "Times depend on the machine and on its load: on a shared machine the same run's times vary with what else "
    "runs on it (up to 3x between repeats), so compare ratios measured in one run (one model after another on "
    "the same machine, as `mentor-ray bench models` does), never times from different runs or machines.")


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a :class:`Table`: its header, the kind of its values (module docstring), fixed decimals
    (``number``, ``sci``, ``percent``, ``metric``, ``interval``, ``pvalue``), a thousands separator, a unit
    suffix, a spanning group header (Table 2's datasets), ``wrap`` (long text: wrapped, never widening the
    table past the page) and ``inline`` (a text column of the project's own prose, with `code` spans)."""

    header: str
    kind: str = "text"
    decimals: int = 0
    thousands: bool = False
    suffix: str = ""
    group: str = ""
    wrap: bool = False
    inline: bool = False  # text of our own with inline Markdown (`code`, **bold**), shown as each format's markup

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.header!r}: kind {self.kind!r} is none of {', '.join(KINDS)}")

    @property
    def right(self) -> bool:
        """Numbers are right-aligned, text left-aligned."""
        return self.kind != "text"

    @property
    def label(self) -> str:
        return f"{self.group} {self.header}" if self.group else self.header


@dataclasses.dataclass(frozen=True)
class Cell:
    """A metric value: mean (None: no runs), sample std (None: one seed), mark 1 best / 2 second, the
    significance star, and a note shown after it (``(1 none)``)."""

    mean: float | None
    std: float | None = None
    mark: int = 0
    star: bool = False
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Percent:
    """A percentage (percent units) in a column of another kind: Table 2's Improv. row."""

    value: float | None
    decimals: int = 2


def missing(value: object) -> bool:
    """Whether a frame value is no value: None, NaN, pandas' NA or NaT, or empty text. A frame column that
    holds None beside other values may hold NaN there instead (pandas' choice), and NaN is truthy, so no
    table may test a value with ``or``: this is the one test."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    if pd is None:
        return isinstance(value, float) and math.isnan(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: a value
        return False


def real(value: object) -> float | None:
    """``value`` as a finite float, or None (missing, not a number, infinite)."""
    if missing(value) or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return None if math.isinf(value) else value


def metric_cell(mean: object, std: object = None, star: bool = False) -> Cell:
    """A metric cell: no mean (missing or NaN) is an empty cell; no std (one seed, NaN) shows the mean only."""
    m = real(mean)
    return Cell(None) if m is None else Cell(m, real(std), star=star)


@dataclasses.dataclass(frozen=True, eq=False)
class Table:
    """A table: its rows of frame values (one per :class:`Column`, in order; :attr:`frame` is the DataFrame)
    and how to show them. ``keys``: the leading columns that name a row, repeated in each part when a format
    splits a wide table. ``key`` is the TeX label and the HTML id."""

    key: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[object, ...], ...]
    section: str = ""
    note: str = ""  # what the columns measure, printed under the table (`code` spans allowed)
    keys: int = 1

    def __post_init__(self):
        if any(len(r) != len(self.columns) for r in self.rows):
            raise ValueError(f"table {self.key}: a row's length is not the {len(self.columns)} columns'")
        if len({c.label for c in self.columns}) != len(self.columns):
            raise ValueError(f"table {self.key}: two columns share a label")

    @classmethod
    def of(cls, key: str, title: str, columns: Sequence[Column], rows: Sequence[Sequence[object]], **kw) -> Table:
        """A table from rows of values (one per column), or from a DataFrame with one column per Column."""
        if pd is not None and isinstance(rows, pd.DataFrame):
            rows = list(rows.itertuples(index=False, name=None))
        return cls(key, title, tuple(columns), tuple(tuple(r) for r in rows), **kw)

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame (object columns), its columns the headers, under their group if any."""
        if any(c.group for c in self.columns):
            labels = pd.MultiIndex.from_tuples([(c.group, c.header) for c in self.columns])
        else:
            labels = pd.Index([c.header for c in self.columns])
        return pd.DataFrame([list(r) for r in self.rows], columns=labels, dtype=object)

    def cells(self) -> list[list[object]]:
        return [list(r) for r in self.rows]

    def select(self, positions: Sequence[int], **changes) -> Table:
        """The table of the columns at ``positions`` (a part of a wide table)."""
        return dataclasses.replace(self, columns=tuple(self.columns[j] for j in positions),
                                   rows=tuple(tuple(r[j] for j in positions) for r in self.rows), **changes)


@dataclasses.dataclass(frozen=True)
class Plot:
    path: str  # relative to --out
    title: str  # one line: what it plots, on which dataset (HTML's figcaption, plain text)
    caption: str = ""  # the full caption, drawn into the image too (alt text)


@dataclasses.dataclass
class Board:
    intro: list[str]
    tables: list[Table]
    frames: dict[str, pd.DataFrame]  # csv name -> machine-readable table
    notes: list[str]
    plots: list[Plot] = dataclasses.field(default_factory=list)
