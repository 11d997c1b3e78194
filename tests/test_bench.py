"""Benchmark plumbing: Markdown blocks are replaced in place, never duplicated."""

from mentor_ray.bench import upsert_block


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
