"""Ray Tune sweep: search, finals and ablation leave rows for every variant and baseline."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mentor_ray import tune as tune_cmd
from mentor_ray.common.errors import ConfigError, DataError, MentorRayError
from mentor_ray.report import results
from mentor_ray.sweep import trials, tune
from mentor_ray.sweep.tune import Sweep

ray = pytest.importorskip("ray")

ABLATION = Sweep.ablation_variants()  # MENTOR's variants and the general baselines


def test_baselines_keep_their_own_learning_rate_and_layers():
    base = {"dataset": "synth-tiny", "lr": 1e-4, "n_layers": 2, "dropout": 0.3}
    assert trials.trial_config(base, "lightgcn", 0, {}).lr == 1e-3
    assert trials.trial_config(base, "lightgcn", 0, {}).n_layers == 3
    cfg = trials.trial_config(base, "mentor", 1, {"tau": 0.5})
    assert (cfg.lr, cfg.n_layers, cfg.dropout, cfg.tau, cfg.seed) == (1e-4, 2, 0.3, 0.5, 1)


def test_a_baselines_own_space_sets_its_learning_rate_and_layers():
    base = {"dataset": "synth-tiny", "patience": 5}
    cfg = trials.trial_config(base, "lightgcn", 0, {"lr": 5e-3, "n_layers": 1}, searched="lightgcn")
    assert (cfg.lr, cfg.n_layers, cfg.patience) == (5e-3, 1, 5)
    with pytest.raises(ConfigError, match="--ablation: the space lightgcn_grid searches lightgcn"):
        tune_cmd.main(["--dataset", "synth-tiny", "--space", "lightgcn_grid", "--ablation", "--results", "/tmp/x"])


def test_experiment_names_are_stable_and_ignore_runtime_settings():
    """--resume finds an experiment by its name: a code change must not rename existing sweeps by
    accident (names pinned at 0.2.0), and runtime settings (memory and speed only) never rename one."""
    from mentor_ray.sweep.spaces import load_space

    args = tune_cmd._parser().parse_args(["--dataset", "synth-tiny", "--space", "smoke", "--num-samples", "4",
                                      "--seeds", "2", "--results", "/tmp/x", "lr=2e-3"])
    sweep = tune.Sweep(tune.SweepOptions(**vars(args)), load_space("smoke"))
    assert sweep.name("search", "synth-tiny") == "search-synth-tiny-smoke-fee3171b"
    extra = {"point": {"tau": 0.5}, "variants": ["mentor"]}
    assert sweep.name("final", "synth-tiny", extra=extra) == "final-synth-tiny-smoke-09c7700e"
    args.overrides += ["infonce_chunk=64", "eval_batch_size=100"]
    assert tune.Sweep(tune.SweepOptions(**vars(args)), load_space("smoke")).name("search", "synth-tiny") == \
        "search-synth-tiny-smoke-fee3171b"


def test_experiment_name_does_not_depend_on_how_the_data_root_is_typed(tmp_path, monkeypatch):
    """--resume from another directory, or with an absolute path instead of a relative one, finds the
    same experiment."""
    from mentor_ray.sweep.spaces import load_space

    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    names = []
    for root in ("data", "./data/", str(tmp_path / "data")):
        args = tune_cmd._parser().parse_args(["--dataset", "synth-tiny", "--data-root", root, "--results", "r"])
        names.append(tune.Sweep(tune.SweepOptions(**vars(args)), load_space("smoke")).name("search", "synth-tiny"))
    assert len(set(names)) == 1


def test_resume_without_a_matching_experiment_names_the_sibling(tmp_path, capsys):
    (tmp_path / "search-tiktok-paper_grid-0badc0de").mkdir()
    tune._warn_no_experiment(tmp_path, "search-tiktok-paper_grid-12345678")
    out = capsys.readouterr().out
    assert "no experiment search-tiktok-paper_grid-12345678" in out
    assert "search-tiktok-paper_grid-0badc0de there was started with other settings" in out
    tune._warn_no_experiment(tmp_path, "search-tiktok-lightgcn_grid-12345678")
    out = capsys.readouterr().out
    assert "no experiment search-tiktok-lightgcn_grid-12345678" in out and "other settings" not in out
    tune._warn_no_experiment(tmp_path / "fresh", "search-tiktok-paper_grid-12345678")  # a first run with --resume
    (tmp_path / "empty").mkdir()
    tune._warn_no_experiment(tmp_path / "empty", "search-tiktok-paper_grid-12345678")
    assert capsys.readouterr().out == ""


def test_smoke_sweep_with_ablation_leaves_every_row(local_ray, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["--dataset", "synth-tiny", "--space", "smoke", "--num-samples", "4", "--seeds", "2", "--ablation",
            "--results", str(out), "--storage", str(tmp_path / "tune"), "--grace-period", "2", "reg_weight=2e-4"]
    assert tune_cmd.main(args) == 0
    table = results.read_results(out).to_pandas()
    assert all(json.loads(c)["reg_weight"] == 2e-4 for c in table.config_json)  # the override reached every run
    assert set(table.status) <= {"completed", "stopped_early"}
    assert set(table[table.role != "search"].status) == {"completed"}  # finals and ablation run to their end
    finished = table[table.role != "search"].drop_duplicates("run_id")
    assert all(len(c) == r.epochs_run > 0 for c, r in zip(finished.valid_curve, finished.itertuples())
               if r.variant != "most_pop")
    runs = table.drop_duplicates("run_id")
    assert (runs.role == "search").sum() == 4  # 4 trials at 4 distinct points (mentor_ray.searcher)
    finals = runs[runs.role == "final"]
    assert sorted(finals.seed) == [0, 1] and set(finals.variant) == {"mentor"}
    ablation = runs[runs.role == "ablation"]
    assert sorted(ablation.variant.unique()) == sorted(ABLATION)
    assert len(ablation) == 2 * len(ABLATION)
    assert len(table) == 16 * len(runs)  # every run: 2 splits x 2 metrics x 4 Ks
    # the finals use the point the search chose on validation (Recall@20, then NDCG@20, then the earlier
    # best epoch, then the config hash: ties are common on tiny data)
    valid = table[(table.split == "valid") & (table.k == 20)].pivot_table(index="run_id", columns="metric",
                                                                           values="value")
    search = runs[runs.role == "search"].set_index("run_id")
    key = lambda r: (valid.loc[r, "recall"], valid.loc[r, "ndcg"], -search.loc[r, "best_epoch"],  # noqa: E731
                     search.loc[r, "config_hash"])
    top = search.loc[max(search.index, key=key)]
    assert {(r.dropout, r.lambda_f, r.tau) for r in finals.itertuples()} == {(top.dropout, top.lambda_f, top.tau)}
    printed = capsys.readouterr().out
    assert "synth-tiny: search done" in printed and "synth-tiny: ablation" in printed
    # the sweep ends with the leaderboard: printed, and written beside the results, which stay a plain
    # Parquet dataset
    assert "# MENTOR leaderboard" in printed and "MENTOR_fg" in printed
    board = out.with_name(f"{out.name}-leaderboard")
    assert (board / "leaderboard.md").is_file() and (board / "csv" / "overall.csv").is_file()
    import pandas as pd

    # besides the run files, only the driver lock's hidden file and the resume journal, which Parquet readers skip
    assert sorted(p.suffix for p in out.iterdir() if not p.name.startswith(".")) == [".parquet"] * \
        table.run_id.nunique()
    assert {p.name for p in out.iterdir() if p.name.startswith(".")} <= {".mentor_ray.lock", ".journal"}
    assert len(pd.read_parquet(out)) == len(table)
    sweep = pd.read_csv(board / "csv" / "sweep.csv").iloc[0]  # the leaderboard names the same point
    assert (sweep.best_dropout, sweep.best_lambda_f, sweep.best_tau) == (top.dropout, top.lambda_f, top.tau)

    with pytest.raises(ConfigError, match="already exists; add --resume"):
        tune_cmd.main(args)  # the same sweep again without --resume


def test_more_seeds_after_fewer_train_only_the_new_seeds(local_ray, tmp_path, capsys):
    """A final run the results store holds (same settings, budget and seed) is taken from there: ``--seeds 2``
    after ``--seeds 1`` is another experiment (the seed count is in its name) but trains seed 1 only; another
    epoch budget is another run, trained again and written over the stored one."""
    space = tmp_path / "point.yaml"
    space.write_text("name: point\nmodel: mf_bpr\nfixed:\n  embedding_dim: 8\n  batch_size: 256\n"
                     "  max_epochs: 2\n  patience: 2\n")
    out = tmp_path / "r"
    base = ["--dataset", "synth-tiny", "--space", str(space), "--results", str(out), "--storage",
            str(tmp_path / "tune"), "--leaderboard", "none", "--quiet"]
    assert tune_cmd.main(base + ["--seeds", "1"]) == 0
    seed0 = out / next(p.name for p in out.glob("final-*-s0.parquet"))
    before = (seed0.stat().st_mtime_ns, seed0.read_bytes())
    capsys.readouterr()
    assert tune_cmd.main(base + ["--seeds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "1 of 2 run(s) are in the results store" in printed and "(2 seeds)" in printed
    assert (seed0.stat().st_mtime_ns, seed0.read_bytes()) == before  # not trained again, not rewritten
    finals = results.read_results(out, role="final").to_pandas().drop_duplicates("run_id")
    assert sorted(finals.seed) == [0, 1]
    assert tune_cmd.main(base + ["--seeds", "2", "--max-epochs", "1"]) == 0  # another budget: trained again
    assert "in the results store" not in capsys.readouterr().out
    finals = results.read_results(out, role="final").to_pandas().drop_duplicates("run_id")
    assert sorted(finals.seed) == [0, 1] and set(finals.epochs_run) == {1}


def test_bad_flags_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="--num-samples 0"):
        tune_cmd.main(["--dataset", "synth-tiny", "--num-samples", "0", "--results", str(tmp_path)])
    with pytest.raises(ConfigError, match="--space nope"):
        tune_cmd.main(["--dataset", "synth-tiny", "--space", "nope", "--results", str(tmp_path)])


def test_a_small_search_warns_that_asha_stops_all_but_the_leader():
    assert "--grace-period 100" in tune.asha_warning(2, 10, 100)
    assert tune.asha_warning(3, 10, 100) is not None
    assert tune.asha_warning(4, 10, 100) is None  # enough trials for ASHA to pay
    assert tune.asha_warning(2, 100, 100) is None  # already trained to early stopping
    assert tune.asha_warning(1, 10, 100) is None  # nothing to compare


def test_overrides_may_not_set_what_the_sweep_or_the_space_sets(tmp_path):
    base = ["--dataset", "synth-tiny", "--space", "smoke", "--results", str(tmp_path)]
    with pytest.raises(ConfigError, match="override tau=...: tau is searched by the space smoke"):
        tune_cmd.main([*base, "tau=0.3"])
    with pytest.raises(ConfigError, match="override seed=...: seed is a flag of the sweep"):
        tune_cmd.main([*base, "seed=3"])
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        tune_cmd.main([*base, "learning_rate=0.1"])
    with pytest.raises(ConfigError, match="override: lr = -1 is not allowed"):
        tune_cmd.main([*base, "lr=-1"])
    with pytest.raises(ConfigError, match="--workers-per-trial 0"):
        tune_cmd.main([*base, "--workers-per-trial", "0"])


@pytest.mark.slow  # Ray-heavy: the slow tier (.ci/run)
def test_failed_trials_are_recorded_not_lost(local_ray, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA: device=cuda must fail there")
    out = tmp_path / "r"
    args = ["--dataset", "synth-tiny", "--space", "smoke", "--num-samples", "2", "--seeds", "1", "--results", str(out),
            "--storage", str(tmp_path / "tune"), "--leaderboard", "none", "device=cuda"]
    with pytest.raises(MentorRayError, match="search on synth-tiny: no trial finished an epoch"):
        tune_cmd.main(args)
    table = results.read_results(out).to_pandas()
    assert len(table) == table.run_id.nunique() >= 1 and set(table.status) == {"failed"}
    assert table.error.str.contains("no CUDA device").all() and table.value.isna().all()


def test_two_datasets_are_swept_at_once_and_a_bad_one_stops_neither(local_ray, tmp_path, capsys):
    """A malformed dataset and one without features are refused before Ray starts, each with its own
    error; the good two are swept together, get their leaderboard, and the sweep ends with an error."""
    from tests.conftest import write_dataset

    write_dataset(tmp_path / "data", "toy", n_items=6)
    write_dataset(tmp_path / "data", "bad", rows=[(0, 0, 1, 0, 7), (0, 1, 1, 0, 0), (1, 1, 1, 0, 2)])
    write_dataset(tmp_path / "data", "plain", features={})
    out = tmp_path / "r"
    args = ["--dataset", "synth-tiny,bad,toy,plain", "--data-root", str(tmp_path / "data"), "--space", "smoke",
            "--num-samples", "2", "--seeds", "1", "--results", str(out), "--storage", str(tmp_path / "tune"),
            "--grace-period", "2"]
    with pytest.raises(MentorRayError, match=r"sweep failed on 2 of 4 datasets \(bad, plain; errors above\)"):
        tune_cmd.main(args)
    runs = results.read_results(out).to_pandas().drop_duplicates("run_id")
    assert set(runs.dataset) == {"synth-tiny", "toy"}
    assert set(zip(runs.dataset, runs.role)) == {(d, r) for d in ("synth-tiny", "toy") for r in ("search", "final")}
    printed = capsys.readouterr().out
    assert "synth-tiny: done" in printed and "toy: done" in printed
    assert "[mentor_ray] bad: skipped: " in printed and "x_label" in printed
    assert "[mentor_ray] plain: skipped: --dataset plain: variant mentor (MENTOR) needs item feature files" in printed
    assert "leaderboard written to" in printed and (tmp_path / "r-leaderboard" / "leaderboard.md").exists()


def test_a_lone_bad_dataset_fails_with_its_own_error_before_ray_starts(tmp_path):
    from tests.conftest import write_dataset

    if ray.is_initialized():
        ray.shutdown()
    write_dataset(tmp_path / "data", "bad", rows=[(0, 0, 1, 0, 7), (0, 1, 1, 0, 0), (1, 1, 1, 0, 2)])
    base = ["--data-root", str(tmp_path / "data"), "--space", "smoke", "--storage", str(tmp_path / "tune")]
    with pytest.raises(MentorRayError, match=r"bad\.inter.*x_label"):
        tune_cmd.main(["--dataset", "bad", *base, "--results", str(tmp_path / "r")])
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"--results .*file: is a file, not a directory"):
        tune_cmd.main(["--dataset", "synth-tiny", *base, "--results", str(tmp_path / "file")])
    with pytest.raises(DataError, match=r"--dataset all: no datasets without --data-root .*--dataset synth-all"):
        tune_cmd.main(["--dataset", "all", "--results", str(tmp_path / "r")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"--dataset all: no datasets under --data-root .*empty"):
        tune_cmd.main(["--dataset", "all", "--data-root", str(tmp_path / "empty"), "--results", str(tmp_path / "r")])
    assert not ray.is_initialized()
    assert not (tmp_path / "r").exists() and not (tmp_path / "tune").exists()


@pytest.mark.slow  # Ray-heavy: the slow tier (.ci/run)
def test_resources_the_cluster_lacks_fail_fast_instead_of_hanging(local_ray, tmp_path):
    import time

    from mentor_ray.training.ray_train import fit_with_ray

    started = time.monotonic()
    base = ["--dataset", "synth-tiny", "--space", "smoke", "--results", str(tmp_path / "r"),
            "--storage", str(tmp_path / "tune")]
    with pytest.raises(ConfigError, match=r"--gpus-per-trial 1: needs 1 CPU \+ 1 GPU, each on one node, but "
                       r"this Ray cluster has 1 node\(s\), at most 2 CPUs on one and 0 GPUs in all"):
        tune_cmd.main([*base, "--gpus-per-trial", "1"])
    with pytest.raises(ConfigError, match=r"needs 2 x 3 CPU \+ 0 GPU"):
        tune_cmd.main([*base, "--workers-per-trial", "2", "--cpus-per-trial", "3"])
    cfg = trials.trial_config({"dataset": "synth-tiny"}, "mentor", 0, {})
    with pytest.raises(ConfigError, match=r"--workers 2 --cpus-per-worker 1 --gpus-per-worker 1: needs 2 x 1 CPU"):
        fit_with_ray(cfg, workers=2, gpus_per_worker=1, storage=str(tmp_path / "train"))
    from mentor_ray import train as train_cmd
    from mentor_ray.cli import run

    assert run(train_cmd.main, ["--dataset", "synth-tiny", "--gpus-per-worker", "1", "--storage",
                                str(tmp_path / "t" / "runs")]) == 2
    assert time.monotonic() - started < 30
    assert not (tmp_path / "r").exists() and not (tmp_path / "t").exists()  # the locks' folders, removed again


@pytest.mark.slow
def test_ddp_trials_run_through_ray_train(local_ray, tmp_path):
    """--workers-per-trial 2: every trial is a 2-worker Ray Train run whose metrics reach Tune."""
    out = tmp_path / "r"
    args = ["--dataset", "synth-tiny", "--space", "smoke", "--num-samples", "2", "--seeds", "1", "--results", str(out),
            "--storage", str(tmp_path / "tune"), "--grace-period", "2", "--workers-per-trial", "2",
            "--cpus-per-trial", "1", "--leaderboard", "none", "--quiet"]  # quiet: Train workers print no epochs
    assert tune_cmd.main(args) == 0
    runs = results.read_results(out).to_pandas().drop_duplicates("run_id")
    assert set(runs.role) == {"search", "final"} and set(runs.world_size) == {2}
    assert set(runs.status) == {"completed"}
    # smoke: up to 4 epochs, patience 2; every epoch of a 2-worker run reached Tune as one result
    for curve, best in zip(runs.valid_curve, runs.best_epoch):
        at_cap, by_patience = len(curve) == 4, len(curve) - 1 - best == 2
        assert at_cap or by_patience, (list(curve), best)
    assert list((tmp_path / "tune" / "train").iterdir())  # the Train runs' own checkpoints, per experiment


def test_a_searched_knn_k_gives_each_trial_graphs_of_its_own_k(local_ray, tmp_path):
    """Graphs are built per searched value of knn_k: a trial of k=3 trains on the k=3 graphs, its final
    runs too (the trainer refuses graphs of another k, so a shared build would fail every other trial)."""
    space = tmp_path / "knn.yaml"
    space.write_text("name: knn\nsearch:\n  knn_k: [3, 6]\nfixed:\n  embedding_dim: 16\n  batch_size: 256\n"
                     "  max_epochs: 2\n  infonce_scope: batch\n")
    out = tmp_path / "r"
    args = ["--dataset", "synth-tiny", "--space", str(space), "--num-samples", "2", "--seeds", "1",
            "--results", str(out), "--storage", str(tmp_path / "tune"), "--leaderboard", "none"]
    assert tune_cmd.main(args) == 0
    runs = results.read_results(out).to_pandas().drop_duplicates("run_id")
    assert set(runs.status) == {"completed"}
    ks = sorted(json.loads(c)["knn_k"] for c in runs[runs.role == "search"].config_json)
    assert ks == [3, 6]
    assert len(runs[runs.role == "final"]) == 1
    # every trial ended: the storage keeps each one's summary, no trainer state (resume_safety tests the rule)
    assert not list((tmp_path / "tune").rglob("trainer_state.pt"))
    assert len(list((tmp_path / "tune").rglob("checkpoint_*/summary.json"))) == 3


def test_the_results_callback_records_a_trial_as_it_ends(tmp_path):
    """Rows are written by the Tune callback when a trial ends (here: a stopped one and one that failed
    before its first epoch), not by the driver after the phase."""
    import types

    from ray.train import Checkpoint

    from mentor_ray.common.config import make_config
    from mentor_ray.common.names import METRICS, SUMMARY_FILE

    cfg = make_config(flags={"dataset": "synth-tiny", "max_epochs": 10})
    summary = {"dataset": "synth-tiny", "synthetic": True, "variant": "mentor", "seed": 0, "best_epoch": 1,
               "epochs_run": 3, "stop_reason": None, "valid": dict.fromkeys(METRICS, 0.2),
               "test": dict.fromkeys(METRICS, 0.1), "config": cfg.model_dump(), "seconds_per_epoch": 1.0}
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / SUMMARY_FILE).write_text(json.dumps(summary))
    stopped = types.SimpleNamespace(checkpoint=Checkpoint.from_directory(str(tmp_path / "ckpt")), last_result={},
                                    config={"cfg": cfg.model_dump(), "threads": 1}, error_file=None,
                                    get_error=lambda: None)
    error_file = tmp_path / "error.txt"  # Tune writes it locally before the callbacks; storage gets it later
    error_file.write_text("Failure # 1 (occurred at 2026-11-30_23-42-17)\nTraceback\nRuntimeError: out of memory\n")
    failed = types.SimpleNamespace(checkpoint=None, last_result={}, config={"cfg": {**cfg.model_dump(), "seed": 1},
                                   "threads": 1}, error_file=str(error_file), get_error=lambda: None)
    store = tmp_path / "r"
    recorder = trials.results_recorder(store, "search", "smoke", True, str(tmp_path))
    recorder.on_trial_complete(0, [], stopped)
    assert results.read_results(store, split="valid").to_pandas().status.unique().tolist() == ["stopped_early"]
    recorder.on_trial_error(1, [], failed)
    table = results.read_results(store).to_pandas()
    assert sorted(table.drop_duplicates("run_id").status) == ["failed", "stopped_early"]
    assert table[table.status == "failed"].error.iloc[0] == "RuntimeError: out of memory"


class _Trial:
    """What the progress callback reads of a Tune trial."""

    def __init__(self, status, epochs=0, best=None, **config):
        self.status = status
        self.last_result = {"training_iteration": epochs, **({trials.REPORTED_METRIC: best} if best else {})}
        self.config = {"cfg": {"variant": "mentor", "seed": 0}, "threads": 1, "quiet": True, **config}


def test_a_quiet_sweep_prints_a_phase_line_a_minute_and_its_trials_none(capsys):
    ts = [_Trial("TERMINATED", 20, 0.25, lr=1e-3), _Trial("TERMINATED", 15, 0.2), _Trial("RUNNING", 12, 0.1),
          _Trial("PENDING")]
    line = trials.phase_status(ts, total=10, budget=100, elapsed=120)
    assert line == ("47 of 100 trial-epochs (47%), ~2m15s left at this rate; 2 ended, 1 running; "
                    "best valid R@20 so far 0.2500; 2m00s so far")  # 53 epochs left at 47 per 120 s
    assert trials.phase_status(ts[3:], total=10, budget=100, elapsed=5) == "0 of 100 trial-epochs (0%); 0 ended, " \
        "0 running; 5s so far"
    assert trials.phase_status(ts, total=4, budget=None, elapsed=59).startswith("47 epochs; 2/4 ended, 1 running;")
    assert trials.trial_values(ts[0].config) == {"variant": "mentor", "seed": 0, "lr": 1e-3}  # no plumbing
    # a resumed search: 40 trial-epochs spent by earlier drivers count as spent, and out of this driver's rate
    assert trials.phase_status(ts, total=10, budget=100, elapsed=120, before=40).startswith(
        "87 of 100 trial-epochs (87%), ~33s left at this rate;")  # 13 epochs left at 47 per 120 s
    # ... and the trials those drivers ended count as ended, their best in the best so far
    resumed = trials.phase_status(ts[2:], total=10, budget=100, elapsed=120, before=40, ended_before=3,
                                  best_before=0.3)
    assert "; 3 ended, 1 running; best valid R@20 so far 0.3000;" in resumed
    assert "best valid R@20 so far 0.2500" in trials.phase_status(ts, 10, 100, 120, ended_before=1, best_before=0.1)
    from mentor_ray.sweep.tune import _best_valid
    assert _best_valid({"a": {"valid": {"recall@20": 0.1}}, "b": {"valid": {"recall@20": 0.12}}, "c": {}}) == 0.12
    assert _best_valid({"failed": {"status": "failed", "valid": None}}) is None

    now = [0.0]
    printer = trials.progress_printer("tiktok search", 10, 100, 2, budget=100, heartbeat=60, clock=lambda: now[0])
    for t in (1, 30, 61, 90, 125):  # a result at each of these seconds
        now[0] = t
        printer.on_trial_result(0, ts, ts[2], {"epoch": 0})
    printer.on_trial_complete(0, ts, ts[0])
    out = capsys.readouterr().out.splitlines()
    beats = [x for x in out if "trial-epochs (" in x]
    assert len(beats) == 2 and "1m01s so far" in beats[0] and "2m05s so far" in beats[1]
    assert out[-1].startswith("[mentor_ray] tiktok search: 1 done (lr=0.001): best valid R@20 0.2500")

    quiet_free = trials.progress_printer("x", 10, 100, 2, budget=100, clock=lambda: now[0])
    now[0] = 1000
    quiet_free.on_trial_result(0, ts, ts[2], {"epoch": 0})
    assert "trial-epochs (" not in capsys.readouterr().out  # no heartbeat: the estimate line only


def test_a_staged_space_starts_from_the_best_point_of_its_stage(tmp_path, capsys):
    """``start_from: smoke``: every trial starts at smoke's best search point on the same dataset (chosen on
    validation, read from the results store), under the space's own settings and the overrides."""
    from mentor_ray.common.config import make_config
    from mentor_ray.common.names import METRICS
    from mentor_ray.sweep.spaces import load_space

    store = tmp_path / "r"
    for dropout, valid in ((0.3, 0.10), (0.5, 0.30), (0.7, 0.20)):
        cfg = make_config(flags={"dataset": "synth-tiny"}, overrides=[f"dropout={dropout}", "lr=2e-3", "knn_k=5"])
        results.record(store, {"dataset": "synth-tiny", "synthetic": True, "variant": "mentor", "seed": 0,
                               "best_epoch": 1, "epochs_run": 2, "valid": dict.fromkeys(METRICS, valid),
                               "test": dict.fromkeys(METRICS, 0.9 - valid), "config": cfg.model_dump(),
                               "status": "completed"}, "search", "smoke")
    space_file = tmp_path / "stage2.yaml"
    space_file.write_text("name: stage2\nstart_from: smoke\nsearch:\n  tau: [0.3, 0.5]\nfixed:\n  knn_k: 10\n")
    argv = ["--dataset", "synth-tiny", "--space", str(space_file), "--results", str(store), "reg_weight=3e-4"]
    sweep = tune.Sweep(tune.SweepOptions(**vars(tune_cmd._parser().parse_args(argv))), load_space(space_file))
    base = sweep.base("synth-tiny")
    assert (base["dropout"], base["lr"]) == (0.5, 2e-3)  # the best on validation (not on test)
    assert base["knn_k"] == 10 and base["reg_weight"] == 3e-4  # the space's settings, then overrides, win
    assert "starts from smoke's best point (valid R@20 0.3000" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="holds no smoke search on synth-small; run `mentor-ray tune --space smoke`"):
        sweep.base("synth-small")
    space_file.write_text("name: stage2\nstart_from: nope\nsearch:\n  tau: [0.3, 0.5]\n")
    with pytest.raises(ConfigError, match="stage2.yaml: start_from: --space nope: no such file"):
        load_space(space_file)


