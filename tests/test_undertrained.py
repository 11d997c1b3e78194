"""Runs cut off under-trained (#28): the one rule (report/select.py::is_undertrained), derived at read time from
what the results store keeps, checked against the trainer's own early stopping; the stop-reason labels; and how the
leaderboard marks and counts such runs (Table 2, the ablations, the sweep table, the sweep's end-of-run warning).

Stores are built as test_leaderboard.py builds them (a Trainer-like summary through results.rows_from_summary)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from mentor_ray.common.config import make_config
from mentor_ray.common.names import KS, VALID_METRIC
from mentor_ray.report import leaderboard as lb
from mentor_ray.report import render, results, select
from tests.store_helpers import record

COLS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def _summary(dataset="synth-a", variant="mentor", seed=0, test=(0.01, 0.02, 0.005, 0.008), valid=0.1, best=2,
             epochs=5, status=None, budget=None, drop=(), **hp):
    """A summary shaped like Trainer.summary(); ``best`` / ``epochs``: its best_epoch (0-based) and epochs_run;
    ``hp`` sets config keys (max_epochs, patience, ...); ``drop``: config keys left out (an older file)."""
    cfg = make_config(flags={"dataset": dataset, "variant": variant, "seed": seed},
                      overrides=[f"{k}={v}" for k, v in hp.items()]).model_dump()
    for key in drop:
        del cfg[key]
    tst = {f"{m}@{k}": 0.001 for m in ("recall", "ndcg") for k in KS} | dict(zip(COLS, test))
    summary = {"dataset": dataset, "synthetic": True, "variant": variant, "seed": seed, "best_epoch": best,
               "epochs_run": epochs, "valid": {f"{m}@{k}": valid for m in ("recall", "ndcg") for k in KS},
               "test": tst, "seconds_per_epoch": 1.0, "peak_rss_mb": 500.0, "device": "cpu", "world_size": 1,
               "valid_curve": [], "wall_seconds": 0.0, "config": cfg}
    if status:
        summary["status"] = status
    if budget is not None:
        summary["budget_epochs"] = budget
    return summary


def _frame(summaries) -> pd.DataFrame:
    """The runs frame of (summary, role, sweep), as select.load_runs reads it back, without files."""
    table = pa.concat_tables([results.rows_from_summary(s, role, sweep, version="test")
                              for s, role, sweep in summaries])
    return select.identified(select.runs_frame(table.to_pandas()), "memory")


# --------------------------------------------------------------------------- the rule against the trainer


def _train(curve: list[float], max_epochs: int, patience: int) -> tuple[int, int, str]:
    """The trainer's own epoch loop bookkeeping (Trainer.end_epoch and Trainer.stop_reason, on a stand-in that
    has only their state) over a validation curve: (best_epoch, epochs_run, stop_reason) as its summary has them."""
    from mentor_ray.training.trainer import Trainer

    t = SimpleNamespace(cfg=SimpleNamespace(max_epochs=max_epochs, patience=patience), trainable=True, epoch=0,
                        best={"epoch": -1, "valid": None, "test": None}, bad_epochs=0, history=[], rank_profile=False,
                        _kept_embeddings=lambda: None)
    while Trainer.stop_reason(t) is None:
        Trainer.end_epoch(t, t.epoch, {"seconds": 0.0}, {VALID_METRIC: curve[t.epoch]}, lambda: {}, 0.0)
    return t.best["epoch"], len([h for h in t.history if h["train"]]), Trainer.stop_reason(t)


runs = st.tuples(st.lists(st.sampled_from([0.1, 0.2, 0.25, 0.3]), min_size=45, max_size=45),
                 st.integers(1, 40), st.integers(1, 40))


@settings(max_examples=300, deadline=None)
@given(runs)
def test_undertrained_is_a_run_a_higher_cap_would_have_trained_on(run):
    """The independent formulation: a run is under-trained when the same run with one more epoch of cap would have
    trained longer (the cap, not early stopping, ended it), which is the trainer's stop reason max_epochs."""
    curve, cap, patience = run
    best, epochs, reason = _train(curve, cap, patience)
    longer = _train(curve, cap + 1, patience)[1] > epochs
    assert select.is_undertrained(best, epochs, cap, patience) == longer == (reason == "max_epochs")


@settings(max_examples=25, deadline=None)
@given(runs)
def test_the_rule_reads_what_the_store_keeps(run):
    """Through the store (best_epoch, epochs_run, status, config_json's max_epochs and patience) and back."""
    curve, cap, patience = run
    best, epochs, reason = _train(curve, cap, patience)
    frame = _frame([(_summary(best=best, epochs=epochs, max_epochs=cap, patience=patience), "final", "smoke")])
    assert bool(select.undertrained(frame).iloc[0]) == (reason == "max_epochs")
    labels = {"max_epochs": "max epochs", "early_stopping": "early stopping"}
    assert select.stop_reasons(frame).iloc[0] == labels[reason]


