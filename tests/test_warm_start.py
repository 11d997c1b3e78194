"""Warm starts (known points before TPE) and the search plan (how many trials a budget buys) of issue #28."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mentor_ray import tune as tune_cmd
from mentor_ray.common.errors import ConfigError
from mentor_ray.report import results
from mentor_ray.sweep import plan
from mentor_ray.sweep.spaces import load_space, snap

SMOKE_DEFAULT = {"dropout": 0.5, "lambda_f": 1.5, "tau": 0.2}  # MENTOR's paper point on smoke's axes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=30), st.integers(2, 5))
def test_the_asha_rule_is_numpys_percentile(values, reduction):
    own, recorded = values[-1], values
    cutoff = np.nanpercentile(recorded, (1 - 1 / reduction) * 100)  # what Ray's ASHA computes
    assert plan._continues(own, recorded, reduction) == (own >= cutoff)


def test_the_first_trials_run_to_the_cap_and_the_budget_buys_fewer():
    assert plan.rungs(10, 3, 100) == [10, 30, 90]
    # the first trial leads every rung: it always runs to the cap
    assert plan.play(100, 100, 10, 3, random.Random(0)) == 1
    p = plan.search_plan(200, 100, 10, 3, grid=1_935_360, warm=1, startup=5)
    assert p.guaranteed == 2 and 2 <= p.expected < 5 and p.informed == 0
    lines = plan.plan_lines("tiktok", p, ["defaults"], 10, 3)
    assert "warning: about" in lines[-1] and "--budget" in lines[-1] and "--max-epochs" in lines[-1]
    roomy = plan.search_plan(2000, 100, 10, 3, grid=1_935_360, warm=1, startup=5)
    assert roomy.expected > 20 and len(plan.plan_lines("tiktok", roomy, [], 10, 3)) == 1  # no warning
    # the suggested budget buys what it says
    need = plan.budget_for(8, 100, 10, 3, grid=1000)
    assert plan.search_plan(need, 100, 10, 3, 1000, 0, 0).expected >= 8 > plan.search_plan(200, 100, 10, 3, 1000, 0,
                                                                                             0).expected


def test_a_small_grid_is_counted_to_its_size():
    p = plan.search_plan(10_000, 10, 2, 3, grid=4, warm=1, startup=5)
    assert p.expected == 4 and p.guaranteed == 4


def test_warm_points_start_from_the_published_defaults_then_start_points(tmp_path):
    assert load_space("smoke").warm_points() == [("the model's published defaults", SMOKE_DEFAULT)]
    text = (load_space("smoke").path and open(load_space("smoke").path).read())
    f = tmp_path / "warm.yaml"
    f.write_text(text.replace("name: smoke", "name: warm") + "start_points:\n  - {dropout: 0.3}\n  - {tau: 0.2}\n")
    points = load_space(str(f)).warm_points()
    # the second start point completed from the defaults IS the defaults: listed once
    assert points == [("the model's published defaults", SMOKE_DEFAULT),
                      ("start_points[0]", {**SMOKE_DEFAULT, "dropout": 0.3})]


@pytest.mark.parametrize("entry, message", [
    ("  - {nope: 1}", "start_points[0].nope: not a searched axis; allowed: dropout, lambda_f, tau"),
    ("  - {dropout: 0.9}", "start_points[0].dropout: 0.9 is not on the axis; allowed: [0.3, 0.5]"),
    ("  - 3", "key 'start_points.0' = 3: Input should be a valid dictionary"),
])
def test_bad_start_points_are_one_line_errors(tmp_path, entry, message):
    f = tmp_path / "bad.yaml"
    f.write_text(open(load_space("smoke").path).read() + f"start_points:\n{entry}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_space(str(f))


def test_snap_takes_the_axis_own_value():
    assert snap({"lr": 0.001, "n_layers": 2}, {"lr": [1e-4, 1.0e-3], "n_layers": [1, 2]}) == {"lr": 1e-3, "n_layers": 2}


def test_plan_prints_and_exits_before_ray(tmp_path, capsys):
    args = ["--dataset", "synth-tiny", "--space", "smoke", "--budget", "6", "--results", str(tmp_path / "r"),
            "--storage", str(tmp_path / "t"), "--plan"]
    assert tune_cmd.main(args) == 0
    out = capsys.readouterr().out
    assert "search plan: budget 6 trial-epochs" in out and "warning: about" in out
    assert not (tmp_path / "r").exists() and not (tmp_path / "t").exists()  # nothing started, nothing written


@pytest.mark.slow
def test_a_budgeted_search_runs_the_known_points_first(local_ray, tmp_path, capsys):
    f = tmp_path / "warm.yaml"
    f.write_text(open(load_space("smoke").path).read().replace("name: smoke", "name: warm")
                 + "start_points:\n  - {dropout: 0.3, tau: 0.5}\n")
    out = tmp_path / "r"
    args = ["--dataset", "synth-tiny", "--space", str(f), "--budget", "10", "--seeds", "1", "--max-concurrent", "1",
            "--results", str(out), "--storage", str(tmp_path / "tune"), "--leaderboard", "none", "--quiet"]
    assert tune_cmd.main(args) == 0
    assert "warm start: 2 known point(s) first" in capsys.readouterr().out
    runs = results.read_results(out, role="search").to_pandas().drop_duplicates("run_id").sort_values("started_at")
    first = [{k: json.loads(c)[k] for k in SMOKE_DEFAULT} for c in runs.config_json[:2]]
    assert first == [SMOKE_DEFAULT, {**SMOKE_DEFAULT, "dropout": 0.3, "tau": 0.5}]


# --------------------------------------------------------------------------- a higher cap for the later runs


def test_the_plan_counts_the_final_runs_at_their_own_cap(tmp_path, capsys):
    args = ["--dataset", "synth-tiny", "--space", "smoke", "--budget", "6", "--max-epochs", "7",
            "--final-max-epochs", "30", "--seeds", "2", "--results", str(tmp_path / "r"),
            "--storage", str(tmp_path / "t"), "--plan"]
    assert tune_cmd.main(args) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "] plan:" in x)
    # the search spends at most its budget; each of the 2 finals up to 30 epochs
    assert "at most 66 epochs in all (epoch budget per run: synth-tiny 7, finals 30;" in line


def test_the_final_cap_is_a_flag_in_range(tmp_path, capsys):
    args = ["--dataset", "synth-tiny", "--space", "smoke", "--final-max-epochs", "0", "--results",
            str(tmp_path / "r"), "--storage", str(tmp_path / "t"), "--plan"]
    assert tune_cmd.run(tune_cmd.main, args) != 0
    err = capsys.readouterr().err
    assert "--final-max-epochs" in err and "0" in err


def test_final_runs_get_their_own_cap_and_the_names_of_sweeps_without_it_stay(tmp_path):
    from mentor_ray.sweep.spaces import load_space as space_of
    from mentor_ray.sweep.tune import Sweep, SweepOptions

    def sweep(**kw):
        return Sweep(SweepOptions(dataset="synth-tiny", results=str(tmp_path / "r"), storage=str(tmp_path / "t"),
                                  space="smoke", max_epochs=7, **kw), space_of("smoke"))

    plain, same, higher = sweep(), sweep(final_max_epochs=7), sweep(final_max_epochs=30)
    assert plain.final_base("synth-tiny")["max_epochs"] == 7 and higher.final_base("synth-tiny")["max_epochs"] == 30
    assert higher.base("synth-tiny")["max_epochs"] == 7  # the search keeps its cap
    point = {"dropout": 0.5}
    names = [s.runs_name("final", "synth-tiny", point, ["mentor"]) for s in (plain, same, higher)]
    # as before the flag (the name rule of 0.5.0), and a new experiment at another cap
    assert names[0] == names[1] == plain.name("final", "synth-tiny", extra={"point": point, "variants": ["mentor"]})
    assert names[2] != names[0]


@pytest.mark.slow
def test_a_sweep_trains_its_finals_to_their_own_cap(local_ray, tmp_path):
    out = tmp_path / "r"
    args = ["--dataset", "synth-tiny", "--space", "smoke", "--num-samples", "1", "--seeds", "1", "--max-epochs", "2",
            "--final-max-epochs", "3", "--results", str(out), "--storage", str(tmp_path / "tune"),
            "--leaderboard", "none", "--quiet", "patience=100"]
    assert tune_cmd.main(args) == 0
    runs = results.read_results(out).to_pandas().drop_duplicates("run_id").set_index("role")
    caps = {role: json.loads(runs.loc[role, "config_json"])["max_epochs"] for role in ("search", "final")}
    assert caps == {"search": 2, "final": 3}
    assert (runs.loc["search", "epochs_run"], runs.loc["final", "epochs_run"]) == (2, 3)
    assert runs.loc["final", "stop_reason"] == "max_epochs"
