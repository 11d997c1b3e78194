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


# The content hashes of the embedded presets, the same under both install profiles (numpy 1.26 + torch 2.2 and
# numpy 2 + torch 2.13): the generator uses only bit-exact arithmetic (synthetic.generate's docstring). A
# change here re-keys every graph cache and results store made on synthetic data: bump GENERATOR_VERSION.
RECORDED_CONTENT_HASH = {
    "synth-tiny": "b87d44df87e35cd8fc276d0c2624bbf3a914c203555a54a846a2f44c907f2907",
    "synth-small": "d85b0ce28cd6d3455a55b09797cf2e65981eff77984e19228b1535c9f24f97ae",
}


@pytest.mark.parametrize("name", sorted(RECORDED_CONTENT_HASH))
def test_embedded_presets_are_byte_identical_to_the_recorded_generation(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MENTOR_RAY_CACHE", str(tmp_path))  # generated here, not read from a shared cache
    assert data.load_dataset(name).content_hash == RECORDED_CONTENT_HASH[name], np.__version__


def test_products_and_sums_do_not_depend_on_order():
    """The two primitives that make the generator exact: a product of grid values is the same under any
    blocking of its inner dimension, and the fixed-order sum does not follow numpy's own blocking."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((50, 40)), rng.standard_normal((40, 30))
    whole = synthetic._exact_matmul(a, b)
    ga, gb = synthetic._on_grid(a), synthetic._on_grid(b)
    split = ga[:, :17] @ gb[:17] + ga[:, 17:] @ gb[17:]  # another summation order
    backwards = ga[:, ::-1] @ gb[::-1]
    assert np.array_equal(whole, split) and np.array_equal(whole, backwards)
    x = rng.standard_normal(1000) * 10.0 ** rng.integers(-8, 8, 1000)
    assert synthetic._fixed_sum(x) == synthetic._fixed_sum(x.reshape(1, -1))[0]
    with pytest.raises(ValueError, match="exact"):
        synthetic._exact_matmul(np.full((1, 4), 2.0**20), np.full((4, 1), 2.0**20))