def test_the_rule_at_its_edges():
    # cap 10, patience 3: epochs 0-9; best at 7 (1-based 8) leaves 2 < 3 epochs without improvement: cut off
    assert select.is_undertrained(7, 10, 10, 3) and select.is_undertrained(9, 10, 10, 3)
    assert not select.is_undertrained(6, 10, 10, 3)  # 3 epochs without improvement: early stopping at the cap itself
    assert not select.is_undertrained(7, 9, 10, 3)  # did not reach its cap (stopped by ASHA or the budget)
    assert not select.is_undertrained(0, 0, 0, 3)  # max_epochs=0: evaluated, not trained
    assert not select.is_undertrained(0, 0, 1000, 20)  # MostPop: nothing to train
    assert not select.is_undertrained(9, 10, 10, 3, "failed")
    assert not select.is_undertrained(None, 10, 10, 3) and not select.is_undertrained(9, 10, float("nan"), 3)


def test_an_older_store_is_read_too_and_a_run_without_its_limits_is_not_flagged():
    frame = _frame([(_summary(best=9, epochs=10, max_epochs=10, patience=3), "final", "smoke"),
                    (_summary(seed=1, best=9, epochs=10, drop=("max_epochs", "patience")), "final", "smoke")])
    assert select.undertrained(frame).tolist() == [True, False]
    assert select.stop_reasons(frame.sort_values("seed")).tolist() == ["max epochs", "completed"]


# --------------------------------------------------------------------------- stop reasons


def test_stop_reasons_say_what_the_store_can_tell():
    frame = _frame([
        (_summary(seed=0, best=4, epochs=8, max_epochs=10, patience=3), "final", "s"),  # 3 epochs without: stopped
        (_summary(seed=1, best=8, epochs=10, max_epochs=10, patience=3), "final", "s"),  # the cap
        (_summary(seed=2, best=6, epochs=10, max_epochs=10, patience=3), "final", "s"),  # both at once: early stopping
        (_summary(seed=3, best=2, epochs=3, status="stopped_early"), "search", "no_budget"),
        (_summary(seed=4, best=2, epochs=3, status="stopped_early", budget=100), "search", "budget"),
        (_summary(seed=5, status="failed"), "final", "s"),
        (_summary(variant="most_pop", best=0, epochs=0), "ablation", "s"),
    ])
    reasons = dict(zip(frame["seed"].astype(int) + 10 * (frame["variant"] == "most_pop"), select.stop_reasons(frame)))
    assert reasons == {0: "early stopping", 1: "max epochs", 2: "early stopping", 3: "ASHA", 4: "ASHA or budget",
                       5: "failed", 10: "evaluated only"}
    assert select.stopped_by(["ASHA", "ASHA"]) == "ASHA"
    assert select.stopped_by(["ASHA", "ASHA or budget"]) == "ASHA or budget"
    assert select.stopped_by(["stopped early"]) == "stopped early"


def test_recorded_stop_reasons_are_exact_and_a_reason_its_status_cannot_have_is_not_believed():
    """Since 0.5.1 the store records why each run ended (results.STOP_REASONS): the trainer's rule for a completed
    run, the sweep's ``stopped_by`` (ASHA or the budget) for a trial stopped early; read back as recorded, also
    where the inference from epochs would say otherwise. A reason its status does not allow is not believed."""
    frame = _frame([
        # recorded max_epochs though 3 epochs without improvement would read as early stopping: the record wins
        ({**_summary(seed=0, best=4, epochs=8, max_epochs=8, patience=3), "stop_reason": "max_epochs"}, "final", "s"),
        ({**_summary(seed=1, best=2, epochs=3, status="stopped_early", budget=100), "stopped_by": "asha"}, "search",
         "s"),
        ({**_summary(seed=2, best=2, epochs=3, status="stopped_early", budget=100), "stopped_by": "budget"}, "search",
         "s"),
        # not allowed for its status (a completed run's stopped_by, a stopped trial's trainer reason): inferred
        ({**_summary(seed=3, best=2, epochs=3, status="stopped_early", budget=100), "stop_reason": "max_epochs"},
         "search", "s"),
        ({**_summary(seed=4, best=1, epochs=8, max_epochs=10, patience=3), "stopped_by": "asha"}, "final", "s"),
        ({**_summary(seed=5, status="failed"), "stop_reason": "early_stopping"}, "final", "s"),
    ])
    recorded = frame.sort_values("seed")["stop_reason"]
    assert [r if isinstance(r, str) else None for r in recorded] == [
        "max_epochs", "asha", "budget", None, None, "failed"]
    assert select.stop_reasons(frame.sort_values("seed")).tolist() == ["max epochs", "ASHA", "budget", "ASHA or budget",
                                                   "early stopping", "failed"]
    assert select.stopped_by(["budget", "budget"]) == "budget"
    assert select.stopped_by(["ASHA", "budget"]) == "ASHA and budget"
    assert select.stopped_by(["ASHA and budget", "ASHA"]) == "ASHA and budget"  # a plot's cell labels, grouped
    assert select.stopped_by(["budget", "ASHA or budget"]) == "ASHA or budget"
    assert select.stopped_by(["budget", "early stopping"]) == "stopped early"


