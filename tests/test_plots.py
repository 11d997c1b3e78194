"""The leaderboard's plots (report/plots.py): what each figure says it shows, colour scales against seed noise,
lines only between points that differ in the plotted axis, stopped runs shown as stopped, the best baseline
beside MENTOR's curves, and the same figures (data and PNG bytes) whatever order the store's rows came in.

Stores are built as test_leaderboard.py builds them (a Trainer-like summary through results.rows_from_summary;
``_summary`` / ``_record`` are its helpers, copied so that these tests do not depend on the table code);
expected values are computed here from the numbers put in, never with the module's own helpers."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mentor_ray.common.config import make_config
from mentor_ray.common.names import KS
from mentor_ray.report import board, plots, results, select
from tests.store_helpers import record

# --------------------------------------------------------------------------- fixtures (as test_leaderboard.py's)

COLS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def _summary(dataset="synth-a", variant="mentor", seed=0, test=(0.01, 0.02, 0.005, 0.008), valid=0.1,
             synthetic=True, curve=(), epochs=5, stopped=False, **hp):
    """A summary shaped like Trainer.summary(); ``test`` is (R@10, R@20, N@10, N@20), ``valid`` every valid metric."""
    cfg = make_config(flags={"dataset": dataset, "variant": variant, "seed": seed},
                      overrides=[f"{k}={v}" for k, v in hp.items()]).model_dump()
    tst = {f"{m}@{k}": 0.001 for m in ("recall", "ndcg") for k in KS} | dict(zip(COLS, test))
    summary = {"dataset": dataset, "synthetic": synthetic, "variant": variant, "seed": seed, "best_epoch": 2,
               "epochs_run": epochs, "valid": {f"{m}@{k}": valid for m in ("recall", "ndcg") for k in KS},
               "test": tst, "seconds_per_epoch": 1.0, "peak_rss_mb": 500.0, "device": "cpu", "world_size": 1,
               "valid_curve": list(curve), "wall_seconds": 0.0, "config": cfg}
    if stopped:
        summary["status"] = "stopped_early"
    return summary


_record = record  # tests.store_helpers


# --------------------------------------------------------------------------- a quickstart-like store

# (dropout, lambda_f, lambda_align, valid R@20, stopped early): tune_spaces/quickstart.yaml's 2 x 2 x 2 grid,
# 5 completed and 3 stopped by ASHA; cell (0.3, 1.5) has only stopped trials
SEARCH = [(0.3, 1.0, 0.1, 0.3869, False), (0.3, 1.0, 0.3, 0.3841, False),
          (0.5, 1.0, 0.1, 0.3809, False), (0.5, 1.0, 0.3, 0.3712, True),
          (0.3, 1.5, 0.1, 0.3702, True), (0.3, 1.5, 0.3, 0.3688, True),
          (0.5, 1.5, 0.1, 0.3822, False), (0.5, 1.5, 0.3, 0.3835, False)]
STOPPED_AT = 6  # ASHA's first rung
MENTOR_FINALS = (0.3869, 0.3832, 0.3851)  # valid R@20 of the 3 final seeds at the best point
SIGMA = statistics.stdev(MENTOR_FINALS)
# baselines' final runs (the sweep's ablation phase), valid R@20 per seed; mf_bpr has the best *test* values
BASELINE_FINALS = {"lightgcn": (0.352, 0.349, 0.355), "mf_bpr": (0.331, 0.333, 0.330), "vbpr": (0.345, 0.344, 0.343)}


def _curve(top: float, length: int, best: int, rate: float = 3.0) -> list[float]:
    """A validation curve rising to ``top`` at epoch index ``best``, then drifting down."""
    rise = [top * (1 - 0.7 * math.exp(-(e + 1) / rate)) for e in range(length)]
    curve = [r * top / rise[best] if e <= best else top - 0.0006 * (e - best) for e, r in enumerate(rise)]
    curve[best] = top
    return curve


def _run(dataset="synth-a", variant="mentor", seed=0, valid=0.1, curve=(), best=None, stopped=False, epochs=25,
         test=(0.01, 0.02, 0.005, 0.008), **hp):
    s = _summary(dataset, variant, seed, test, valid=valid, curve=curve, stopped=stopped, epochs=epochs, **hp)
    if best is not None:
        s["best_epoch"] = best
    return s


def quickstart_summaries(dataset="synth-a"):
    """(summary, role, sweep) of a quickstart-like sweep: search, MENTOR's finals, the baselines' runs."""
    out = []
    for p, lf, la, valid, stopped in SEARCH:
        epochs = STOPPED_AT if stopped else 25
        best = epochs - 1 if stopped else 18
        out.append((_run(dataset, valid=valid, stopped=stopped, epochs=epochs, dropout=p, lambda_f=lf, lambda_align=la,
                         curve=_curve(valid, epochs, best), best=best), "search", "quickstart"))
    for seed, (valid, length, best) in enumerate(zip(MENTOR_FINALS, (20, 23, 25), (14, 17, 21))):
        out.append((_run(dataset, seed=seed, valid=valid, curve=_curve(valid, length, best), best=best, dropout=0.3,
                         lambda_f=1.0, lambda_align=0.1), "final", "quickstart"))
    for variant, values in BASELINE_FINALS.items():
        for seed, valid in enumerate(values):
            test = (0.09, 0.12, 0.05, 0.06) if variant == "mf_bpr" else (0.01, 0.02, 0.005, 0.008)
            best = 9 + seed
            out.append((_run(dataset, variant, seed, valid, _curve(valid, best + 6, best, rate=2.0), best, test=test),
                        "ablation", "quickstart"))
    return out


def quickstart_store(root, dataset="synth-a"):
    for summary, role, sweep in quickstart_summaries(dataset):
        _record(root, summary, role, sweep)
    return root


def runs_in_memory(summaries) -> pd.DataFrame:
    """The runs frame :func:`select.load_runs` would give for these (summary, role, sweep), without files."""
    table = pa.concat_tables([results.rows_from_summary(s, role, sweep, version="test")
                              for s, role, sweep in summaries])
    return select.identified(select.runs_frame(table.to_pandas()), "memory")


@pytest.fixture(scope="module")
def qs_runs(tmp_path_factory):
    return select.load_runs(quickstart_store(tmp_path_factory.mktemp("qs")))


def _texts(fig) -> list[str]:
    """The texts drawn on a figure's plot (not its subtitle, nor the colour bar's)."""
    return [t.get_text() for t in fig.axes[0].texts if t.get_gid() != "subtitle"]


def _title(fig) -> str:
    """Title and subtitle."""
    ax = fig.axes[0]
    return "\n".join([ax.get_title(loc="left"), *(t.get_text() for t in ax.texts if t.get_gid() == "subtitle")])


# --------------------------------------------------------------------------- what each plot says it shows


def test_captions_say_runs_seeds_metric_and_the_axes_maximised_over(qs_runs, tmp_path):
    written, notes = plots.write_plots(qs_runs, tmp_path)
    captions = {p.path.rsplit("-", 1)[-1]: p.caption for p in written}
    assert set(captions) == {"sens_dropout_lambda_f.png", "lambda_align.png", "valid_curves.png"}
    assert any("sensitivity to (tau, lambda_g)' skipped" in n for n in notes)  # the quickstart searches no tau
    sens = captions["sens_dropout_lambda_f.png"]
    assert sens.startswith("synth-a (synthetic): sensitivity to (dropout, lambda_f). Each cell: validation Recall@20 "
                           "(valid split), the best over lambda_align (each configuration: the mean of its completed")
    assert "n = completed runs in the cell" in sens
    assert "8 search runs (5 completed, 3 stopped early), 8 configurations, seed 0" in sens
    assert f"Sigma = {SIGMA:.4f}: std over the 3 seeds of MENTOR's final runs" in sens
    align = captions["lambda_align.png"]
    assert "one line per configuration of dropout, lambda_f: a line joins runs that differ in lambda_align only, " \
           "nothing is maximised over" in align
    assert "2 of 4 configurations have 2 or more completed values" in align
    curves = captions["valid_curves.png"]
    assert "MENTOR: 3 seeds; LightGCN (best baseline by mean validation Recall@20): 3 seeds" in curves

    noise = plots.seed_noise(qs_runs, "synth-a")
    scored = plots.search_scores(qs_runs, "synth-a", ("dropout", "lambda_f"))
    cells = plots.cell_frame(scored, "dropout", "lambda_f", noise)
    said = plots.heatmap_caption(scored, "dropout", "lambda_f", noise)
    assert sens == plots.caption_text("synth-a (synthetic): sensitivity to (dropout, lambda_f)", said)
    fig = plots.heatmap_figure(cells, "dropout", "lambda_f", "t", plots.subtitle_text(said), noise)
    title = _title(fig).replace("\n", " ")
    assert "the best over lambda_align" in title and "8 search runs (5 completed, 3 stopped early)" in title
    assert f"σ = {SIGMA:.4f}" in title
    texts = _texts(fig)
    assert "0.3869\nn=2" in texts  # two completed runs (lambda_align 0.1 and 0.3), the better one's value
    assert "0.3809\nn=1\n+1 stopped" in texts and "0.3835\nn=2" in texts


def test_without_two_final_seeds_the_noise_is_the_stated_default(tmp_path):
    summaries = [s for s in quickstart_summaries() if not (s[1] == "final" and s[0]["seed"] > 0)]
    runs = runs_in_memory(summaries)
    noise = plots.seed_noise(runs, "synth-a")
    assert (noise.std, noise.seeds, noise.measured) == (plots.DEFAULT_NOISE, 1, False)
    written, _ = plots.write_plots(runs, tmp_path)
    sens = next(p.caption for p in written if "sens_" in p.path)
    assert f"Sigma = {plots.DEFAULT_NOISE:.4f}: a default, not measured (1 final MENTOR seed, fewer than 2)" in sens


# --------------------------------------------------------------------------- colour range and noise


def test_the_colour_range_spans_at_least_the_seed_noise_and_outlines_cells_within_it(qs_runs):
    noise = plots.seed_noise(qs_runs, "synth-a")
    assert noise.measured and noise.std == pytest.approx(SIGMA)
    cells = plots.cell_frame(plots.search_scores(qs_runs, "synth-a", ("dropout", "lambda_f")), "dropout", "lambda_f",
                             noise)
    fig = plots.heatmap_figure(cells, "dropout", "lambda_f", "t", "s", noise)
    norm = fig.axes[0].images[0].norm
    assert norm.vmax == pytest.approx(0.3869)  # the best cell
    assert norm.vmax - norm.vmin == pytest.approx(plots.SPAN_WIDTHS * SIGMA)  # wider than the cells' 0.006
    assert norm(0.3809) > 0.4  # 0.006 below the best (about 3 sigma) is not the far end of the map
    within = {(r.dropout, r.lambda_f) for r in cells.itertuples() if r.within_noise}
    assert within == {(0.3, 1.0), (0.5, 1.5)}  # gaps 0 and 0.0034 <= 2 sigma (0.0037); 0.3809's 0.006 is not
    outlined = [p for p in fig.axes[0].patches if p.get_linestyle() == "--"]
    assert len(outlined) == 2

    wide = plots.Noise(0.0001, 3, True)  # cells far apart against the noise: the range is theirs
    assert plots.colour_range([0.30, 0.35, math.nan], wide) == pytest.approx((0.30, 0.35))
    assert plots.colour_range([0.3809, 0.3869], plots.Noise(0.005, 0, False)) == pytest.approx((0.3869 - 0.03, 0.3869))


# --------------------------------------------------------------------------- lines


def _other_settings(config_json: str) -> str:
    """Every config key but lambda_align and the seed (independently of plots.align_frame's key)."""
    config = json.loads(config_json)
    return json.dumps({k: v for k, v in config.items() if k not in ("lambda_align", "seed")}, sort_keys=True)


trial = st.tuples(st.sampled_from([0.3, 0.5]), st.sampled_from([1.0, 1.5]), st.sampled_from([0.1, 0.3, 1.0]),
                  st.sampled_from([0, 1]), st.floats(0.30, 0.40), st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(trial, min_size=2, max_size=9, unique_by=lambda t: t[:4]))
def test_a_line_joins_only_points_that_differ_in_the_plotted_axis(trials):
    runs = runs_in_memory([(_run(seed=seed, valid=round(v, 4), stopped=stop, epochs=6 if stop else 25, dropout=p,
                                 lambda_f=lf, lambda_align=la), "search", "grid")
                           for p, lf, la, seed, v, stop in trials])
    scored = plots.search_scores(runs, "synth-a")
    frame = plots.align_frame(scored)
    fig = plots.align_figure(frame, "t", "s", plots.Noise(0.002, 3, True))
    done = scored[scored["status"] == "completed"].assign(other=lambda d: d["config_json"].map(_other_settings))
    lines = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) >= 2 and ln.get_linestyle() == "-"]
    groups = done.groupby("other")["lambda_align"].nunique()
    assert len(lines) == int((groups >= 2).sum())  # every configuration with 2+ completed values has its line
    for line in lines:
        xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert len(set(xs)) == len(xs) and list(xs) == sorted(xs)
        owners = [g for _, g in done.groupby("other") if all(
            (g["lambda_align"] == x).any()
            and g.loc[g["lambda_align"] == x, "valid_recall@20"].mean() == pytest.approx(y) for x, y in zip(xs, ys))]
        assert owners, f"a line through points of different configurations: {list(zip(xs, ys))}"
        assert set(owners[0]["lambda_align"]) == set(xs)  # all of that configuration's completed values
    stopped = scored[scored["status"] != "completed"]
    hollow = [ln for ln in fig.axes[0].get_lines() if ln.get_markerfacecolor() == "white"]
    assert sum(len(ln.get_xdata()) for ln in hollow) == len(stopped.groupby(
        [stopped["config_json"].map(_other_settings), "lambda_align"])) if len(stopped) else not hollow


