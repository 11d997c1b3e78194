"""The leaderboard as data: cells, tables, plots and the board that holds them (rendered by :mod:`.render`)."""

from __future__ import annotations

import dataclasses
import math
import numbers

import pandas as pd

DIGITS = 4  # decimals shown (and compared for the best / second marks)
DASH = "–"
SECTIONS = ("Overall performance (Table 2)", "Ablations", "Efficiency (Table 3)", "Sweeps")


@dataclasses.dataclass(frozen=True)
class Cell:
    """A metric cell: mean (None: no runs), sample std (None: one seed), mark 1 best / 2 second, star."""

    mean: float | None
    std: float | None = None
    mark: int = 0
    star: bool = False


def missing(value: object) -> bool:
    """Whether a frame value is no value: None, NaN, pandas' NA or NaT, or empty text. A frame column that
    holds None beside other values may hold NaN there instead (pandas' choice), and NaN is truthy, so no
    table may test a value with ``or``: this is the one test."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array: a value
        return False


def text_cell(value: object) -> str | Cell:
    """A text cell from a frame value; a missing one (:func:`missing`) is an empty cell (the dash)."""
    return Cell(None) if missing(value) else str(value)


def number_cell(value: object, fmt: str, suffix: str = "") -> str | Cell:
    """``value`` formatted with ``fmt`` (e.g. ``.2f``); a missing or infinite value is an empty cell."""
    if missing(value) or not isinstance(value, numbers.Real) or math.isinf(float(value)):
        return Cell(None)
    return f"{format(value, fmt)}{suffix}"


def metric_cell(mean: object, std: object = None, star: bool = False) -> Cell:
    """A metric cell: no mean (missing or NaN) is an empty cell; no std (one seed, NaN) shows the mean only."""
    if missing(mean) or not isinstance(mean, numbers.Real):
        return Cell(None)
    return Cell(float(mean), None if missing(std) or not isinstance(std, numbers.Real) else float(std), star=star)


@dataclasses.dataclass(frozen=True)
class Table:
    section: str
    key: str  # the CSV's name and the TeX label
    title: str
    header: list[str]
    rows: list[list[str | Cell]]  # made with text_cell, number_cell and metric_cell: never a raw frame value
    groups: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # spans over the last columns
    note: str = ""  # what the columns measure, printed under the table (`code` spans allowed)


@dataclasses.dataclass(frozen=True)
class Plot:
    path: str  # relative to --out
    title: str


@dataclasses.dataclass
class Board:
    intro: list[str]
    tables: list[Table]
    frames: dict[str, pd.DataFrame]  # csv name -> machine-readable table
    notes: list[str]
    plots: list[Plot] = dataclasses.field(default_factory=list)
