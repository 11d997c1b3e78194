"""Datasets in the MMRec layout: reading, validation and a Parquet cache.

``load_dataset(name, data_root)`` reads ``<data_root>/<name>/`` (``<name>.inter``, one
``<modality>_feat.npy`` per modality, optionally ``dataset.yaml``) into a typed :class:`Dataset`:
sizes, train/valid/test interactions, per-user training items, float32 features, a content hash. A
``synth-*`` preset name needs no data on disk: it is generated into the cache
(:mod:`mentor_ray.datasets.synthetic`). Bad input fails with one line naming the file. The layout,
every check, the decisions (sizes, cold users, duplicates) and the cache: ``docs/data.md``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mentor_ray.common import io as cache
from mentor_ray.common.errors import DataError, pydantic_message
from mentor_ray.common.names import check_name

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")  # x_label 0, 1, 2
SPEC_FILE = "dataset.yaml"
FEATURE_SUFFIX = "_feat.npy"
PARSER_VERSION = 1  # bump to invalidate every cached Parquet parse


# --------------------------------------------------------------------------- dataset.yaml


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = "userID"
    item: str = "itemID"
    split: str = "x_label"


class DatasetSpec(BaseModel):
    """The optional ``dataset.yaml``; every key has the MMRec default."""

    model_config = ConfigDict(extra="forbid")
    inter_file: str | None = None  # default: <name>.inter
    separator: str = "\t"
    columns: ColumnSpec = ColumnSpec()
    modalities: dict[str, str] | None = None  # modality -> .npy file; default: every *_feat.npy


def read_spec(directory: Path) -> DatasetSpec:
    path = directory / SPEC_FILE
    if not path.exists():
        return DatasetSpec()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{path}: not readable as YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a mapping of keys, found {type(raw).__name__}")
    try:
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        raise DataError(pydantic_message(str(path), exc, DatasetSpec)) from exc


# --------------------------------------------------------------------------- the dataset object


def csr_of(users: np.ndarray, items: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR arrays ``(indptr (n_users+1,), items grouped by user, ascending)``: ``items[indptr[u]:indptr[u+1]]``
    are user ``u``'s items. The one CSR builder: seen-item masks, ground truth and negative checks use it."""
    order = np.lexsort((items, users))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=n_users), out=indptr[1:])
    return indptr, items[order]


@dataclass(frozen=True)
class Interactions:
    """Parallel arrays of user and item ids (int64) for one split."""

    users: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class Dataset:
    """One loaded, validated dataset. Arrays are read-only by convention; share, don't copy."""

    name: str
    path: Path
    n_users: int
    n_items: int
    train: Interactions
    valid: Interactions
    test: Interactions
    features: dict[str, torch.Tensor]  # modality -> (n_items, d_m) float32
    content_hash: str
    feature_dtypes: dict[str, str] = field(default_factory=dict)  # dtype on disk, for reporting
    synthetic: bool = False

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    def split(self, name: str) -> Interactions:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; allowed: {', '.join(SPLITS)}")
        return getattr(self, name)

    @cached_property
    def train_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-user training items as CSR arrays ``(indptr (n_users+1,), items sorted per user)``.

        ``items[indptr[u]:indptr[u+1]]`` are user ``u``'s training items, ascending: used to mask
        seen items in ranking and to reject them as negatives.
        """
        return self.csr("train")

    def csr(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The items of ``split`` per user as CSR arrays (:func:`csr_of`)."""
        part = self.split(split)
        return csr_of(part.users, part.items, self.n_users)

    def summary(self) -> dict:
        """Counts for ``info`` and logs: sizes, splits, modalities and cold users and items."""
        train_user_deg = np.bincount(self.train.users, minlength=self.n_users)
        train_item_deg = np.bincount(self.train.items, minlength=self.n_items)
        cold_users = train_user_deg == 0
        out = {
            "name": self.name,
            "synthetic": self.synthetic,
            "path": str(self.path),
            "content_hash": self.content_hash,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": {s: len(self.split(s)) for s in SPLITS},
            "density": sum(len(self.split(s)) for s in SPLITS) / max(1, self.n_users * self.n_items),
            "modalities": {
                m: {"dim": int(f.shape[1]), "dtype_on_disk": self.feature_dtypes.get(m, "float32")}
                for m, f in self.features.items()
            },
            "cold_users": int(cold_users.sum()),
            "cold_items": int((train_item_deg == 0).sum()),
            "train_interactions_per_user_median": float(np.median(train_user_deg)),
        }
        for s in ("valid", "test"):
            inter = self.split(s)
            out[f"cold_users_in_{s}"] = int(np.unique(inter.users[cold_users[inter.users]]).size)
            cold_i = train_item_deg[inter.items] == 0
            out[f"{s}_interactions_on_cold_items"] = int(cold_i.sum())
            out[f"{s}_cold_items"] = int(np.unique(inter.items[cold_i]).size)
        return out


