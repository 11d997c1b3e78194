"""Sweeps: search spaces, the de-duplicating Optuna searcher, and Ray Tune experiments."""
