"""Synthetic presets: shape, determinism, planted structure, and use through the real loader."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from mentor_ray import synthetic as synthetic_cmd
from mentor_ray.common import io as cache
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets import synthetic
from mentor_ray.datasets.graphs import knn_neighbours


@pytest.fixture(scope="module")
def small():
    return synthetic.generate(synthetic.PRESETS["synth-small"])


def _columns(gen):
    return (gen.table[c].to_numpy() for c in ("userID", "itemID", "x_label"))


def test_generation_is_deterministic_for_a_seed():
    spec = synthetic.PRESETS["synth-tiny"]
    a, b = synthetic.generate(spec), synthetic.generate(spec)
    c = synthetic.generate(replace(spec, seed=1))
    assert a.table.equals(b.table)
    assert all(np.array_equal(a.features[m], b.features[m]) for m in a.features)
    assert not a.table.equals(c.table)


@pytest.mark.parametrize("name", list(synthetic.PRESETS))
def test_activity_hits_table_1_totals_with_at_least_five_per_user(name):
    spec = synthetic.PRESETS[name]
    counts = synthetic._activity(spec, np.random.default_rng(0))
    assert counts.size == spec.n_users and counts.sum() == spec.n_interactions and counts.min() >= 5


def test_paper_scale_presets_have_table_1_shapes():
    table1 = {"synth-baby": (19445, 7050, 160792), "synth-sports": (35598, 18357, 296337),
              "synth-clothing": (39387, 23033, 278677)}
    for name, shape in table1.items():
        spec = synthetic.PRESETS[name]
        assert (spec.n_users, spec.n_items, spec.n_interactions) == shape
        assert {m.name: m.dim for m in spec.modalities} == {"image": 4096, "text": 384}


def test_interactions_are_distinct_split_per_user_and_long_tailed(small):
    spec = synthetic.PRESETS["synth-small"]
    users, items, labels = _columns(small)
    assert users.size == spec.n_interactions
    assert np.unique(users * spec.n_items + items).size == users.size  # no repeated pair
    per_user = np.bincount(users, minlength=spec.n_users)
    assert per_user.min() >= 5
    for split in (1, 2):  # every user has validation and test ground truth
        assert np.all(np.bincount(users[labels == split], minlength=spec.n_users) >= 1)
    frac = np.bincount(labels, minlength=3) / labels.size
    assert 0.7 < frac[0] < 0.85 and 0.07 < frac[1] < 0.15 and 0.07 < frac[2] < 0.15
    pop = np.sort(np.bincount(items, minlength=spec.n_items))[::-1]
    assert pop[: spec.n_items // 10].sum() > 0.3 * users.size  # top 10% of items: > 30% of interactions


def _topic_agreement(features, topic, k=10):
    nbrs = knn_neighbours(__import__("torch").from_numpy(features), k + 1)[:, 1:].numpy()
    return float((topic[nbrs] == topic[:, None]).mean())


def test_features_carry_the_planted_topics_text_more_than_image(small):
    chance = float(np.sum((np.bincount(small.item_topic) / small.item_topic.size) ** 2))
    text = _topic_agreement(small.features["text"], small.item_topic)
    image = _topic_agreement(small.features["image"], small.item_topic)
    assert text > image > 3 * chance, (text, image, chance)


def test_users_prefer_items_of_their_topics(small):
    users, items, _ = _columns(small)
    topic = small.item_topic[items]
    # share of each user's interactions in their single most frequent topic, versus chance
    share = np.array([np.bincount(topic[users == u]).max() / (users == u).sum() for u in range(300)])
    assert share.mean() > 0.4


def test_preset_name_works_without_data_and_is_cached():
    ds = data.load_dataset("synth-tiny")
    assert ds.synthetic and ds.name == "synth-tiny" and ds.modalities == ["image", "text"]
    inter = ds.path / "synth-tiny.inter"
    mtime = inter.stat().st_mtime_ns
    again = data.load_dataset("synth-tiny")
    assert inter.stat().st_mtime_ns == mtime and again.content_hash == ds.content_hash


def test_generate_command_writes_a_loadable_directory(tmp_path):
    assert synthetic_cmd.main(["generate", "synth-tiny", "--out", str(tmp_path), "--seed", "3"]) == 0
    ds = data.load_dataset("synth-tiny", tmp_path)
    assert ds.path == tmp_path / "synth-tiny" and len(ds.train) + len(ds.valid) + len(ds.test) == 480
    assert cache.checksum_problem(tmp_path / "synth-tiny" / synthetic.CHECKSUMS) is None


def _flip_middle_byte(path) -> None:
    b = path.read_bytes()
    middle = len(b) // 2
    path.write_bytes(b[:middle] + bytes([b[middle] ^ 0x10]) + b[middle + 1 :])


@pytest.mark.parametrize("how", ["truncated .inter", "bit-flipped feature file", "no checksum file"])
def test_a_damaged_cached_preset_is_named_and_regenerated(tmp_path, monkeypatch, caplog, how):
    monkeypatch.setenv("MENTOR_RAY_CACHE", str(tmp_path))
    fresh = data.load_dataset("synth-tiny")
    directory = fresh.path
    target = {"truncated .inter": directory / "synth-tiny.inter", "bit-flipped feature file":
              directory / "image_feat.npy", "no checksum file": directory / synthetic.CHECKSUMS}[how]
    if how == "truncated .inter":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif how == "bit-flipped feature file":
        _flip_middle_byte(target)
    else:
        target.unlink()
    caplog.set_level(logging.WARNING, logger=synthetic.__name__)
    again = data.load_dataset("synth-tiny")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and str(target) in warned[0] and warned[0].endswith("regenerating synth-tiny"), warned
    assert "\n" not in warned[0]
    assert again.content_hash == fresh.content_hash  # byte for byte the fresh generation
    assert all(torch.equal(fresh.features[m], again.features[m]) for m in fresh.modalities)
    assert np.array_equal(fresh.train.users, again.train.users) and np.array_equal(fresh.test.items, again.test.items)
    assert cache.checksum_problem(directory / synthetic.CHECKSUMS) is None
    caplog.clear()
    data.load_dataset("synth-tiny")  # checks out now: no warning, no regeneration
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