def test_several_runs_at_one_point_have_their_mean_and_a_min_max_bar():
    runs = runs_in_memory([(_run(seed=seed, valid=v, dropout=0.3, lambda_align=la), "search", "grid")
                           for la, seed, v in [(0.1, 0, 0.30), (0.1, 1, 0.32), (0.1, 2, 0.34), (0.3, 0, 0.31)]])
    frame = plots.align_frame(plots.search_scores(runs, "synth-a"))
    np.testing.assert_allclose(frame[["lambda_align", "mean", "low", "high", "runs"]].to_numpy(float),
                               [[0.1, 0.32, 0.30, 0.34, 3], [0.3, 0.31, 0.31, 0.31, 1]])
    assert frame["line"].all() and frame["label"].iloc[0] == "the other settings fixed"
    fig = plots.align_figure(frame, "t", "s", plots.Noise(0.002, 3, True))
    assert "n=3" in _texts(fig)
    lo, hi = fig.axes[0].get_ylim()
    assert lo <= 0.30 and hi >= 0.34


def test_the_y_axis_spans_at_least_the_seed_noise(qs_runs):
    frame = plots.align_frame(plots.search_scores(qs_runs, "synth-a", ("lambda_align",)))
    fig = plots.align_figure(frame, "t", "s", plots.Noise(0.01, 3, True))
    lo, hi = fig.axes[0].get_ylim()
    assert hi - lo >= plots.SPAN_WIDTHS * 0.01