def test_search_defaults_start_tpe_after_5_trials_with_asha_from_epoch_10():
    """The defaults `bench search` chose: TPE after 5 random trials; ASHA's first rung at 10 epochs, then x3."""
    searcher, scheduler = tune.search_algorithms({"dropout": [0.1, 0.2]}, seed=0, sampler="tpe", asha=True,
                                                 max_epochs=100)
    assert scheduler.rungs == [90, 30, 10]
    assert scheduler.rf == tune.ASHA_REDUCTION == 3
    assert searcher._sampler._n_startup_trials == tune.TPE_STARTUP == 5
    _, scheduler = tune.search_algorithms({"dropout": [0.1, 0.2]}, seed=0, sampler="tpe", asha=True,
                                          max_epochs=25, grace_period=3)
    assert scheduler.rungs == [9, 3]  # 27 is past the budget's 26
    assert tune.search_algorithms({"dropout": [0.1, 0.2]}, seed=0, sampler="random", asha=False,
                                  max_epochs=25)[1] is None


def test_ledger_asha_places_its_rungs_and_cuts_as_tunes_asha():
    """LedgerASHA is Tune's ASHA rule (one bracket): the same rungs for any grace period, epoch cap and
    reduction, and the same decision for any sequence of results (hypothesis), trials known by key."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler

    from mentor_ray.sweep.asha import LedgerASHA

    @settings(max_examples=60, deadline=None)
    @given(grace=st.integers(1, 12), max_t=st.integers(1, 200), rf=st.sampled_from([2, 3, 4]),
           events=st.lists(st.tuples(st.integers(0, 5), st.floats(0, 1)), max_size=60))
    def check(grace, max_t, rf, events):
        grace = min(grace, max_t)
        theirs = ASHAScheduler(time_attr="training_iteration", metric="m", mode="max", max_t=max_t,
                               grace_period=grace, reduction_factor=rf)
        ours = LedgerASHA(lambda config: f"run{config['i']}", grace_period=grace, max_t=max_t, reduction_factor=rf)
        ours.set_search_properties("m", "max")
        assert ours.rungs == [r[0] for r in theirs._brackets[0]._rungs]
        trials = [Trial("__fake", config={"i": i}, stub=True) for i in range(6)]
        for trial in trials:
            theirs.on_trial_add(None, trial)
        t, stopped = [0] * 6, set()
        for i, value in events:
            if i in stopped:  # a stopped trial reports nothing more
                continue
            t[i] += 1
            result = {"m": value, "training_iteration": t[i], "epoch": t[i] - 1}
            action = ours.on_trial_result(None, trials[i], result)
            assert action == theirs.on_trial_result(None, trials[i], result)
            if action == "STOP":
                stopped.add(i)

    check()


def test_ledger_asha_keeps_its_rungs_for_the_next_driver(tmp_path):
    """A second scheduler on the same ledger (a resumed search: new trial ids, epochs counted from the
    checkpoint) judges a returning run by the decisions already taken, and new runs against the values recorded
    before the interrupt."""
    from ray.tune.experiment import Trial

    from mentor_ray.sweep.asha import LedgerASHA, read_ledger, stopped_at

    def scheduler():
        s = LedgerASHA(lambda config: config["key"], grace_period=1, max_t=10, reduction_factor=3,
                       ledger=tmp_path / "rungs.json")
        s.set_search_properties("m", "max")
        return s

    def result(s, key, epoch, value):
        return s.on_trial_result(None, Trial("__fake", config={"key": key}, stub=True), {"m": value, "epoch": epoch})

    first = scheduler()
    assert result(first, "a", 0, 0.9) == "CONTINUE"  # rung 1: nothing to compare with
    assert result(first, "b", 0, 0.1) == "STOP"  # rung 1: below a's value
    assert result(first, "c", 0, 0.95) == "CONTINUE"
    assert result(first, "c", 1, 0.95) == "CONTINUE"  # between rungs
    recorded = read_ledger(tmp_path / "rungs.json")
    assert stopped_at(recorded, "b") == 1 and stopped_at(recorded, "c") is None
    second = scheduler()  # the next driver
    assert result(second, "b", 1, 0.99) == "STOP"  # b came back (cut off as it was stopped): still stopped
    assert result(second, "c", 1, 0.10) == "CONTINUE"  # c passed rung 1 before: not judged there again
    assert result(second, "d", 0, 0.5) == "STOP"  # new: judged against a, b and c's values at rung 1
    assert result(second, "c", 2, 0.97) == "CONTINUE"  # rung 3: first value there
    (tmp_path / "rungs.json").write_text("{not json")
    assert scheduler().recorded == {}  # an unreadable ledger: the runs are judged again, never a crash


def test_a_trial_whose_last_result_never_reached_asha_is_judged_on_resume_as_without_the_interrupt(tmp_path):
    """Trials run one at a time and report the best value so far each epoch; the driver dies at any point,
    after a trial's checkpoint but before ASHA saw its result (the interrupt came first, or the trial started
    while the driver was stopping). The next driver's ``catch_up`` from that checkpoint's curve, then the
    trials going on, give the same ledger and the same epochs per trial as the uninterrupted search (hypothesis:
    any curves, rungs and cut). Judged instead on its next result, the trial trains an epoch the uninterrupted
    search never ran and is judged on another value (CI, 2026-12-06)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from ray.tune.experiment import Trial

    from mentor_ray.sweep.asha import LedgerASHA, read_ledger, reported_values

    def run(ledger, grace, rf, curves, cut=None):
        """Epochs each trial trains; ``cut`` = (trial, epoch): the driver dies after that epoch's checkpoint,
        its result unseen, and the next driver catches up from the checkpoint's curve."""
        ledger.unlink(missing_ok=True)  # a search of its own

        def scheduler():
            s = LedgerASHA(lambda config: config["key"], grace_period=grace, max_t=len(curves[0]) + 1,
                           reduction_factor=rf, ledger=ledger)
            s.set_search_properties("m", "max")
            return s

        s, epochs = scheduler(), []
        for i, curve in enumerate(curves):
            reported, trained = reported_values(curve), 0
            for e, value in enumerate(reported):
                trained = e + 1
                if cut == (i, trained):
                    s = scheduler()  # the next driver
                    stop = s.catch_up(f"t{i}", reported[:trained])
                    if stop is not None and stop <= trained:
                        break
                    continue  # the trial goes on from its checkpoint
                trial = Trial("__fake", config={"key": f"t{i}"}, stub=True)
                if s.on_trial_result(None, trial, {"m": value, "epoch": e}) == "STOP":
                    break
            epochs.append(trained)
        return epochs, read_ledger(ledger)

    @settings(max_examples=80, deadline=None)
    @given(grace=st.integers(1, 3), rf=st.sampled_from([2, 3]), data=st.data(),
           curves=st.integers(1, 9).flatmap(lambda n: st.lists(
               st.lists(st.floats(0, 1), min_size=n, max_size=n), min_size=1, max_size=5)))
    def check(grace, rf, data, curves):
        whole = run(tmp_path / "whole.json", grace, rf, curves)
        trial = data.draw(st.integers(0, len(curves) - 1))
        epoch = data.draw(st.integers(1, whole[0][trial]))  # a checkpoint the trial reached uninterrupted
        assert run(tmp_path / "cut.json", grace, rf, curves, cut=(trial, epoch)) == whole

    check()


