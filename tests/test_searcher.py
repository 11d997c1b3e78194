"""The sweep's searcher proposes every point of a finite grid at most once."""

from __future__ import annotations

import optuna

from mentor_ray.sweep.searcher import DistinctOptunaSearch

GRID = {"dropout": [0.3, 0.5], "lambda_f": [1.0, 1.5], "tau": [0.2, 0.5]}


def _searcher(seed=0, tries=20):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return DistinctOptunaSearch(GRID, seed=seed, tries=tries, metric="m", mode="max",
                                sampler=optuna.samplers.TPESampler(seed=seed))


def _run(searcher, n):
    points = []
    for i in range(n):
        params = searcher.suggest(f"t{i}")
        points.append(tuple(sorted(params.items())))
        searcher.on_trial_complete(f"t{i}", {"m": params["dropout"] + params["tau"]})
    return points


def test_plain_tpe_repeats_points_of_a_small_grid():
    """The premise: without the guard, TPE (random start) repeats a point of 8 within 8 asks."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0), direction="maximize")
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in GRID.items()}
    asked = [tuple(sorted(study.ask(dists).params.items())) for _ in range(8)]
    assert len(set(asked)) < 8


def test_every_point_of_the_grid_once():
    for seed in range(3):
        points = _run(_searcher(seed), 8)
        assert len(set(points)) == 8  # the whole grid, no repeat


def test_unseen_points_are_enqueued_when_the_sampler_keeps_repeating():
    points = _run(_searcher(tries=1), 8)  # one refusal, then an unseen point is enqueued
    assert len(set(points)) == 8


def test_a_resumed_search_goes_on_from_its_study_without_a_pickle(tmp_path):
    """A resumed sweep builds a new searcher on the same Optuna study (SQLite) with the points that finished
    (``seen``), and re-runs the one the first driver left running: the 8-point grid is covered exactly."""
    from mentor_ray.sweep.resume import enqueue, study_points

    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def searcher():
        return DistinctOptunaSearch(GRID, seed=0, metric="m", mode="max", sampler=optuna.samplers.TPESampler(seed=0),
                                    study_name="s", storage=optuna.storages.RDBStorage(url))

    first = searcher()
    before = _run(first, 3)
    cut_off = first.suggest("t3")  # the driver dies while this trial runs: RUNNING in the study
    finished, marked = study_points("s", optuna.storages.RDBStorage(url))
    assert marked == 1 and sorted(tuple(sorted(p.items())) for p in finished) == sorted(before)
    enqueue("s", optuna.storages.RDBStorage(url), [cut_off])
    second = DistinctOptunaSearch(GRID, seed=0, metric="m", mode="max", sampler=optuna.samplers.TPESampler(seed=0),
                                  study_name="s", storage=optuna.storages.RDBStorage(url), seen=finished)
    after = _run(second, 5)
    assert after[0] == tuple(sorted(cut_off.items()))  # the cut-off point first
    assert len(set(before) | set(after)) == 8 and not set(before) & set(after)


def test_an_exhausted_grid_finishes_the_search_without_optunas_study_stop(caplog):
    """Optuna's grid sampler calls ``Study.stop`` after its last point, which raises outside
    ``Study.optimize`` (Ray logged it as a warning); the sweep's grid sampler leaves the end to Tune."""
    import logging

    from ray.tune.search import Searcher

    from mentor_ray.sweep.searcher import TuneGridSampler

    for sampler in (TuneGridSampler(GRID, seed=0), optuna.samplers.TPESampler(seed=0)):
        searcher = DistinctOptunaSearch(GRID, seed=0, metric="m", mode="max", sampler=sampler)
        with caplog.at_level(logging.WARNING):
            assert len(set(_run(searcher, 8))) == 8
            assert searcher.suggest("t8") == Searcher.FINISHED  # the whole grid ran: nothing new to propose
        assert not [r for r in caplog.records if "Study.stop" in r.getMessage()]


def test_a_resumed_grid_search_runs_the_rest_of_the_grid_in_the_uninterrupted_order(tmp_path):
    """ASHA judges a trial against those before it, so a resumed grid search must run the grid in the same order as
    one left to run. Optuna's grid sampler gives trial number n the n-th point of its shuffle, and a resumed study's
    numbers are used up by the first driver's unfinished trials and the re-enqueued cut-off one; the ordered grid
    proposes the first point of one seeded order not proposed yet, wherever the driver was cut off."""
    from mentor_ray.sweep.resume import enqueue, study_points
    from mentor_ray.sweep.searcher import TuneGridSampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def searcher(url, seen=()):
        return DistinctOptunaSearch(GRID, seed=0, metric="m", mode="max", sampler=TuneGridSampler(GRID, seed=0),
                                    study_name="s", storage=optuna.storages.RDBStorage(url), seen=seen, ordered=True)

    whole = _run(searcher(f"sqlite:///{tmp_path / 'whole.db'}"), 8)
    assert len(set(whole)) == 8
    for cut in range(1, 8):
        for pending in (0, 1, 2):  # points the first driver had proposed but not started when it was cut off
            url = f"sqlite:///{tmp_path / f'cut{cut}-{pending}.db'}"
            first = searcher(url)
            before = _run(first, cut - 1)
            running = first.suggest(f"t{cut - 1}")  # the trial the interrupt cut off
            for i in range(pending):
                first.suggest(f"p{i}")
            finished, _ = study_points("s", optuna.storages.RDBStorage(url))
            enqueue("s", optuna.storages.RDBStorage(url), [running])
            after = _run(searcher(url, seen=finished), 8 - len(before))
            assert before + after == whole, (cut, pending)


def test_an_interrupt_stops_the_experiment_and_leaves_each_result_to_asha():
    """The interrupt stopper ends the experiment (``stop_all``) but never a trial on its result: Tune skips the
    scheduler for a result its stopper stops, so ASHA would not record the rung that result reached, and the
    resumed trial would be judged one epoch late on another value (a flaky resume-equals-uninterrupted test)."""
    from mentor_ray.sweep.trials import StopFlag, interrupt_stopper

    flag = StopFlag()
    stopper = interrupt_stopper(flag)
    assert not stopper("t0", {"epoch": 0}) and not stopper.stop_all()
    flag.set()
    assert stopper.stop_all() and not stopper("t0", {"epoch": 1})