# --------------------------------------------------------------------------- stopped runs


def test_stopped_runs_are_shown_as_stopped_never_blank(qs_runs):
    noise = plots.seed_noise(qs_runs, "synth-a")
    cells = plots.cell_frame(plots.search_scores(qs_runs, "synth-a", ("dropout", "lambda_f")), "dropout", "lambda_f",
                             noise)
    only = cells[(cells["dropout"] == 0.3) & (cells["lambda_f"] == 1.5)].iloc[0]
    assert math.isnan(only.value) and (only.runs, only.stopped) == (0, 2)
    assert (only.stopped_best, only.stopped_epoch) == (pytest.approx(0.3702), STOPPED_AT)
    fig = plots.heatmap_figure(cells, "dropout", "lambda_f", "t", "s", noise)
    # no budget in this search: only ASHA can have stopped them (label changed by #28: was "stopped at epoch 6")
    assert f"stopped by ASHA\nat epoch {STOPPED_AT}\nbest so far\n0.3702\n(2 runs)" in _texts(fig)
    assert [p.get_hatch() for p in fig.axes[0].patches].count("///") == 1
    assert len(_texts(fig)) == 4  # a text in every cell

    frame = plots.align_frame(plots.search_scores(qs_runs, "synth-a", ("lambda_align",)))
    fig = plots.align_figure(frame, "t", "s", noise)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"stopped by ASHA at epoch {STOPPED_AT}: best so far" in legend  # all at one rung: said once
    hollow = [ln for ln in fig.axes[0].get_lines() if ln.get_markerfacecolor() == "white"]
    assert sorted(y for ln in hollow for y in ln.get_ydata()) == pytest.approx([0.3688, 0.3702, 0.3712])
    mixed = frame.assign(stopped_epoch=[float(e) for e in range(len(frame))])  # stopped at different epochs
    texts = _texts(plots.align_figure(mixed, "t", "s", noise))
    assert sorted(t for t in texts if t.startswith("stopped")) == sorted(
        f"stopped ep {e}" for e, n in zip(range(len(frame)), frame["stopped"]) if n)
    assert plots.align_points(plots.search_scores(qs_runs, "synth-a", ("lambda_align",)))[1] == []


