"""Benchmark plumbing: Markdown blocks are replaced in place, never duplicated."""

from mentor_ray.benchmarks.bench import upsert_block


def test_upsert_appends_then_replaces(tmp_path):
    md = tmp_path / "b.md"
    md.write_text("# Benchmarks\n\nintro\n")
    upsert_block(md, "graphs:x", "first")
    upsert_block(md, "other", "kept")
    upsert_block(md, "graphs:x", "second")
    text = md.read_text()
    assert text.count("<!-- bench:graphs:x -->") == 1 and "second" in text and "first" not in text
    assert "kept" in text and text.startswith("# Benchmarks\n\nintro")
    assert text.index("second") < text.index("kept")  # replaced in place, not moved to the end


def test_ddp_traffic_is_every_trainable_parameter_in_float32():
    from mentor_ray.benchmarks.bench import gradient_bytes
    from mentor_ray.datasets.dataset import load_dataset

    ds = load_dataset("synth-tiny")
    params, nbytes = gradient_bytes("synth-tiny", None, "lightgcn", ["embedding_dim=8"])
    assert params == (ds.n_users + ds.n_items) * 8  # LightGCN: the ID embeddings only
    assert nbytes == 4 * params


def test_gloo_allreduce_timing_runs_between_two_processes():
    from mentor_ray.benchmarks.bench import allreduce_seconds

    assert 0 < allreduce_seconds(10_000, reps=3) < 10