def test_paper_is_the_ablation_and_every_baseline_at_one_budget(tmp_path, capsys):
    args = tune.SweepOptions(**vars(tune_cmd._parser().parse_args(
        ["--dataset", "synth-tiny", "--results", str(tmp_path / "r"), "--paper"])))
    out = tune.paper_options(args)
    assert (out.ablation, out.baselines, out.budget, out.paper) == (True, "all", tune.PAPER_BUDGET, False)
    from mentor_ray.common.registry import MODELS

    every = [m for m, e in MODELS.items() if e.group != "mentor" and e.trained]
    assert tune.baseline_spaces(out.baselines) == [f"{m}_grid" for m in every]
    assert f"{len(every)} baseline(s)" in capsys.readouterr().out
    some = tune.paper_options(dataclasses.replace(args, baselines="freedom,lattice", budget=50))
    assert (some.baselines, some.budget) == ("freedom,lattice", 50)
    with pytest.raises(ConfigError, match="--paper: the space lightgcn_grid searches lightgcn"):
        tune.paper_options(dataclasses.replace(args, space="lightgcn_grid"))
    with pytest.raises(ConfigError, match="--paper: --num-samples 8 counts trials"):
        tune.paper_options(dataclasses.replace(args, num_samples=8))


class _Timed:
    """A trial for the progress printer: an id, a status and its epochs so far."""

    def __init__(self, trial_id):
        self.trial_id, self.status, self.last_result, self.config = trial_id, "RUNNING", {}, {"cfg": {}}