def test_a_plot_of_only_stopped_runs_is_a_note_and_its_cells_say_they_stopped(tmp_path):
    """No completed run: nothing to compare, so no heatmap (#28 changed this: it was drawn from the stopped
    cells alone); the cells themselves still show the stopped runs as stopped."""
    for p, lf in [(0.3, 1.0), (0.5, 1.5)]:
        _record(tmp_path, _summary(variant="mentor", dropout=p, lambda_f=lf, stopped=True, epochs=3), "search")
    written, notes = plots.write_plots(select.load_runs(tmp_path), tmp_path / "o")
    assert not (tmp_path / "o" / "plots" / "synth-a-sens_dropout_lambda_f.png").exists() and not written
    assert ("plot 'synth-a (synthetic): sensitivity to (dropout, lambda_f)' skipped: no completed runs (2 stopped "
            "early): too few to draw a heatmap; need completed runs at 2 or more values of dropout and "
            "lambda_f") in notes
    cells = plots.cell_frame(plots.search_scores(select.load_runs(tmp_path), "synth-a"), "dropout", "lambda_f")
    assert cells[["runs", "stopped"]].values.tolist() == [[0, 1], [0, 0], [0, 0], [0, 1]]
    fig = plots.heatmap_figure(cells, "dropout", "lambda_f", "t", "s", plots.Noise(0.005, 0, False))
    assert _texts(fig).count("not run") == 2
    assert _texts(fig).count("stopped by ASHA\nat epoch 3\nbest so far\n0.1000\n(1 run)") == 2


