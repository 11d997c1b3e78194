"""The model registry: every model is found by name, reads its own keys, and a run's identity (config hash,
run name, "is it recorded") covers only what its model reads, also for stores that 0.3 wrote."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mentor_ray.common import registry
from mentor_ray.common.config import TrainConfig, make_config, read_keys, role_of, validate
from mentor_ray.common.errors import ConfigError
from mentor_ray.model.base import Recommender
from mentor_ray.report import results
from mentor_ray.sweep.resume import Journal
from mentor_ray.sweep.spaces import load_space
from mentor_ray.sweep.trials import summary_key, trial_key
from mentor_ray.training.ray_train import run_name

STORE_03 = Path(__file__).parent / "fixtures" / "store_0.3"  # written by 0.3's code: tools/make_store_03.py
CANDIDATES = (0, 1, 2, 3, 0.1, 0.3, 0.7, 1e-3, 5e-5, True, False, "sum", "mean", "matrix", "batch", "simgcl",
              "sym", "none", "row", "add", "mean")


def _other_value(key: str, value):
    """A valid value of ``key`` other than ``value`` (None if the candidates have none)."""
    for candidate in CANDIDATES:
        if candidate == value or type(candidate) is bool and not isinstance(value, bool):
            continue
        try:
            validate({key: candidate})
        except ConfigError:
            continue
        return candidate
    return None


def test_every_entry_loads_a_recommender_and_validates_with_its_defaults():
    for name, entry in registry.MODELS.items():
        assert issubclass(entry.load(), Recommender), name
        cfg = validate({"variant": name})
        for key, value in entry.all_defaults().items():
            assert getattr(cfg, key) == value, (name, key)
        assert set(entry.read_keys()) <= set(TrainConfig.model_fields), name
        assert all(role_of(k) in ("model", "graph", "optim") for k in entry.read_keys()), name


def test_every_trained_baseline_has_its_published_grid():
    for name, entry in registry.MODELS.items():
        if entry.group == "mentor" or not entry.trained:
            continue
        space = load_space(f"{name}_grid")
        assert space.model == name
        assert set(space.search) <= set(entry.read_keys()), name  # it searches keys the model reads


def test_rows_are_in_the_papers_order():
    groups = [registry.MODELS[m].group for m in registry.MODELS]
    assert groups == sorted(groups, key=registry.GROUPS.index)
    assert list(registry.VARIANT_MODELS)[-1] == "mentor"  # the full model closes the table


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(sorted(registry.VARIANT_MODELS)),
       key=st.sampled_from([k for k in TrainConfig.model_fields if role_of(k) in ("model", "graph", "optim")]))
def test_a_runs_identity_changes_exactly_with_the_keys_its_model_reads(variant, key):
    base = validate({"variant": variant, "dataset": "synth-tiny"})
    other = _other_value(key, getattr(base, key))
    if other is None:
        return
    changed = validate({**base.model_dump(), key: other})
    reads = key in read_keys(variant)
    assert (results.config_hash(changed.model_dump()) != results.config_hash(base.model_dump())) == reads
    assert (run_name(changed) != run_name(base)) == reads
    assert (trial_key(variant, changed.model_dump(), 0) != trial_key(variant, base.model_dump(), 0)) == reads


def test_a_mentor_only_default_leaves_lightgcn_alone():
    """What a change of MENTOR's tau default does to a LightGCN run: nothing (its dump carries tau, unread)."""
    light = make_config(flags={"variant": "lightgcn", "dataset": "synth-tiny"})
    moved = validate({**light.model_dump(), "tau": 0.7, "lambda_f": 0.5, "knn_k": 10})
    assert results.config_hash(moved.model_dump()) == results.config_hash(light.model_dump())
    assert run_name(moved) == run_name(light)
    mentor = make_config(flags={"variant": "mentor", "dataset": "synth-tiny"})
    assert results.config_hash({**mentor.model_dump(), "tau": 0.7}) != results.config_hash(mentor.model_dump())