def _play(printer, runs, set_up, epoch, clock):
    """Drive ``printer`` as Tune would with one trial at a time: each run's set-up, then its epochs, each
    reported as it ends; returns the wall the phase took."""
    for i, epochs in enumerate(runs):
        t = _Timed(f"t{i}")
        clock[0] += set_up
        for e in range(epochs):
            clock[0] += epoch
            t.last_result = {"training_iteration": e + 1}
            printer.on_trial_result(0, [t], t, {"epoch": e})
        t.status = "TERMINATED"
    return clock[0]


def test_the_estimate_leaves_out_the_set_up_and_holds_against_the_wall(capsys):
    from mentor_ray.sweep import plan

    # a budgeted search: 15 s set-up and 2 s epochs; ASHA's pattern at 60 trial-epochs, cap 20, rungs 5 and 15
    clock = [0.0]
    expected = plan.search_plan(60, 20, 5, 3, grid=100, warm=0, startup=5).expected
    printer = trials.progress_printer("d search", 100, 20, 1, budget=60, clock=lambda: clock[0],
                                      expected_trials=expected)
    wall = _play(printer, [20, 5, 15, 5, 15], set_up=15.0, epoch=2.0, clock=clock)  # 60 epochs, 5 trials
    line = next(x for x in capsys.readouterr().out.splitlines() if "an epoch" in x)
    assert "set-up 15s and 2.0s an epoch" in line  # measured from the first trial's first two epochs
    estimate = expected * 15.0 + 60 * 2.0
    assert f"over ~{expected:.1f} trials" in line and trials._duration(estimate) in line
    assert abs(estimate - wall) / wall < 0.15  # ~5 trials expected, 5 ran: 195 s; the old rule said 60 x 17 s
    # finals: at most every run to the cap; early stopping ends them sooner, so the bound holds
    clock[0] = 0.0
    finals = trials.progress_printer("d final", 3, 20, 1, clock=lambda: clock[0])
    wall = _play(finals, [12, 9, 14], set_up=15.0, epoch=2.0, clock=clock)
    line = next(x for x in capsys.readouterr().out.splitlines() if "an epoch" in x)
    bound = 3 * (15.0 + 20 * 2.0)
    assert "3 runs x up to 20 epochs, 1 at once, if every run trains to the cap: ~" + trials._duration(bound) in line
    assert bound >= wall
    # a resumed search that had spent 40 of its 60 trial-epochs estimates the 20 left, not the whole budget
    clock[0] = 0.0
    resumed = trials.progress_printer("d search", 100, 20, 1, budget=60, clock=lambda: clock[0],
                                      expected_trials=1.0, spent_before=40)
    _play(resumed, [20], set_up=15.0, epoch=2.0, clock=clock)
    line = next(x for x in capsys.readouterr().out.splitlines() if "an epoch" in x)
    assert "a budget of 20 trial-epochs over ~1.0 trials" in line and trials._duration(15.0 + 20 * 2.0) in line


