"""Fig. 4: item embeddings kept with final/ablation runs (common/embeddings.py, Trainer, results store) and
their t-SNE maps and modality distances in the leaderboard (report/embedding_plot.py).

Distances are checked against a float64 formula written here; the packing against the float16 rounding it
promises; the trainer against a MENTOR it trains on synth-tiny."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mentor_ray.common import embeddings
from mentor_ray.common.config import make_config
from mentor_ray.common.names import KS
from mentor_ray.report import embedding_plot, select
from mentor_ray.training.trainer import Trainer
from tests.store_helpers import record


@given(st.integers(1, 3000), st.integers(1, 700))
def test_the_sample_is_fixed_sorted_and_distinct(n_items, size):
    items = embeddings.sample_items(n_items, size)
    assert len(items) == min(n_items, size) == len(set(items.tolist()))
    assert (np.diff(items) > 0).all() and items.min() >= 0 and items.max() < n_items
    assert (items == embeddings.sample_items(n_items, size)).all()  # not the run's seed: the same every time


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 16), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_packing_round_trips_to_float16(n, d, m, seed):
    rng = np.random.default_rng(seed)
    found = {f"m{k}": rng.normal(size=(n, d)).astype(np.float32) for k in range(m)}
    items = np.sort(rng.choice(n, size=rng.integers(1, n + 1), replace=False))
    got_items, got = embeddings.decode(embeddings.encode(items, found))
    assert (got_items == items).all() and list(got) == list(found)
    for name, a in found.items():
        np.testing.assert_array_equal(got[name], a[items].astype(np.float16).astype(np.float32))


def test_distances_match_the_formula():
    rng = np.random.default_rng(3)
    found = {"id": rng.normal(size=(7, 5)), "image": rng.normal(size=(7, 5)), "audio": rng.normal(size=(7, 5))}
    got = embedding_plot.pair_distances(found)
    assert set(got) == {("image", "audio"), ("image", "id"), ("audio", "id")}
    for (a, b), value in got.items():
        want = np.mean([math.dist(found[a][i] / np.linalg.norm(found[a][i]), found[b][i] / np.linalg.norm(found[b][i]))
                        for i in range(7)])
        assert value == pytest.approx(want, rel=1e-12)
    same = embedding_plot.pair_distances({"image": found["id"], "text": 3 * found["id"]})
    assert same[("image", "text")] == pytest.approx(0.0, abs=1e-12)  # direction only


def test_a_mentor_run_keeps_its_best_epochs_embeddings_and_a_baseline_none():
    cfg = make_config(flags={"dataset": "synth-tiny", "variant": "mentor"},
                      overrides=["embedding_dim=8", "max_epochs=2", "infonce_scope=batch"])
    t = Trainer(cfg)
    summary = t.fit()
    items, found = embeddings.decode(summary["item_embeddings"])
    assert list(found) == ["id", *t.ds.modalities] and (items == embeddings.sample_items(t.ds.n_items)).all()
    model = t.model.modality_item_embeddings()  # the last epoch's; equal to the kept ones when it was the best
    if summary["best_epoch"] == t.history[-1]["epoch"]:
        for m, a in found.items():
            np.testing.assert_allclose(a, model[m][items].numpy().astype(np.float16).astype(np.float32))
    assert t.state_dict()["best"]["embeddings"] == summary["item_embeddings"]  # survives a checkpoint
    base = Trainer(make_config(flags={"dataset": "synth-tiny", "variant": "lightgcn"},
                               overrides=["embedding_dim=8", "max_epochs=1"]))
    assert base.fit()["item_embeddings"] is None


def _summary(variant, seed, kept, dataset="synth-a"):
    cfg = make_config(flags={"dataset": dataset, "variant": variant, "seed": seed}).model_dump()
    metrics = {f"{m}@{k}": 0.1 for m in ("recall", "ndcg") for k in KS}
    return {"dataset": dataset, "synthetic": True, "variant": variant, "seed": seed, "best_epoch": 1, "epochs_run": 2,
            "valid": metrics, "test": metrics, "seconds_per_epoch": 1.0, "device": "cpu", "world_size": 1,
            "valid_curve": [0.1, 0.1], "wall_seconds": 1.0, "config": cfg, "item_embeddings": kept}


def _kept(rng, n=60, d=6, spread=1.0):
    base = rng.normal(size=(n, d))
    found = {"id": base, "image": base + spread * rng.normal(size=(n, d)),
             "text": base + spread * rng.normal(size=(n, d))}
    return embeddings.encode(np.arange(n), {k: v.astype(np.float32) for k, v in found.items()})


def test_the_store_keeps_embeddings_of_final_and_ablation_runs_only(tmp_path):
    rng = np.random.default_rng(0)
    record(tmp_path, _summary("mentor", 0, _kept(rng)), role="final")
    record(tmp_path, _summary("mentor_base", 0, _kept(rng)), role="ablation")
    record(tmp_path, _summary("mentor", 1, _kept(rng)), role="search")
    runs = select.load_runs(tmp_path)
    kept = dict(zip(runs["role"] + "/" + runs["variant"], runs["item_embeddings"].notna()))
    assert kept == {"final/mentor": True, "ablation/mentor_base": True, "search/mentor": False}


def test_fig4_distances_per_seed_and_a_map_per_model(tmp_path):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(1)
    kept = {("mentor", s): _kept(rng, spread=0.2) for s in (0, 1)} | {("mentor_base", s): _kept(rng, spread=1.5)
                                                                       for s in (0, 1)}
    for (variant, seed), text in kept.items():
        record(tmp_path, _summary(variant, seed, text), role="final" if variant == "mentor" else "ablation")
    chosen = select.select_final(select.load_runs(tmp_path))
    frame = embedding_plot.distance_frame(chosen, "synth-a")
    assert len(frame) == 2 * 2 * 3  # models x seeds x pairs (image-text, image-id, text-id)
    for (variant, seed), text in kept.items():
        _, found = embeddings.decode(text)
        want = np.mean(np.linalg.norm(found["image"] / np.linalg.norm(found["image"], axis=1, keepdims=True)
                                      - found["text"] / np.linalg.norm(found["text"], axis=1, keepdims=True), axis=1))
        got = frame[(frame["variant"] == variant) & (frame["seed"] == seed) & (frame["pair"] == "image-text")]
        assert got["distance"].item() == pytest.approx(want, rel=1e-9)
    summary = embedding_plot.distance_summary(frame)
    closer = summary.set_index(["variant", "pair"])["mean"]
    assert closer[("mentor", "image-text")] < closer[("mentor_base", "image-text")]  # as built
    stem, title, caption, build = embedding_plot.job(chosen, "synth-a", "synth-a (synthetic)", "synth-a")
    assert stem == "embeddings" and "seed-0 run" in caption and "n=2" in caption
    fig = build()
    assert not isinstance(fig, str) and len(fig.axes) == 2
    pts = embedding_plot.tsne_points(embeddings.decode(kept[("mentor", 0)])[1])
    assert len(pts) == 3 * 60 and np.isfinite(pts[["x", "y"]].to_numpy()).all()
    again = embedding_plot.tsne_points(embeddings.decode(kept[("mentor", 0)])[1])
    np.testing.assert_array_equal(pts[["x", "y"]].to_numpy(), again[["x", "y"]].to_numpy())  # deterministic


def test_fig4_says_why_it_is_not_drawn(tmp_path):
    record(tmp_path, _summary("mentor", 0, None), role="final")
    chosen = select.select_final(select.load_runs(tmp_path))
    *_, build = embedding_plot.job(chosen, "synth-a", "synth-a (synthetic)", "synth-a")
    assert "kept item embeddings" in build()
