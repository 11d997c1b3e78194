"""The leaderboard as data: cells, tables, plots and the board that holds them (rendered by :mod:`.render`)."""

from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(frozen=True)
class Table:
    section: str
    key: str  # the CSV's name and the TeX label
    title: str
    header: list[str]
    rows: list[list[str | Cell]]
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