def test_a_search_says_the_time_its_points_can_still_take_when_that_is_less_than_the_budgets():
    # LGMRec's one-point grid under --budget 200 and a cap of 100: 5 epochs in 65 s; at most 95 more, not 195
    one = [_Trial("RUNNING", 5, 0.02)]
    line = trials.phase_status(one, total=1, budget=200, elapsed=65, max_epochs=100)
    assert line.startswith(f"5 of 200 trial-epochs (2%), ~{trials._duration(65 / 5 * 95)} left at this rate;")
    # a grid larger than the budget: the budget bounds it, as without the cap
    ts = [_Trial("TERMINATED", 20, 0.25), _Trial("RUNNING", 10, 0.1)]
    assert trials.phase_status(ts, total=48, budget=100, elapsed=60, max_epochs=100) == \
        trials.phase_status(ts, total=48, budget=100, elapsed=60)
    # every point ended: nothing left, whatever the budget says
    done = [_Trial("TERMINATED", 40, 0.3), _Trial("TERMINATED", 7, 0.2)]
    assert "~0s left" in trials.phase_status(done, total=2, budget=200, elapsed=60, max_epochs=100)


def test_the_final_phase_says_the_time_left():
    ts = [_Trial("TERMINATED", 20, 0.25), _Trial("RUNNING", 10, 0.1)]
    line = trials.phase_status(ts, total=4, budget=None, elapsed=60, max_epochs=50)
    # 30 epochs in 60 s; left at most: 40 of the running run + 2 runs not started x 50 = 140 epochs = 280 s
    assert line.startswith("30 epochs, ~4m40s left if every run trains to the cap; 1/4 ended, 1 running;")
