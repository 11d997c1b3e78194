"""The search benchmark (mentor_ray/benchmarks/search.py): searcher specs, compute accounting, and a
replay through Ray Tune against the trained table."""

from __future__ import annotations

import math

import pytest

from mentor_ray.benchmarks import search as sb
from mentor_ray.common.errors import ConfigError


def test_searchers_parse_with_their_settings():
    got = sb.parse_searchers("grid, random,tpe+asha,tpe+asha:grace=3:startup=5,random+asha:reduction=2")
    assert [s.label for s in got] == ["grid", "random", "tpe+asha", "tpe+asha:grace=3:startup=5",
                                      "random+asha:reduction=2"]
    assert got[3] == sb.Searcher("tpe", True, grace=3, startup=5)
    assert sb.parse_searchers(sb.DEFAULT_SEARCHERS)  # the default parses


@pytest.mark.parametrize("text, match", [
    ("hyperband", "expected grid, random or tpe"), ("tpe+bohb", "expected grid, random or tpe"),
    ("tpe:grace=3", "grace and reduction with \\+asha"), ("grid:startup=2", "option 'startup=2'"),
    ("tpe+asha:reduction=1", "reduction >= 2"), ("tpe+asha:grace=x", "option 'grace=x'"), (" , ", "no searcher"),
])
def test_bad_searchers_are_one_line_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        sb.parse_searchers(text)


def test_best_so_far_and_compute_at_a_share_of_the_grid():
    events = [(1, 2.0, 0.1), (2, 4.0, 0.3), (3, 5.0, 0.3), (4, 9.0, 0.5)]
    assert sb.at_fraction(events, 2.5) == (0.3, 4.0)
    assert sb.at_fraction(events, 4) == (0.5, 9.0)
    best, seconds = sb.at_fraction(events, 0.5)
    assert math.isnan(best) and seconds == 0.0
    grid = {"epochs": 40, "best": 0.5}  # 10% = 4 epochs, 5% = 2 epochs; within 1% of 0.5 from epoch 4
    row = sb._row(sb.Searcher("tpe"), [events, events[:2]], grid)
    assert row["best@0.1"] == [0.5, 0.3] and row["best@0.05"] == [0.3, 0.3]
    assert row["target_met"] == 1 and row["reach_fraction"][0] == pytest.approx(0.1)
    assert math.isnan(row["reach_fraction"][1])


def test_table_then_replays_within_their_budget(tmp_path, local_ray):
    from mentor_ray.sweep.spaces import load_space

    space = load_space("smoke")
    table = sb.build_table(space, "synth-tiny", None, tmp_path, processes=1)
    assert len(table["points"]) == space.grid_size == 8
    stamp = (tmp_path / "table.json").stat().st_mtime_ns
    assert sb.build_table(space, "synth-tiny", None, tmp_path, processes=1) == table  # kept, not retrained
    assert (tmp_path / "table.json").stat().st_mtime_ns == stamp
    grid = sb.grid_totals(table)
    assert grid["points"] == 8 and grid["epochs"] == sum(len(e["metric"]) for e in table["points"].values())

    # the exhaustive grid, its whole compute: every epoch of the table, and the grid's best at the end
    events = sb.replay(sb.Searcher("grid"), 0, space, table, grid["epochs"], 2, 0.0, tmp_path / "tune")
    assert [e[0] for e in events] == list(range(1, grid["epochs"] + 1))
    assert events[-1][2] == grid["best"] and events[-1][1] == pytest.approx(grid["seconds"])
    # TPE + ASHA on a budget of 6 epochs: never counts past it, best so far never falls
    events = sb.replay(sb.Searcher("tpe", True, grace=1), 0, space, table, 6, 2, 0.0, tmp_path / "tune")
    assert 0 < events[-1][0] <= 6 and all(a[2] <= b[2] for a, b in zip(events, events[1:]))