def test_sensitivity_cells_use_completed_runs_and_mark_cells_only_stopped_runs_reach(tmp_path):
    """A trial ASHA stopped at an early rung is not comparable with a completed one: it never sets a cell."""
    root = tmp_path / "r"
    trials = [(0.3, 1.0, 0.1, 0.10, False), (0.5, 1.0, 0.2, 0.11, False), (0.5, 1.5, 0.1, 0.12, False),
              (0.3, 1.0, 0.2, 0.20, True),  # stopped, above the completed trial of its cell: left out
              (0.3, 1.5, 0.3, 0.25, True)]  # the only trial of its cell (and of lambda_align 0.3)
    for p, lf, la, valid, stopped in trials:
        _record(root, _summary(variant="mentor", valid=valid, dropout=p, lambda_f=lf, lambda_align=la,
                               stopped=stopped), "search")
    runs = select.load_runs(root)
    scored = plots.search_scores(runs, "synth-a", ("dropout", "lambda_f"))
    assert len(scored) == 5 and set(scored.status) == {"completed", "stopped_early"}
    grid = plots.sensitivity_grid(scored, "dropout", "lambda_f")
    assert list(grid.columns) == [0.3, 0.5] and list(grid.index) == [1.0, 1.5]
    assert grid.loc[1.0, 0.3] == pytest.approx(0.10) and grid.loc[1.5, 0.5] == pytest.approx(0.12)
    assert math.isnan(grid.loc[1.5, 0.3])  # only an ASHA-stopped trial there
    marked = plots.stopped_only_cells(scored, "dropout", "lambda_f")
    assert marked.loc[1.5, 0.3] and int(marked.to_numpy().sum()) == 1
    series, stopped = plots.align_points(plots.search_scores(runs, "synth-a", ("lambda_align",)))
    assert series.to_dict() == {0.1: pytest.approx(0.12), 0.2: pytest.approx(0.11)} and stopped == [0.3]

    written, notes = plots.write_plots(runs, tmp_path / "o")
    said = plots.heatmap_caption(scored, "dropout", "lambda_f", plots.Noise(plots.DEFAULT_NOISE, 0, False))
    title = "synth-a (synthetic): sensitivity to (dropout, lambda_f)"
    assert written[0] == board.Plot("plots/synth-a-sens_dropout_lambda_f.png", title, plots.caption_text(title, said))
    assert "5 search runs (3 completed, 2 stopped early)" in written[0].caption
    assert notes[0] == plots.PLOT_NOTE and "completed runs" in plots.PLOT_NOTE
    assert (tmp_path / "o" / "plots" / "synth-a-sens_dropout_lambda_f.png").read_bytes()[:4] == b"\x89PNG"


