"""What the parity scripts (``tools/parity/<model>.py``) share: MMRec's environment and the fakes its models read.

MMRec's environment: its ``src/`` on ``sys.path``; ``models.common`` aliased to ``common`` (some models import
``models.common...``, which MMRec commit e775373 does not have: the same files are ``src/common``); and SciPy's
``dok_matrix._update``, which MMRec's ``get_norm_adj_mat`` calls and SciPy 1.12 removed, as item assignment.
The fakes: the config dict and the training dataloader a model's constructor reads, and the tiny dataset
directory it loads its features from. Then the JSON helpers the golden files are written with.

Not part of the package (which never imports ``tools/``); MMRec is GPL-3.0: it is run, never copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

MMREC_COMMIT = "e775373b3ab1354a92165b0885ce4ab3dc4d7497"  # the checkout the golden files were made with
FEAT_DIMS = {"image": 6, "text": 5}  # dataset order; MMRec: image = v_feat, text = t_feat


def parse_args(doc: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The scripts' command line (``--mmrec``, ``--out``, ``--commit``); then MMRec's environment (:func:`setup`)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--mmrec", type=Path, required=True, help="an MMRec checkout")
    ap.add_argument("--out", type=Path, required=True, help="the golden JSON to write")
    ap.add_argument("--commit", default=MMREC_COMMIT, help="the MMRec commit of --mmrec, recorded in the JSON")
    args = ap.parse_args(argv)
    setup(args.mmrec)
    return args


def setup(mmrec: Path) -> None:
    """MMRec's ``src/`` importable, ``models.common`` aliased where MMRec lacks it, and SciPy's removed
    ``dok_matrix._update`` back (see the module docstring)."""
    src = Path(mmrec) / "src"
    sys.path.insert(0, str(src))
    if not (src / "models" / "common").exists():
        import common
        import common.abstract_recommender
        import common.loss
        import models

        sys.modules["models.common"] = models.common = common
        sys.modules["models.common.abstract_recommender"] = common.abstract_recommender
        sys.modules["models.common.loss"] = common.loss

    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):
        def _update(self, data):
            for (r, c), v in data.items():
                self[r, c] = v
        sp.dok_matrix._update = _update


def features(seed: int, n_items: int) -> dict[str, np.ndarray]:
    """Item features of :data:`FEAT_DIMS`'s modalities: standard normal float32 from numpy's ``seed``."""
    rng = np.random.default_rng(seed)
    return {m: rng.standard_normal((n_items, k)).astype(np.float32) for m, k in FEAT_DIMS.items()}


def config(batch_size: int, data: dict | None = None, **settings) -> dict:
    """The config dict MMRec's model constructors read: the fields and device, the training batch size, the
    dataset's files (``data``, from :func:`dataset_dir`; none: a model without features), the model's settings."""
    return {
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "NEG_PREFIX": "neg__",
        "train_batch_size": batch_size, "device": "cpu", "end2end": False,
        "is_multimodal_model": data is not None, **(data or {}), **settings,
    }


@contextmanager
def dataset_dir(feats: dict[str, np.ndarray], files: dict | None = None) -> Iterator[dict]:
    """A temporary MMRec dataset directory ``<tmp>/tiny``: the ``image`` and ``text`` features as
    ``image_feat.npy``, ``text_feat.npy`` (GeneralRecommender loads ``<data_path><dataset>/<vision|text>_
    feature_file``) and ``files`` (name -> object, pickled by ``np.save``). Yields the config keys naming the
    features; a model caches its graphs there too (a fresh directory: they are built, not loaded)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tiny").mkdir()
        np.save(Path(tmp) / "tiny" / "image_feat.npy", feats["image"])
        np.save(Path(tmp) / "tiny" / "text_feat.npy", feats["text"])
        for name, obj in (files or {}).items():
            np.save(Path(tmp) / "tiny" / name, obj, allow_pickle=True)
        yield {"data_path": tmp + "/", "dataset": "tiny",
               "vision_feature_file": "image_feat.npy", "text_feature_file": "text_feat.npy"}


class Loader:
    """MMRec's training dataloader as its models read it: ``dataset.get_user_num()``, ``dataset.get_item_num()``
    and ``inter_matrix(form)``, the training pairs as a SciPy matrix of ones (``dtype``)."""

    def __init__(self, n_users: int, n_items: int, users=(), items=(), dtype=np.float32):
        self.dataset = _Sizes(n_users, n_items)
        self._inter = (np.ones(len(users), dtype=dtype), (users, items))
        self._shape = (n_users, n_items)

    def inter_matrix(self, form: str = "coo"):
        import scipy.sparse as sp

        return sp.coo_matrix(self._inter, shape=self._shape).asformat(form)


class _Sizes:
    def __init__(self, n_users: int, n_items: int):
        self.n_users, self.n_items = n_users, n_items

    def get_user_num(self) -> int:
        return self.n_users

    def get_item_num(self) -> int:
        return self.n_items


def interaction(batch: dict) -> list[torch.Tensor]:
    """A batch of triplets (``users``, ``pos``, ``neg``) as MMRec's models take it."""
    return [torch.tensor(batch[k]) for k in ("users", "pos", "neg")]


def floats(t: torch.Tensor) -> list:
    """A tensor as nested lists of floats (float32 values are exact in float64, and in JSON's repr)."""
    return t.detach().double().tolist()


def arrays(feats: dict[str, np.ndarray]) -> dict[str, list]:
    """Features as nested lists of floats."""
    return {m: f.astype(np.float64).tolist() for m, f in feats.items()}


def kept_edges(model, n_keep: int) -> dict:
    """The edges of MMRec's ``masked_adj`` (FREEDOM, LayerGCN): its first ``n_keep`` entries are
    (user, item + n_users), as drawn; with their re-normalised values."""
    idx = model.masked_adj._indices()[:, :n_keep]
    return {"users": idx[0].tolist(), "items": (idx[1] - model.n_users).tolist(),
            "values": floats(model.masked_adj._values()[:n_keep])}


def pruning_edges(model) -> dict:
    """MMRec's edge list (its order depends on SciPy: 1.17's ``astype`` sorts a COO matrix) and each edge's
    sampling weight, of FREEDOM's and LayerGCN's degree-sensitive pruning."""
    return {"edges": {"users": model.edge_indices[0].tolist(), "items": model.edge_indices[1].tolist()},
            "edge_values": floats(model.edge_values)}


def write(out: Path, record: dict, compact: bool = False) -> None:
    """The golden JSON: indented by one space, or ``compact`` without spaces; a final newline."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, separators=(",", ":")) if compact else json.dumps(record, indent=1)
    out.write_text(text + "\n")
