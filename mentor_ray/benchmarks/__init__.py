"""Benchmarks written to ``docs/benchmarks.md``, and the one-call GPU check."""