AXES = {"dropout": [0.3, 0.5], "lambda_f": [1.0, 1.5], "lambda_align": [0.1, 0.3]}  # the space the trials record


def _skips(runs, tmp_path) -> dict[str, str]:
    """Why each plot of synth-a was skipped, by the plot's name."""
    _, notes = plots.write_plots(runs, tmp_path)
    found = [n.split("synth-a (synthetic): ", 1)[1] for n in notes if n.startswith("plot 'synth-a")]
    return dict(n.split("' skipped: ", 1) for n in found)


def _search_trials(trials):
    """Search runs of (dropout, lambda_f, lambda_align, stopped early) each, valid 0.10, 0.11, ... in order."""
    return runs_in_memory([({**_run(seed=0, valid=0.1 + i / 100, stopped=stop, epochs=6 if stop else 25, dropout=p,
                                    lambda_f=lf, lambda_align=la), "space_axes": AXES}, "search", "grid")
                           for i, (p, lf, la, stop) in enumerate(trials)])


def test_a_sensitivity_plot_is_not_drawn_from_fewer_than_two_completed_points(tmp_path):
    """#28: one completed run beside stopped ones is no heatmap and no line: the note says how many completed."""
    trials = [(0.3, 1.0, 0.1, False), (0.5, 1.5, 0.3, True), (0.5, 1.0, 0.3, True)]
    runs = _search_trials(trials)
    skips = _skips(runs, tmp_path)
    assert skips["sensitivity to (dropout, lambda_f)"] == (
        "1 completed run (2 stopped early): too few to draw a heatmap; need completed runs at 2 or more values of "
        "dropout and lambda_f")
    assert skips["effect of lambda_align"] == (
        "1 completed run (2 stopped early): too few to draw a line; need completed runs at 2 or more values of "
        "lambda_align")
    assert not list((tmp_path / "plots").glob("synth-a-sens_*.png"))


def test_completed_runs_at_one_value_of_an_axis_are_said_so(tmp_path):
    """Three completed runs, all at dropout 0.3 (the space searched 0.3 and 0.5; the 0.5 trial was stopped): the
    sweep searched dropout, so the plot is not silently dropped; it says what the completed runs cover."""
    trials = [(0.3, 1.0, 0.1, False), (0.3, 1.5, 0.1, False), (0.3, 1.5, 0.3, False), (0.5, 1.0, 0.3, True)]
    runs = _search_trials(trials)
    skips = _skips(runs, tmp_path)
    assert skips["sensitivity to (dropout, lambda_f)"] == (
        "3 completed runs (1 stopped early), one distinct value of dropout (0.3); need completed runs at 2 or more "
        "values of it")
    assert "effect of lambda_align" not in skips  # 2 completed values of lambda_align: drawn
    assert plots._too_few(plots.search_scores(runs, "synth-a", ("dropout",)).iloc[:0], ("dropout",)).startswith(
        "no MENTOR search")


def _stop_labels(summaries) -> tuple[list[str], str, list[str]]:
    """What a store's stopped search trials are labelled with: the heatmap's cell texts, its caption and the
    lambda_align plot's legend."""
    runs = runs_in_memory(summaries)
    noise = plots.seed_noise(runs, "synth-a")
    scored = plots.search_scores(runs, "synth-a", ("dropout", "lambda_f"))
    fig = plots.heatmap_figure(plots.cell_frame(scored, "dropout", "lambda_f", noise), "dropout", "lambda_f", "t",
                               "s", noise)
    said = " ".join(plots.heatmap_caption(scored, "dropout", "lambda_f", noise))
    frame = plots.align_frame(plots.search_scores(runs, "synth-a", ("lambda_align",)))
    legend = [t.get_text() for t in plots.align_figure(frame, "t", "s", noise).axes[0].get_legend().get_texts()]
    return _texts(fig), said, legend


