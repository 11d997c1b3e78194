"""Item embeddings kept with a run for Fig. 4 (a 2-D view per modality): a fixed item sample, packed small.

The paper samples 500 items at random and maps their visual, textual and ID embeddings with t-SNE. Every run
of a dataset keeps the SAME 500 items (a sample drawn from the item count alone, not from the run's seed), so
that MENTOR and MENTOR_base, and every seed, are compared on one set of items. The values travel as float16
(the picture needs 3 significant digits; the store stays small: 500 x 64 x 3 values are ~260 KB of text) in
one JSON string: ``{"items": [...], "dim": d, "modalities": {name: base64 of (len(items), d) float16}}``.

:func:`decode` is the one reader of that string (``results add`` checks a summary's with it, the results store
checks a run file's, Fig. 4 draws from it): anything it returns is drawable, anything else is a ``ValueError``
of one line.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SAMPLE = 500  # items, as in the paper
SAMPLE_SEED = 20250101  # fixed: the same items for every run of a dataset
_F16_MAX = float(np.finfo(np.float16).max)


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
    # float16 ends at 65504: a larger value would be packed as inf, which decode refuses (a picture of
    # directions loses nothing by the cut)
    packed = {name: base64.b64encode(np.clip(a[items], -_F16_MAX, _F16_MAX).astype("<f2").tobytes()).decode("ascii")
              for name, a in embeddings.items()}
    return json.dumps({"items": [int(i) for i in items], "dim": dims.pop(), "modalities": packed})


class _Packed(BaseModel):
    """The JSON of :func:`encode`'s string (strict: JSON numbers stay what they are)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    items: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
    dim: Annotated[int, Field(ge=1)]
    modalities: Annotated[dict[str, str], Field(min_length=1)]


def decode(text: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(items, name -> (len(items), d) float32)`` from :func:`encode`'s string; a one-line ``ValueError``
    saying what is wrong when ``text`` is not one (not JSON, another shape, a modality whose bytes are not
    ``len(items) x dim`` float16 values, a value that is not finite)."""
    try:
        doc = _Packed.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ValueError(f"{where + ': ' if where else ''}{first['msg']}"[:300]) from None
    out = {}
    size = len(doc.items) * doc.dim * 2  # bytes of a (items, dim) float16 array
    for name, b64 in doc.modalities.items():
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"modality {name!r}: not base64 ({exc})"[:300]) from None
        if len(raw) != size:
            raise ValueError(f"modality {name!r}: {len(raw):,} bytes, not {len(doc.items):,} items x dim {doc.dim:,} "
                             "float16 values"[:300])
        values = np.frombuffer(raw, dtype="<f2").astype(np.float32).reshape(len(doc.items), doc.dim)
        if not np.isfinite(values).all():
            raise ValueError(f"modality {name!r}: holds NaN or infinite values"[:300])
        out[name] = values
    return np.asarray(doc.items, dtype=np.int64), out