# --------------------------------------------------------------------------- locating a dataset


def is_dataset_dir(path: Path) -> bool:
    """A directory that looks like an MMRec dataset: ``<dirname>.inter`` or a ``dataset.yaml``."""
    return path.is_dir() and ((path / f"{path.name}.inter").is_file() or (path / SPEC_FILE).is_file())


def discover_datasets(data_root: Path | str) -> list[str]:
    """Names of the dataset directories directly under ``data_root``, sorted."""
    root = Path(data_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if is_dataset_dir(p))


def resolve_dataset_dir(name: str, data_root: Path | str | None) -> tuple[Path, bool]:
    """``(directory, synthetic)`` for a dataset name: a real directory wins over a preset."""
    from mentor_ray.datasets import synthetic

    check_name(name, "--dataset")  # a name, not a path: it must not leave the data root
    if data_root is not None and (Path(data_root) / name).is_dir():
        return Path(data_root) / name, synthetic.is_synthetic_name(name)
    if synthetic.is_synthetic_name(name):
        return synthetic.ensure_preset(name), True
    presets = ", ".join(synthetic.PRESETS)
    if data_root is None:
        raise DataError(f"--dataset {name}: not a synthetic preset ({presets}); give --data-root DIR for real data")
    found = ", ".join(discover_datasets(data_root)) or "none"
    raise DataError(
        f"--dataset {name}: no directory {Path(data_root) / name} (datasets under {data_root}: {found}; "
        f"synthetic presets: {presets})"
    )


def load_dataset(name: str, data_root: Path | str | None = None) -> Dataset:
    """Load and validate dataset ``name`` from ``data_root`` (or generate a ``synth-*`` preset)."""
    directory, synthetic = resolve_dataset_dir(name, data_root)
    return load_dataset_dir(directory, name=name, synthetic=synthetic)


def load_dataset_dir(directory: Path | str, name: str | None = None, synthetic: bool = False) -> Dataset:
    directory = Path(directory)
    name = name or directory.name
    if not directory.is_dir():
        raise DataError(f"{directory}: missing dataset directory")
    spec = read_spec(directory)
    inter_path = _inter_path(directory, name, spec)
    feature_paths = _feature_paths(directory, spec)

    features, dtypes = {}, {}
    n_rows_first: tuple[str, int] | None = None
    for modality, path in feature_paths.items():
        arr = _load_feature(path)
        if n_rows_first and arr.shape[0] != n_rows_first[1]:
            raise DataError(
                f"{path}: {arr.shape[0]} rows but {n_rows_first[0]} has {n_rows_first[1]}; "
                "every modality needs one row per item"
            )
        n_rows_first = n_rows_first or (path.name, arr.shape[0])
        dtypes[modality] = str(arr.dtype)
        features[modality] = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

    users, items, split, hashes = _interactions_cached(inter_path, spec, feature_paths)
    n_users = int(users.max()) + 1
    n_items = n_rows_first[1] if n_rows_first else int(items.max()) + 1
    if n_rows_first and items.max() >= n_items:
        row = int(np.argmax(items >= n_items))
        raise DataError(
            f"{inter_path}: itemID {int(items[row])} (row {row + 1}) >= {n_items}, the number of rows in "
            f"{n_rows_first[0]}; item ids must index feature rows"
        )
    parts = {s: Interactions(users[split == k], items[split == k]) for k, s in enumerate(SPLITS)}
    content_hash = cache.sha256_json({"files": hashes, "spec": spec.model_dump(), "v": PARSER_VERSION})
    return Dataset(
        name=name,
        path=directory,
        n_users=n_users,
        n_items=n_items,
        content_hash=content_hash,
        features=features,
        feature_dtypes=dtypes,
        synthetic=synthetic,
        **parts,
    )


