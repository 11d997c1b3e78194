"""Conversion of the DiffMM pickle layout (``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl``) to MMRec."""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from mentor_ray.common.errors import DataError
from mentor_ray.common.names import check_name
from mentor_ray.datasets.dataset import FEATURE_SUFFIX
from mentor_ray.datasets.mmrec import write_inter

log = logging.getLogger(__name__)


_SPARSE_FORMATS = ("coo", "csr", "csc", "dok", "lil", "bsr", "dia")
# Where scipy has defined the sparse classes over the years: scipy.sparse.csr (before 1.8), scipy.sparse._csr.
_SPARSE_MODULES = frozenset(
    ["scipy.sparse"] + [f"scipy.sparse.{p}{f}" for f in _SPARSE_FORMATS for p in ("", "_")]
)
_SPARSE_CLASSES = frozenset(f"{f}_{kind}" for f in _SPARSE_FORMATS for kind in ("matrix", "array"))
# What numpy arrays and scalars pickle to (numpy 1.x as numpy.core, 2.x as numpy._core), and the builtins
# that scipy's dok/lil classes and protocol-2 bytes need. Nothing else: a module prefix such as "numpy"
# would admit functions that run code (numpy.testing, numpy.f2py, numpy.load with allow_pickle, ...).
_ARRAY_GLOBALS = frozenset(
    [("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "dict"), ("__builtin__", "dict"),
     ("builtins", "object"), ("__builtin__", "object"),
     ("copyreg", "_reconstructor"), ("copy_reg", "_reconstructor")]
    + [(f"numpy.{core}.multiarray", f) for core in ("core", "_core") for f in ("_reconstruct", "scalar")]
    + [(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")]
)


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Protocol 2 writes bytes as ``_codecs.encode(text, "latin1")``; only that codec is let through."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


class _SparseOnlyUnpickler(pickle.Unpickler):
    """Unpickle scipy sparse matrices and the numpy arrays inside them, and nothing else.

    A pickle can name any importable callable and call it, so the allowlist is exact (module, name) pairs,
    never a module prefix. Sparse classes are looked up on ``scipy.sparse`` itself, whichever private module
    the pickle names, so pickles written by older scipy versions load too.
    """

    def find_class(self, module: str, name: str):
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            import scipy.sparse

            if hasattr(scipy.sparse, name):
                return getattr(scipy.sparse, name)
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}; expected a scipy sparse matrix")


def _load_sparse_pickle(path: Path):
    import scipy.sparse as sp

    if not path.is_file():
        raise DataError(f"{path}: missing file (the DiffMM layout needs trnMat.pkl, valMat.pkl and tstMat.pkl)")
    try:
        with open(path, "rb") as f:
            obj = _SparseOnlyUnpickler(f).load()
    except Exception as exc:
        raise DataError(f"{path}: unreadable pickle ({type(exc).__name__}: {exc})") from exc
    if not sp.issparse(obj):
        raise DataError(f"{path}: expected a scipy sparse users x items matrix, found {type(obj).__name__}")
    return obj.tocoo()


def convert_diffmm(src: Path | str, dst: Path | str, name: str) -> Path:
    """Write the DiffMM layout in ``src`` as MMRec dataset ``dst/<name>`` (values unchanged).

    Each stored non-zero (user, item, value) of ``trnMat``/``valMat``/``tstMat`` becomes a row
    ``userID itemID rating timestamp x_label`` with ``rating`` = the stored value, ``timestamp`` 0 and
    ``x_label`` 0/1/2. Every ``*_feat.npy`` is copied byte for byte. The output is written to a
    temporary directory and moved into place, so a failed conversion leaves nothing behind.
    """
    src, out = Path(src), Path(dst) / check_name(name, "--name")
    if out.exists():
        raise DataError(f"{out}: already exists; remove it or choose another --name")
    mats = [_load_sparse_pickle(src / f) for f in ("trnMat.pkl", "valMat.pkl", "tstMat.pkl")]
    shapes = {m.shape for m in mats}
    if len(shapes) != 1:
        raise DataError(f"{src}: trnMat/valMat/tstMat shapes differ: {sorted(shapes)}")
    features = sorted(src.glob(f"*{FEATURE_SUFFIX}"))
    users, items, ratings, labels = [], [], [], []
    for label, m in enumerate(mats):
        nz = m.data != 0  # DiffMM reads (matrix != 0): explicit zeros are not interactions
        users.append(m.row[nz].astype(np.int64))
        items.append(m.col[nz].astype(np.int64))
        ratings.append(m.data[nz])
        labels.append(np.full(int(nz.sum()), label, dtype=np.int64))
    users, items = np.concatenate(users), np.concatenate(items)
    ratings, labels = np.concatenate(ratings), np.concatenate(labels)
    order = np.lexsort((items, labels, users))
    table = pa.table(
        {
            "userID": users[order],
            "itemID": items[order],
            "rating": ratings[order],
            "timestamp": np.zeros(order.size, dtype=np.int64),
            "x_label": labels[order],
        }
    )
    tmp = Path(dst) / f".{name}.converting"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_inter(table, tmp / f"{name}.inter")
        for f in features:
            shutil.copyfile(f, tmp / f.name)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s -> %s: %d interactions, features %s", src, out, order.size, [f.name for f in features])
    return out