def test_mentors_identity_is_the_one_03_gave_it():
    names = json.loads((STORE_03 / "run_names.json").read_text())
    for seed in (0, 1):
        cfg = make_config(flags={"variant": "mentor", "dataset": "synth-tiny", "seed": seed, "max_epochs": 5})
        assert run_name(cfg) == names[f"mentor-s{seed}"]
        assert results.config_hash(cfg.model_dump()) == results.legacy_config_hash(cfg.model_dump())
        assert (STORE_03 / f"final-synth-tiny-mentor-{results.config_hash(cfg.model_dump())}-s{seed}.parquet").is_file()


@pytest.fixture
def store(tmp_path):
    shutil.copytree(STORE_03, tmp_path / "results")
    return tmp_path / "results"


def _lightgcn(seed: int) -> dict:
    cfg = make_config(flags={"variant": "lightgcn", "dataset": "synth-tiny", "seed": seed, "max_epochs": 5})
    return {"dataset": "synth-tiny", "synthetic": True, "variant": "lightgcn", "seed": seed, "config": cfg.model_dump()}


def test_a_03_store_reads_under_todays_identity_and_groups_with_new_runs(store):
    new_hash = results.config_hash(_lightgcn(0)["config"])
    assert not any(new_hash in p.name for p in store.glob("*.parquet"))  # 0.3 named the files otherwise
    # a resumed sweep finds the runs 0.3 recorded, and does not run them again
    assert results.is_recorded(store, _lightgcn(0), "final", "lightgcn_grid")
    assert results.is_recorded(store, _lightgcn(1), "final", "lightgcn_grid")
    assert not results.is_recorded(store, _lightgcn(2), "final", "lightgcn_grid")
    # a run recorded today joins them: one configuration, three seeds
    old = results.read_results(store, variant="lightgcn").to_pandas()
    summary = {**_lightgcn(2), "best_epoch": 3, "epochs_run": 5, "status": "completed",
               "valid": {f"{m}@{k}": 0.1 for m in ("recall", "ndcg") for k in (5, 10, 20, 50)},
               "test": {f"{m}@{k}": 0.1 for m in ("recall", "ndcg") for k in (5, 10, 20, 50)}}
    results.record(store, summary, "final", "lightgcn_grid")
    rows = results.read_results(store, variant="lightgcn").to_pandas()
    assert set(old["config_hash"]) == {new_hash}
    assert set(rows["config_hash"]) == {new_hash} and rows.groupby("config_hash")["seed"].nunique().iloc[0] == 3
    assert all(new_hash in rid for rid in rows["run_id"])
    # a copy of a 0.3 file under today's name is the same run, counted once
    first = next(store.glob("final-synth-tiny-lightgcn-*-s0.parquet"))
    shutil.copy(first, store / f"{results.summary_run_id(_lightgcn(0), 'final', 'lightgcn_grid')}.parquet")
    again = results.read_results(store, variant="lightgcn").to_pandas()
    assert again["run_id"].nunique() == 3


def test_a_03_sweep_journal_keys_its_trials_by_todays_identity(store):
    ended = Journal(store, "sweep-lightgcn").ended()
    assert list(ended) == [summary_key(_lightgcn(0))]
    assert list(Journal(store, "sweep-mentor").ended()) == [p.stem for p in (store / ".journal/sweep-mentor").glob("*")]


def test_a_03_train_run_folder_is_continued(tmp_path):
    names = json.loads((STORE_03 / "run_names.json").read_text())
    cfg = make_config(flags={"variant": "lightgcn", "dataset": "synth-tiny", "seed": 0, "max_epochs": 5})
    assert run_name(cfg, str(tmp_path)) != names["lightgcn-s0"]  # nothing there: today's name
    (tmp_path / names["lightgcn-s0"]).mkdir()
    assert run_name(cfg, str(tmp_path)) == names["lightgcn-s0"]  # 0.3 started it: continue that folder
    (tmp_path / run_name(cfg)).mkdir()
    assert run_name(cfg, str(tmp_path)) == run_name(cfg)  # both: today's