def test_the_sweep_names_what_stopped_a_trial_from_ashas_ledger(tmp_path):
    """trials.stop_cause: ASHA where its ledger holds a stop for the trial's key at a rung it reached, else the
    budget (the only other stopper of a recorded trial), None without one."""
    import json

    from mentor_ray.sweep import trials

    ledger = tmp_path / "rungs.json"
    stopped, passed = (_summary(seed=s, epochs=e, status="stopped_early") for s, e in ((0, 3), (1, 9)))
    ledger.write_text(json.dumps({trials.summary_key(stopped): {"3": [0.1, True]},
                                  trials.summary_key(passed): {"3": [0.2, False], "9": [0.2, False]}}))
    cause = trials.stop_cause(ledger, budget=50)
    assert (cause(stopped), cause(passed)) == ("asha", "budget")
    assert cause({**stopped, "epochs_run": 2}) == "budget"  # stopped before the rung it was to be stopped at
    assert trials.stop_cause(tmp_path / "none.json", budget=None)(passed) is None
    assert trials.stop_cause(tmp_path / "none.json", budget=10)(stopped) == "budget"


# --------------------------------------------------------------------------- the leaderboard


def _store(root):
    """MENTOR's 2 finals (one cut off at the cap 10, patience 3), LightGCN's 2 ablation runs (never), MENTOR_base's
    2 (one cut off) and a budgeted search of 3 trials (2 cut off, one stopped early)."""
    for seed in range(2):
        best = 9 if seed == 0 else 4
        s = _summary(seed=seed, best=best, epochs=10 if best == 9 else 8, max_epochs=10, patience=3,
                     test=(0.05, 0.07, 0.03, 0.04))
        record(root, s, "final")
        record(root, s, "ablation")  # the sweep records MENTOR's finals under both roles
        record(root, _summary(variant="lightgcn", seed=seed, best=3, epochs=7, max_epochs=10, patience=3,
                              test=(0.04, 0.06, 0.02, 0.03)), "ablation")
        record(root, _summary(variant="mentor_base", seed=seed, best=9 - seed * 5, epochs=10 - seed * 2, max_epochs=10,
                              patience=3, test=(0.03, 0.05, 0.02, 0.03)), "ablation")
    for i, dropout in enumerate((0.3, 0.5, 0.7)):
        stopped = i == 2
        cut = not stopped
        s = _summary(best=9 if cut else (1 if stopped else 3), epochs=10 if cut else (2 if stopped else 6),
                     valid=0.1 + i / 100, status="stopped_early" if stopped else None, budget=40, max_epochs=10,
                     patience=3, dropout=dropout, tau=0.2)
        record(root, {**s, "space_axes": {"dropout": [0.3, 0.5, 0.7], "tau": [0.2]}}, "search")
    return root


