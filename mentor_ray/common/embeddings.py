"""Item embeddings kept with a run for Fig. 4 (a 2-D view per modality): a fixed item sample, packed small.

The paper samples 500 items at random and maps their visual, textual and ID embeddings with t-SNE. Every run
of a dataset keeps the SAME 500 items (a sample drawn from the item count alone, not from the run's seed), so
that MENTOR and MENTOR_base, and every seed, are compared on one set of items. The values travel as float16
(the picture needs 3 significant digits; the store stays small: 500 x 64 x 3 values are ~260 KB of text) in
one JSON string: ``{"items": [...], "dim": d, "modalities": {name: base64 of (len(items), d) float16}}``.
"""

from __future__ import annotations

import base64
import json

import numpy as np

SAMPLE = 500  # items, as in the paper
SAMPLE_SEED = 20250101  # fixed: the same items for every run of a dataset


def sample_items(n_items: int, size: int = SAMPLE) -> np.ndarray:
    """The sorted item ids every run of a dataset with ``n_items`` items keeps (all of them when fewer)."""
    if n_items <= size:
        return np.arange(n_items)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(n_items, size, replace=False))


def encode(items: np.ndarray, embeddings: dict[str, np.ndarray]) -> str:
    """Pack the rows ``items`` of each (n_items, d) array of ``embeddings`` (name -> array)."""
    dims = {a.shape[1] for a in embeddings.values()}
    if len(dims) != 1:
        raise ValueError(f"embeddings: one width for every modality, got {sorted(dims)}")
    packed = {name: base64.b64encode(np.ascontiguousarray(a[items], dtype="<f2").tobytes()).decode("ascii")
              for name, a in embeddings.items()}
    return json.dumps({"items": [int(i) for i in items], "dim": dims.pop(), "modalities": packed})


def decode(text: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(items, name -> (len(items), d) float32)`` from :func:`encode`'s string."""
    doc = json.loads(text)
    items = np.asarray(doc["items"], dtype=np.int64)
    out = {name: np.frombuffer(base64.b64decode(b), dtype="<f2").astype(np.float32).reshape(len(items), doc["dim"])
           for name, b in doc["modalities"].items()}
    return items, out