def test_runs_stopped_in_a_budgeted_search_are_labelled_asha_or_budget(tmp_path):
    """A store written before 0.5.1 (no stop_reason) cannot tell ASHA's stops from the budget's under --budget:
    every label says both, never ASHA."""
    budgeted = [({**s, "budget_epochs": 60}, role, sweep) for s, role, sweep in quickstart_summaries()]
    cells, said, legend = _stop_labels(budgeted)
    assert f"stopped by ASHA\nor budget\nat epoch {STOPPED_AT}\nbest so far\n0.3702\n(2 runs)" in cells
    assert ("hatched: every run of the cell stopped early by ASHA or by the search budget (a store written before "
            "0.5.1 does not record which)") in said
    assert f"stopped by ASHA or budget at epoch {STOPPED_AT}: best so far" in legend
    written, _ = plots.write_plots(runs_in_memory(budgeted), tmp_path)
    assert not any("ASHA)" in p.caption or "by ASHA," in p.caption for p in written)


def test_runs_whose_stop_is_recorded_are_labelled_with_what_stopped_them():
    """Since 0.5.1 the sweep records what stopped a trial: the same budgeted store, its stopped trials recorded as
    the budget's, says "budget", never "ASHA or budget"."""
    recorded = [({**s, "budget_epochs": 60, **({"stopped_by": "budget"} if s.get("status") == "stopped_early" else {})},
                 role, sweep) for s, role, sweep in quickstart_summaries()]
    cells, said, legend = _stop_labels(recorded)
    assert f"stopped by budget\nat epoch {STOPPED_AT}\nbest so far\n0.3702\n(2 runs)" in cells
    assert "hatched: every run of the cell stopped by the search budget running out" in said and "ASHA" not in said
    assert f"stopped by budget at epoch {STOPPED_AT}: best so far" in legend


def test_sensitivity_grid_takes_the_best_configuration_per_cell(tmp_path):
    points = [(0.3, 1.0, 0.1, 1e-3, 0.1, 0.10), (0.3, 1.0, 0.2, 1e-4, 0.2, 0.14),  # same (p, lambda_f) cell
              (0.5, 1.5, 0.2, 1e-3, 0.1, 0.12), (0.5, 1.0, 0.1, 1e-4, 0.2, 0.11)]
    for p, lf, tau, lg, la, valid in points:
        _record(tmp_path, _summary("synth-a", "mentor", valid=valid, dropout=p, lambda_f=lf, tau=tau, lambda_g=lg,
                                   lambda_align=la), "search")
    scored = plots.search_scores(select.load_runs(tmp_path), "synth-a")
    grid = plots.sensitivity_grid(scored, "dropout", "lambda_f")
    assert list(grid.columns) == [0.3, 0.5] and list(grid.index) == [1.0, 1.5]
    assert grid.loc[1.0, 0.3] == pytest.approx(0.14) and grid.loc[1.0, 0.5] == pytest.approx(0.11)
    assert grid.loc[1.5, 0.5] == pytest.approx(0.12) and math.isnan(grid.loc[1.5, 0.3])
    cells = plots.cell_frame(scored, "dropout", "lambda_f").set_index(["lambda_f", "dropout"])
    assert (cells.loc[(1.0, 0.3), "runs"], cells.loc[(1.0, 0.3), "configs"]) == (2, 2)
    assert "the best over lambda_align, lambda_g, tau" in "".join(plots.heatmap_caption(
        scored, "dropout", "lambda_f", plots.Noise(0.005, 0, False)))


# --------------------------------------------------------------------------- curves


def test_curves_show_mentor_and_the_best_baseline_by_validation_with_the_seed_spread(qs_runs):
    chosen = select.select_final(qs_runs)
    assert plots.best_baseline(chosen, "synth-a") == "lightgcn"  # best validation; mf_bpr has the best test
    drawn = plots.curve_runs(chosen, "synth-a")
    assert list(drawn["variant"]) == ["mentor"] * 3 + ["lightgcn"] * 3 and list(drawn["seed"]) == [0, 1, 2] * 2
    frame = plots.curve_frame(drawn)
    curves = [_curve(v, n, b) for v, n, b in zip(MENTOR_FINALS, (20, 23, 25), (14, 17, 21))]
    at = frame[(frame["variant"] == "mentor")].set_index("epoch")
    for epoch in (1, 20, 21, 25):
        vals = [c[epoch - 1] for c in curves if len(c) >= epoch]
        assert at.loc[epoch, ["mean", "low", "high", "seeds"]].tolist() == pytest.approx(
            [statistics.mean(vals), min(vals), max(vals), len(vals)])
    assert len(at) == 25 and set(frame["variant"]) == {"mentor", "lightgcn"}

    fig = plots.curves_figure(drawn, "t", "s")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "validation Recall@20"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["MENTOR: mean of 3 seeds", "MENTOR: min-max over seeds",
                      "LightGCN (best baseline): mean of 3 seeds", "LightGCN (best baseline): min-max over seeds"]
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert [list(ln.get_xdata()) for ln in dots] == [[15, 18, 22], [10, 11, 12]]  # best epochs, counted from 1