def test_table2_and_the_ablation_mark_cells_of_under_trained_runs_and_say_how_many(tmp_path):
    md = lb.write_leaderboard(_store(tmp_path / "r"), tmp_path / "o", ("md", "csv"))
    mentor = next(line for line in md.splitlines() if line.startswith("| MENTOR |"))
    lightgcn = next(line for line in md.splitlines() if line.startswith("| LightGCN |"))
    assert mentor.count(" †") == 4 and "†" not in lightgcn  # every metric cell of MENTOR on this dataset
    table2 = md.split("### Overall")[1].split("\n### ")[0]
    assert ("Note: † under-trained: 2 of the 6 runs behind this table (MENTOR_base 1 of 2; MENTOR 1 of 2) had their "
            "best validation epoch within `patience` epochs of the epoch cap (max_epochs 10): the cap stopped them "
            "while they were still improving, so their values understate the model. Re-run with `--max-epochs 20` "
            "or more.") in table2
    alignment = md.split("Multilevel cross-modal alignment (Fig. 3)")[1].split("\n### ")[0]
    assert "| MENTOR_base | _0.0300_ ± 0.0000 † |" in alignment and "2 of the 4 runs behind this table" in alignment
    overall = pd.read_csv(tmp_path / "o" / "csv" / "overall.csv").set_index("variant")
    assert overall.loc["mentor", "undertrained"] == 1 and overall.loc["lightgcn", "undertrained"] == 0
    assert overall.loc["mentor", "max_epochs"] == 10

    # the sweep table counts them per space (the best trial, dropout 0.7, was stopped early: not marked)
    sweep = pd.read_csv(tmp_path / "o" / "csv" / "sweep.csv").iloc[0]
    assert (sweep.trials, sweep.completed, sweep.undertrained, sweep.stopped_early) == (3, 2, 2, 1)
    assert sweep.stopped_by == "ASHA or budget" and not sweep.best_undertrained  # the stopped trial is the best
    row = next(line for line in md.split("### Search per dataset")[1].splitlines() if line.startswith("| synth-a"))
    assert row.startswith("| synth-a (synthetic) | smoke | MENTOR | 3 | 2 (2 †) | 1 (ASHA or budget) | 0 | 0.1200 |")
    assert row.endswith("| dropout=0.7, tau=0.2 |")  # tau: one value in every trial, still shown

    # the notes say it once for the store: finals recorded again as the ablation's MENTOR count once
    assert ("- under-trained runs: 4 of 9 runs were cut off under-trained (search 2 of 3, final 1 of 2, ablation 1 "
            "of 4): their best validation epoch was within patience epochs of the epoch cap (max_epochs 10)") in md


def test_the_dagger_renders_in_every_format(tmp_path):
    board = lb.build_board(select.load_runs(_store(tmp_path / "r")), "r", counts={})
    tex, text, page = (render.render_board(board, f) for f in ("tex", "text", "html"))
    assert r"\dag{}" in tex and "†" not in tex
    assert " †" in text and " †" in page


def test_the_warning_the_sweep_prints(tmp_path):
    runs = select.load_runs(_store(tmp_path / "r"))
    warning = lb.undertrained_warning(runs)
    assert warning.startswith("4 of 9 runs were cut off under-trained (search 2 of 3, final 1 of 2, ablation 1 of 4)")
    assert warning.endswith("re-run with --max-epochs 20 or more")
    clean = runs[~select.undertrained(runs)]
    assert lb.undertrained_warning(clean) is None and lb.undertrained_warning(runs.iloc[:0]) is None
    two = pd.concat([runs, runs.assign(dataset="synth-b", run_id=runs["run_id"] + "-b")], ignore_index=True)
    assert "; synth-a 4 of 9, synth-b 4 of 9)" in lb.undertrained_warning(two)
    # the search's trials all within their cap: its point stands, only the later runs need a higher cap
    later = runs[(runs["role"] != "search") | ~select.undertrained(runs)]
    warning = lb.undertrained_warning(later)
    assert warning.startswith("2 of 7 runs were cut off under-trained (search 0 of 1, final 1 of 2, ablation 1 of 4)")
    assert "re-run the same command with --resume --final-max-epochs 20 or more" in warning
    # a search of one point (a model's published point) cut off too: it chose nothing, so the advice is the same
    cut_trial = runs[(runs["role"] == "search") & select.undertrained(runs)]["run_id"].iloc[0]
    one = runs[(runs["role"] != "search") | (runs["run_id"] == cut_trial)]
    warning = lb.undertrained_warning(one)
    assert "(search 1 of 1," in warning and "--resume --final-max-epochs 20 or more" in warning


def test_no_mark_and_no_note_without_under_trained_runs(tmp_path):
    root = tmp_path / "r"
    for seed in range(2):
        record(root, _summary(seed=seed, best=4, epochs=8, max_epochs=10, patience=3), "final")
        record(root, _summary(variant="lightgcn", seed=seed, best=3, epochs=7, max_epochs=10, patience=3), "ablation")
    md = lb.write_leaderboard(root, tmp_path / "o", ("md",))
    table2 = md.split("### Overall")[1].split("\n### ")[0]
    assert "†" not in table2 and "Note:" not in table2 and "- under-trained runs" not in md


def test_the_sweep_warns_for_its_own_datasets_only(tmp_path, capsys):
    from mentor_ray.sweep import tune

    root = _store(tmp_path / "r")
    args = tune.SweepOptions(dataset="synth-a", results=str(root))
    tune.warn_undertrained(args)
    assert capsys.readouterr().out.startswith("[mentor_ray] warning: 4 of 9 runs were cut off under-trained")
    tune.warn_undertrained(tune.SweepOptions(dataset="synth-b", results=str(root)))  # the store's runs are synth-a's
    tune.warn_undertrained(tune.SweepOptions(dataset="synth-a", results=str(tmp_path / "empty")))  # no store
    assert capsys.readouterr().out == ""
