"""Foundations every layer may import: errors, the typed config, file I/O and caching, runtime knobs."""