def test_curves_of_a_baseline_only_dataset_say_mentor_is_missing(tmp_path):
    runs = runs_in_memory([(_run(variant="lightgcn", seed=s, valid=0.2, curve=[0.1, 0.2], best=1), "final", "x")
                           for s in (0, 1)])
    drawn = plots.curve_runs(select.select_final(runs), "synth-a")
    assert set(drawn["variant"]) == {"lightgcn"}
    assert "MENTOR: no final run with a curve" in "".join(plots.curves_caption(drawn, "lightgcn"))


# --------------------------------------------------------------------------- the same store, the same figures


def _plotted(runs: pd.DataFrame) -> dict[str, object]:
    """Everything the plots of the quickstart store draw, as data."""
    noise = plots.seed_noise(runs, "synth-a")
    chosen = select.select_final(plots.once_per_run(runs))
    drawn = plots.curve_runs(chosen, "synth-a")
    return {"noise": noise,
            "cells": plots.cell_frame(plots.search_scores(runs, "synth-a", ("dropout", "lambda_f")), "dropout",
                                      "lambda_f", noise),
            "align": plots.align_frame(plots.search_scores(runs, "synth-a", ("lambda_align",))),
            "curves": plots.curve_frame(drawn), "best": plots.best_points(drawn),
            "drawn": drawn[["variant", "seed", "run_id"]]}


def _same(a: dict, b: dict) -> None:
    assert a["noise"] == b["noise"]
    for key in ("cells", "align", "curves", "best", "drawn"):
        pd.testing.assert_frame_equal(a[key], b[key], check_exact=True)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.randoms(use_true_random=False))
def test_shuffled_rows_and_a_stale_attempt_plot_the_same_data(qs_runs, rnd):
    order = list(range(len(qs_runs)))
    rnd.shuffle(order)
    shuffled = qs_runs.iloc[order].reset_index(drop=True)
    stale = qs_runs.iloc[[rnd.randrange(len(qs_runs))]].copy()  # an earlier attempt of a run, finished before it
    stale["finished_at"] = stale["finished_at"] - pd.Timedelta(hours=1)
    stale["valid_recall@20"], stale["status"] = 0.01, "stopped_early"
    at = rnd.randrange(len(shuffled) + 1)
    shuffled = pd.concat([shuffled.iloc[:at], stale, shuffled.iloc[at:]], ignore_index=True)
    _same(_plotted(qs_runs), _plotted(shuffled))


def test_the_same_store_writes_byte_identical_pngs_whatever_the_row_order(qs_runs, tmp_path):
    first, _ = plots.write_plots(qs_runs, tmp_path / "a")
    again, _ = plots.write_plots(qs_runs.sample(frac=1.0, random_state=7).reset_index(drop=True), tmp_path / "b")
    assert [(p.path, p.caption) for p in first] == [(p.path, p.caption) for p in again]
    for p in first:
        png = (tmp_path / "a" / p.path).read_bytes()
        assert png == (tmp_path / "b" / p.path).read_bytes(), p.path
        assert b"Software" not in png and b"matplotlib" not in png.lower()


def test_a_store_written_in_another_order_gives_the_same_pngs(tmp_path):
    """A sweep interrupted and resumed writes its runs' files in another order (and a trial's file twice):
    the leaderboard's plots are the same files."""
    summaries = quickstart_summaries()
    for s, role, sweep in summaries:
        _record(tmp_path / "r1", s, role, sweep)
    for s, role, sweep in [*summaries[4:], *summaries[:4]]:
        _record(tmp_path / "r2", s, role, sweep)
    _record(tmp_path / "r2", *summaries[1])  # the resumed attempt of a trial rewrites its file
    a, _ = plots.write_plots(select.load_runs(tmp_path / "r1"), tmp_path / "a")
    b, _ = plots.write_plots(select.load_runs(tmp_path / "r2"), tmp_path / "b")
    assert a == b
    for p in a:
        assert (tmp_path / "a" / p.path).read_bytes() == (tmp_path / "b" / p.path).read_bytes(), p.path
