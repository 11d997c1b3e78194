"""Conversion of the DiffMM pickle layout (``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl``) to MMRec."""

from __future__ import annotations

import logging
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from mentor_ray.common.errors import DataError, shown
from mentor_ray.common.names import check_name
from mentor_ray.datasets.dataset import FEATURE_SUFFIX, SPLITS, load_dataset_dir, read_feature
from mentor_ray.datasets.mmrec import confined_file, open_regular, write_inter

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
    """The users x items matrix pickled at ``path``, as a checked COO matrix, or a one-line error.

    The pickle is a regular file in its own folder (:func:`confined_file`), unpickled by
    :class:`_SparseOnlyUnpickler`. Unpickling bypasses scipy's constructors, so nothing in the object has
    been checked: the compressed formats' index arrays are checked (``check_format``) before any
    conversion reads them, and the entries are rebuilt through the ``coo_matrix`` constructor, which
    refuses negative or out-of-range indices and arrays of different lengths. Values must be finite
    numbers (they become the ``rating`` column).
    """
    import scipy.sparse as sp

    need = "file (the DiffMM layout needs trnMat.pkl, valMat.pkl and tstMat.pkl)"
    real = confined_file(path.parent, path.name, missing=need)
    try:
        with open_regular(real) as f:
            obj = _SparseOnlyUnpickler(f).load()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: unreadable pickle ({type(exc).__name__}: {shown(str(exc), quote=False)})") from exc
    if not sp.issparse(obj):
        raise DataError(f"{path}: expected a scipy sparse users x items matrix, found {type(obj).__name__}")
    try:
        if hasattr(obj, "check_format"):  # csr, csc, bsr: index pointers and indices, before tocoo uses them
            obj.check_format(full_check=True)
        coo = obj.tocoo()
        shape = tuple(int(n) for n in coo.shape)
        if len(shape) != 2:
            raise ValueError(f"{len(shape)}-d; expected 2-d (users x items)")
        coo = sp.coo_matrix((np.asarray(coo.data), (np.asarray(coo.row), np.asarray(coo.col))), shape=shape)
    except Exception as exc:  # scipy raises ValueError, IndexError, TypeError... for inconsistent arrays
        raise DataError(f"{path}: not a valid sparse matrix ({type(exc).__name__}: "
                        f"{shown(str(exc), quote=False)})") from None
    if coo.data.dtype.kind not in "biuf":
        raise DataError(f"{path}: values of dtype {shown(str(coo.data.dtype), 60, quote=False)}; "
                        "expected numbers (the stored values become ratings)")
    if coo.data.dtype.kind == "f" and not np.isfinite(coo.data).all():
        k = int(np.argmin(np.isfinite(coo.data)))
        raise DataError(f"{path}: value {coo.data[k]} at (user {int(coo.row[k])}, item {int(coo.col[k])}); "
                        "stored values must be finite")
    return coo


def convert_diffmm(src: Path | str, dst: Path | str, name: str) -> Path:
    """Write the DiffMM layout in ``src`` as MMRec dataset ``dst/<name>`` (values unchanged).

    Each stored non-zero (user, item, value) of ``trnMat``/``valMat``/``tstMat`` becomes a row
    ``userID itemID rating timestamp x_label`` with ``rating`` = the stored value, ``timestamp`` 0 and
    ``x_label`` 0/1/2. Every ``*_feat.npy`` is copied byte for byte. Every source file must be a regular
    file inside ``src``; the matrices are checked (:func:`_load_sparse_pickle`), each must hold an entry,
    and each feature file needs one row per item. The output is written to a private temporary
    directory, loaded by the dataset loader (its every check), and only then moved into place, so a
    failed conversion leaves nothing behind.
    """
    src, out = Path(src), Path(dst) / check_name(name, "--name")
    if out.exists():
        raise DataError(f"{out}: already exists; remove it or choose another --name")
    if not src.is_dir():
        raise DataError(f"{src}: not a directory; give the folder holding trnMat.pkl, valMat.pkl and tstMat.pkl")
    files = ("trnMat.pkl", "valMat.pkl", "tstMat.pkl")
    mats = [_load_sparse_pickle(src / f) for f in files]
    shapes = {m.shape for m in mats}
    if len(shapes) != 1:
        raise DataError(f"{src}: trnMat/valMat/tstMat shapes differ: {sorted(shapes)}")
    n_items = mats[0].shape[1]
    features = {}
    for p in sorted(src.glob(f"*{FEATURE_SUFFIX}")):
        real = confined_file(src, p.name)
        rows = read_feature(real)[0].shape[0]  # the loader's checks, with the source file named
        if rows != n_items:
            raise DataError(f"{p}: {rows} rows but the matrices have {n_items} items ({files[0]} is "
                            f"{mats[0].shape[0]} x {n_items}); every item needs one feature row")
        features[p.name] = real
    users, items, ratings, labels = [], [], [], []
    for label, (m, f) in enumerate(zip(mats, files)):
        nz = m.data != 0  # DiffMM reads (matrix != 0): explicit zeros are not interactions
        if not nz.any():
            raise DataError(f"{src / f}: no non-zero entry, so the {SPLITS[label]} split would be empty; "
                            "every split needs interactions")
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
    made = [p for p in (Path(dst), *Path(dst).parents) if not p.exists()]  # what this call creates, deepest first
    Path(dst).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.converting-", dir=dst))  # private: no other run's leftovers
    done = False
    try:
        write_inter(table, tmp / f"{name}.inter")
        for file_name, real in features.items():
            shutil.copyfile(real, tmp / file_name)
        try:  # the one loader's every check, before the result is moved into place
            load_dataset_dir(tmp, name=name, use_cache=False)
        except DataError as exc:
            raise DataError(f"{src}: the converted dataset would not load: {exc}") from None
        tmp.rename(out)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            for folder in made:  # only while still empty: never what someone else put there
                try:
                    folder.rmdir()
                except OSError:
                    break
    log.info("converted %s -> %s: %d interactions, features %s", src, out, order.size, list(features))
    return out