def _inter_path(directory: Path, name: str, spec: DatasetSpec) -> Path:
    path = directory / (spec.inter_file or f"{name}.inter")
    if not path.is_file():
        others = sorted(p.name for p in directory.glob("*.inter"))
        hint = f" (found {', '.join(others)}; set inter_file in {SPEC_FILE})" if others else ""
        raise DataError(f"{path}: missing interaction file{hint}")
    return path


def _feature_paths(directory: Path, spec: DatasetSpec) -> dict[str, Path]:
    if spec.modalities is not None:
        paths = {m: directory / f for m, f in spec.modalities.items()}
        for m, p in paths.items():
            if not p.is_file():
                raise DataError(f"{p}: missing feature file for modality '{m}' declared in {directory / SPEC_FILE}")
        return paths
    return {p.name[: -len(FEATURE_SUFFIX)]: p for p in sorted(directory.glob(f"*{FEATURE_SUFFIX}"))}


def _load_feature(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError... for a bad file
        raise DataError(f"{path}: unreadable .npy file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise DataError(f"{path}: expected a 2-d array (items x dims), found shape {getattr(arr, 'shape', '?')}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: dtype {arr.dtype}; features must be a float dtype (float16, float32 or float64)")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DataError(f"{path}: NaN or Inf in row {row} ({int((~finite).sum())} bad rows); features must be finite")
    return arr


# --------------------------------------------------------------------------- parsing .inter


def _interactions_cached(
    inter_path: Path, spec: DatasetSpec, feature_paths: dict[str, Path]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, str]]:
    """(users, items, split, file hashes), from the Parquet cache when no source file changed."""
    sources = {"inter": inter_path, **{f"feature:{m}": p for m, p in feature_paths.items()}}
    spec_path = inter_path.parent / SPEC_FILE
    if spec_path.exists():
        sources["spec"] = spec_path
    signature = {
        "parser": PARSER_VERSION,
        "spec": spec.model_dump(),
        "files": {k: [str(p.resolve()), *cache.stat_signature(p)] for k, p in sources.items()},
    }
    slot = cache.cache_dir("interactions") / cache.sha256_json(str(inter_path.resolve()))[:20]
    manifest_path, parquet_path = slot.with_suffix(".json"), slot.with_suffix(".parquet")
    manifest = cache.read_json(manifest_path)
    if manifest and manifest.get("signature") == signature and parquet_path.exists():
        try:
            table = pq.read_table(parquet_path)
            return (
                table["user"].to_numpy(),
                table["item"].to_numpy(),
                table["split"].to_numpy(),
                manifest["hashes"],
            )
        except (OSError, pa.ArrowException, KeyError):
            log.warning("interaction cache %s unreadable; re-parsing %s", parquet_path, inter_path)

    users, items, split = parse_inter(inter_path, spec)
    hashes = {k: cache.sha256_file(p) for k, p in sources.items()}
    table = pa.table({"user": users, "item": items, "split": split})
    with cache.atomic_path(parquet_path) as tmp:
        pq.write_table(table, tmp)
    cache.write_json_atomic(manifest_path, {"signature": signature, "hashes": hashes})
    return users, items, split, hashes


def parse_inter(path: Path, spec: DatasetSpec | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse and validate an interaction file: (users int64, items int64, split int8), deduplicated."""
    spec = spec or DatasetSpec()
    cols = spec.columns
    header = _read_header(path, spec.separator)
    missing = [c for c in (cols.user, cols.item, cols.split) if c not in header]
    if missing:
        raise DataError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(header has: {', '.join(header) or 'nothing'}; required: {cols.user}, {cols.item}, {cols.split})"
        )
    try:
        table = pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=spec.separator),
            convert_options=pacsv.ConvertOptions(include_columns=[cols.user, cols.item, cols.split]),
        )
    except pa.ArrowException as exc:
        raise DataError(f"{path}: cannot parse: {str(exc).splitlines()[0]}") from exc
    users = _int_column(table[cols.user], path, cols.user)
    items = _int_column(table[cols.item], path, cols.item)
    split = _int_column(table[cols.split], path, cols.split)
    bad = (split < 0) | (split > 2)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}: {cols.split} = {int(split[row])} at line {row + 2}; "
                        f"allowed: 0 (train), 1 (valid), 2 (test)")
    split = split.astype(np.int8)
    users, items, split = _drop_duplicates(path, users, items, split)
    if not (split == 0).any():
        raise DataError(f"{path}: the train split is empty (no row with {cols.split} = 0)")
    return users, items, split


def _read_header(path: Path, sep: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            line = f.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from exc
    if not line.strip():
        raise DataError(f"{path}: empty file; expected a header line with userID, itemID and x_label")
    return [c.strip().strip('"') for c in line.rstrip("\r\n").split(sep)]


def _int_column(column: pa.ChunkedArray, path: Path, name: str) -> np.ndarray:
    """A column as non-negative int64, or a one-line error naming the first bad line."""
    if column.null_count:
        row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
        raise DataError(f"{path}: column {name} is empty at line {row + 2}; expected a non-negative integer")
    kind = column.type
    if pa.types.is_integer(kind):
        values = column.to_numpy().astype(np.int64, copy=False)
    elif pa.types.is_floating(kind):
        raw = column.to_numpy()
        bad = raw != np.floor(raw)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"{path}: column {name} = {float(raw[row])!r} at line {row + 2}; "
                            f"expected a non-negative integer")
        values = raw.astype(np.int64)
    else:
        for row, value in enumerate(column.to_pylist()):
            try:
                int(value)
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}: column {name} = {value!r} at line {row + 2}; expected a non-negative integer"
                ) from None
        values = np.asarray(column.to_pylist(), dtype=np.int64)
    if values.size and values.min() < 0:
        row = int(np.argmax(values < 0))
        raise DataError(f"{path}: column {name} = {int(values[row])} at line {row + 2}; ids must be non-negative")
    return values


def _drop_duplicates(
    path: Path, users: np.ndarray, items: np.ndarray, split: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop repeats of a (user, item) pair within a split (warn); a pair in two splits is an error."""
    if users.size == 0:
        return users, items, split
    key = users * (int(items.max()) + 1) + items
    order = np.lexsort((np.arange(key.size), key))  # by key, then by line
    same = key[order][1:] == key[order][:-1]
    if not same.any():
        return users, items, split
    prev, cur = order[:-1][same], order[1:][same]
    clash = split[prev] != split[cur]
    if clash.any():
        a, b = int(prev[np.argmax(clash)]), int(cur[np.argmax(clash)])
        raise DataError(
            f"{path}: user {int(users[a])} item {int(items[a])} is in split {SPLITS[split[a]]} (line {a + 2}) "
            f"and in split {SPLITS[split[b]]} (line {b + 2}); a (user, item) pair may be in one split only"
        )
    keep = np.ones(key.size, dtype=bool)
    keep[cur] = False
    log.warning("%s: dropped %d duplicate (user, item) rows (kept the first of each)", path, int(same.sum()))
    return users[keep], items[keep], split[keep]
