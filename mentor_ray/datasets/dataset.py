"""Datasets in the MMRec layout: reading, validation and a Parquet cache.

``load_dataset(name, data_root)`` reads ``<data_root>/<name>/`` (``<name>.inter``, one
``<modality>_feat.npy`` per modality, optionally ``dataset.yaml``) into a typed :class:`Dataset`:
sizes, train/valid/test interactions, per-user training items, float32 features, a content hash. A
``synth-*`` preset name needs no data on disk: it is generated into the cache
(:mod:`mentor_ray.datasets.synthetic`). Bad input fails with one line naming the file. Every file is
read through :func:`mentor_ray.datasets.mmrec.confined_file` (inside the dataset's directory, a regular
file). The layout, every check, the decisions (sizes, id bounds, empty splits, cold users, duplicates)
and the cache: ``docs/data.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from mentor_ray.common import io as cache
from mentor_ray.common.errors import ConfigError, DataError, pydantic_message, shown
from mentor_ray.common.names import NAME_RULE, check_name
from mentor_ray.common.yamlio import load_yaml
from mentor_ray.datasets.mmrec import confined_file, open_regular

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")  # x_label 0, 1, 2
SPEC_FILE = "dataset.yaml"
FEATURE_SUFFIX = "_feat.npy"
PARSER_VERSION = 2  # bump to invalidate every cached Parquet parse (2: id bounds, non-finite ids, provenance)
HASH_VERSION = 1  # part of the content hash, which checkpoints record: bump only when parsed data means otherwise
HEADER_BYTES = 1 << 16  # the header line of a .inter is read on its own; no header is longer

# Ids are indices: user and item tables (embeddings, optimiser state, graph rows) get largest id + 1 rows.
# A real dataset numbers its users and items 0..n-1 with n at most its number of rows; ids far beyond that
# are raw ids (hashes, timestamps, 10**18) that would allocate terabytes for empty rows. An id must be below
# the larger of ID_FLOOR (room for a sample of a dataset that kept its original ids) and ID_PER_ROW x the
# rows of the .inter file (or, for items, the rows of the feature files), and always below MAX_ID (the
# results store keeps user ids as int32; a (user, item) pair key then fits int64).
ID_FLOOR = 1 << 20
ID_PER_ROW = 8
MAX_ID = 1 << 31


def id_limit(n_rows: int, at_least: int = 0) -> int:
    """The bound every id of an ``n_rows``-row ``.inter`` must stay below (see :data:`ID_FLOOR`)."""
    return min(MAX_ID, max(ID_FLOOR, ID_PER_ROW * n_rows, at_least))


# --------------------------------------------------------------------------- dataset.yaml


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = "userID"
    item: str = "itemID"
    split: str = "x_label"

    @model_validator(mode="after")
    def _distinct(self) -> "ColumnSpec":
        if len({self.user, self.item, self.split}) < 3:
            raise ValueError("user, item and split must name three different columns")
        return self


class DatasetSpec(BaseModel):
    """The optional ``dataset.yaml``; every key has the MMRec default."""

    model_config = ConfigDict(extra="forbid")
    inter_file: str | None = None  # default: <name>.inter
    separator: str = "\t"
    columns: ColumnSpec = ColumnSpec()
    modalities: dict[str, str] | None = None  # modality -> .npy file; default: every *_feat.npy

    @field_validator("separator")
    @classmethod
    def _one_character(cls, value: str) -> str:
        # the CSV reader takes one delimiter character; a newline or quote would split nothing sensible
        if len(value) != 1 or value in '\r\n"':
            raise ValueError("must be one character other than a newline or a double quote (a tab is \"\\t\")")
        return value


def _spec_file(directory: Path) -> Path | None:
    """The resolved ``dataset.yaml`` of ``directory``, or None when it has none (a dangling link is an error)."""
    if not os.path.lexists(directory / SPEC_FILE):
        return None
    return confined_file(directory, SPEC_FILE)


def read_spec(directory: Path) -> DatasetSpec:
    path = _spec_file(directory)
    if path is None:
        return DatasetSpec()
    try:
        raw = load_yaml(path, what=str(directory / SPEC_FILE))
    except ConfigError as exc:  # a dataset file: reported as bad data, with the reader's message
        raise DataError(str(exc)) from None
    try:
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        raise DataError(pydantic_message(str(directory / SPEC_FILE), exc, DatasetSpec)) from exc


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
    # a root that is not there is a typo or a missing mount, not a request for the stand-in: a preset name under
    # it would otherwise train on generated data without a word (a root that exists may hold only real data
    # beside which the presets run, e.g. --dataset tiktok,synth-small)
    if data_root is not None and not Path(data_root).is_dir():
        what = "is not a directory" if Path(data_root).exists() else "no such directory"
        raise DataError(f"--data-root {data_root}: {what}; give the folder holding your dataset folders"
                        + (f" (or leave it out: {name} is a synthetic preset)" if synthetic.is_synthetic_name(name)
                           else ""))
    if synthetic.is_synthetic_name(name):
        if data_root is not None:  # said, since a root was given: the stand-in, not a copy of real data
            log.info("%s: not under %s; the generated synthetic preset is used", name, data_root)
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


def load_dataset_dir(directory: Path | str, name: str | None = None, synthetic: bool = False,
                     use_cache: bool = True) -> Dataset:
    """Load and validate the dataset in ``directory`` (named ``name``, default the directory's name).

    Every file read must be a regular file inside ``directory`` (:func:`~mentor_ray.datasets.mmrec.
    confined_file`). Each of the three splits must hold at least one interaction: an empty train split
    leaves nothing to learn, and an empty valid or test split is refused rather than warned about,
    because its metrics would be reported as 0.0 for every epoch and configuration: validation would
    select nothing and test would score nothing, with no sign of why. Split the data first. With
    ``use_cache`` false the parse is neither read from nor written to the cache (a check of files that
    are about to move, as the DiffMM converter does).
    """
    directory = Path(directory)
    name = name or directory.name
    try:
        check_name(name, "dataset name")
    except ConfigError as exc:
        raise DataError(f"{directory}: {exc}") from None
    if not directory.is_dir():
        raise DataError(f"{directory}: missing dataset directory")
    spec = read_spec(directory)
    spec_file = _spec_file(directory)
    inter_path = _inter_path(directory, name, spec)
    feature_paths = _feature_paths(directory, spec)

    features, dtypes = {}, {}
    n_rows_first: tuple[str, int] | None = None
    for modality, path in feature_paths.items():
        arr, dtypes[modality] = read_feature(path)
        if n_rows_first and arr.shape[0] != n_rows_first[1]:
            raise DataError(
                f"{path}: {arr.shape[0]} rows but {n_rows_first[0]} has {n_rows_first[1]}; "
                "every modality needs one row per item"
            )
        n_rows_first = n_rows_first or (path.name, arr.shape[0])
        features[modality] = torch.from_numpy(arr)

    item_rows = n_rows_first[1] if n_rows_first else 0
    sources = {"inter": inter_path, **{f"feature:{m}": p for m, p in feature_paths.items()}}
    if spec_file is not None:
        sources["spec"] = spec_file
    if use_cache:
        users, items, split, hashes = _interactions_cached(name, inter_path, spec, sources, item_rows)
    else:
        users, items, split = parse_inter(inter_path, spec, item_rows)
        hashes = {k: _sha256(p) for k, p in sources.items()}
    n_users = int(users.max()) + 1 if users.size else 0
    n_items = item_rows if n_rows_first else (int(items.max()) + 1 if items.size else 0)
    if n_rows_first and items.size and items.max() >= n_items:
        row = int(np.argmax(items >= n_items))
        raise DataError(
            f"{inter_path}: itemID {int(items[row])} (row {row + 1}) >= {n_items}, the number of rows in "
            f"{n_rows_first[0]}; item ids must index feature rows"
        )
    for k, s in enumerate(SPLITS):
        if not (split == k).any():
            raise DataError(f"{inter_path}: the {s} split is empty (no row with {spec.columns.split} = {k}); "
                            f"every split needs interactions (0 train, 1 valid, 2 test)")
    parts = {s: Interactions(users[split == k], items[split == k]) for k, s in enumerate(SPLITS)}
    content_hash = cache.sha256_json({"files": hashes, "spec": spec.model_dump(), "v": HASH_VERSION})
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
    def missing() -> str:
        others = sorted(p.name for p in directory.glob("*.inter"))
        found = shown(", ".join(others), quote=False)
        return f"interaction file (found {found}; set inter_file in {SPEC_FILE})" if others else "interaction file"

    if spec.inter_file is None:
        return confined_file(directory, f"{name}.inter", missing=missing)
    return confined_file(directory, spec.inter_file, f"{directory / SPEC_FILE}: inter_file", missing=missing)


def _feature_paths(directory: Path, spec: DatasetSpec) -> dict[str, Path]:
    """Modality -> resolved feature file: those ``dataset.yaml`` declares, else every ``*_feat.npy``."""
    if spec.modalities is not None:
        declared = [(m, f, f"{directory / SPEC_FILE}: modalities.{shown(m, 80, quote=False)}")
                    for m, f in spec.modalities.items()]
    else:
        declared = [(p.name[: -len(FEATURE_SUFFIX)], p.name, None)
                    for p in sorted(directory.glob(f"*{FEATURE_SUFFIX}"))]
    paths = {}
    for modality, value, source in declared:
        try:  # a modality names graph-cache entries, log lines and table columns: one rule for names
            check_name(modality, "modality")
        except ConfigError:
            raise DataError(f"{source or directory / value}: modality name {shown(modality, 80)} is not allowed; "
                            f"allowed: {NAME_RULE}") from None
        what = f"feature file for modality '{modality}'" + (f" declared in {directory / SPEC_FILE}" if source else "")
        paths[modality] = confined_file(directory, value, source, missing=what)
    return paths


def read_feature(path: Path) -> tuple[np.ndarray, str]:
    """``(features as C-contiguous float32 (rows, dims), dtype on disk)`` of the ``.npy`` file ``path``.

    The header is checked before any data is read: a float dtype (never an object or structured array,
    never unpickled), 2-d, at least one row and one column, and a file exactly as long as the header
    says (a header claiming more than the file holds would allocate it). Values must be finite in
    float32, the model's dtype: a float64 value past float32's range is refused, not turned into inf.
    """
    fmt = np.lib.format
    with open_regular(path) as f:
        try:
            version = fmt.read_magic(f)
            readers: dict[tuple[int, int], Callable] = {(1, 0): fmt.read_array_header_1_0,
                                                        (2, 0): fmt.read_array_header_2_0}
            if version not in readers:
                raise ValueError(f"format version {version[0]}.{version[1]}; versions 1.0 and 2.0 are read")
            shape, fortran, dtype = readers[version](f)
            data_bytes = os.fstat(f.fileno()).st_size - f.tell()
        except Exception as exc:  # numpy raises ValueError, OSError, EOFError... for a bad header
            raise DataError(f"{path}: unreadable .npy file ({type(exc).__name__}: "
                            f"{shown(str(exc), quote=False)})") from None
        if dtype.hasobject or dtype.fields is not None or not np.issubdtype(dtype, np.floating):
            raise DataError(f"{path}: dtype {shown(str(dtype), 80, quote=False)}; features must be a float dtype "
                            "(float16, float32 or float64)")
        if len(shape) != 2:
            raise DataError(f"{path}: expected a 2-d array (items x dims), found shape {shape}")
        if 0 in shape:
            raise DataError(f"{path}: shape {shape} has no {'rows' if shape[0] == 0 else 'columns'}; "
                            "features need one row per item and at least one column")
        expected = shape[0] * shape[1] * dtype.itemsize
        if data_bytes != expected:
            raise DataError(f"{path}: its header says {shape} {dtype} ({expected:,} bytes of data) but the file holds "
                            f"{data_bytes:,}; the file is cut short or not what its header says")
        f.seek(0)
        try:
            arr = fmt.read_array(f, allow_pickle=False)
        except Exception as exc:
            raise DataError(f"{path}: unreadable .npy file ({type(exc).__name__}: "
                            f"{shown(str(exc), quote=False)})") from None
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        if np.isfinite(arr[row]).all():
            col = int(np.argmin(np.isfinite(out[row])))
            raise DataError(
                f"{path}: value {float(arr[row, col]):.4g} in row {row}, column {col} is beyond float32's range "
                f"(largest {float(np.finfo(np.float32).max):.4g}) and the model computes in float32; rescale them"
            )
        raise DataError(f"{path}: NaN or Inf in row {row} ({int((~finite).sum())} bad rows); features must be finite")
    return out, str(arr.dtype)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- the interaction cache

_CACHE_KEY = b"mentor_ray.interactions"  # the Parquet schema metadata key holding the entry's record
_CACHE_TYPES = {"user": pa.int64(), "item": pa.int64(), "split": pa.int8()}


def _arrays_checksum(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _interactions_cached(
    name: str, inter_path: Path, spec: DatasetSpec, sources: dict[str, Path], item_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, str]]:
    """(users, items, split, file hashes), from the Parquet cache when the entry is this dataset's and
    no source file changed, else parsed (and cached).

    An entry is one Parquet file whose schema metadata records what it was made from (dataset name,
    each source file's resolved path, size and mtime, the column spec), the source files' SHA-256 and a
    checksum of its arrays. An entry made from these files as they are now is used; one made from an
    earlier version of them is re-parsed (logged); any other (another dataset's file put in its place,
    no record, a checksum mismatch, unreadable) is re-parsed with a one-line warning naming it.
    """
    signature = {
        "parser": PARSER_VERSION,
        "dataset": name,
        "spec": spec.model_dump(),
        "item_rows": item_rows,
        "files": {k: [str(p), *cache.stat_signature(p)] for k, p in sources.items()},
    }
    slot = cache.sha256_json([name, str(inter_path)])[:20]
    path = cache.cache_dir("interactions") / f"{slot}.v{PARSER_VERSION}.parquet"
    hit = _read_cached(path, signature, inter_path)
    if hit is not None:
        return hit
    users, items, split = parse_inter(inter_path, spec, item_rows)
    hashes = {k: _sha256(p) for k, p in sources.items()}
    record = {"signature": signature, "hashes": hashes, "checksum": _arrays_checksum(users, items, split)}
    table = pa.table({"user": users, "item": items, "split": split})
    table = table.replace_schema_metadata({_CACHE_KEY: json.dumps(record, sort_keys=True).encode()})
    with cache.atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return users, items, split, hashes


def _read_cached(path: Path, signature: dict, inter_path: Path):
    """The cache entry ``path`` as (users, items, split, hashes) if it is the one ``signature`` describes."""
    if not os.path.lexists(path):
        return None
    try:
        if not path.is_file():
            problem = "not a regular file"
        else:
            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(_CACHE_KEY)
            record = json.loads(raw) if raw is not None else None
            made = record.get("signature") if isinstance(record, dict) else None
            if not isinstance(made, dict):
                problem = "no record of what it was made from (not written by this version of mentor_ray)"
            elif made != signature:
                same_source = (made.get("dataset") == signature["dataset"]
                               and made.get("files", {}).get("inter", [None])[0] == signature["files"]["inter"][0])
                if same_source:  # the ordinary case: the dataset's files were edited since
                    log.info("%s: changed since it was parsed; re-parsing", inter_path)
                    return None
                other = made.get("files", {}).get("inter", ["?"])[0]
                problem = (f"was made from dataset {shown(made.get('dataset'), 80)} "
                           f"({shown(other, quote=False)}), not from {signature['dataset']!r} ({inter_path})")
            elif {f.name: f.type for f in table.schema} != _CACHE_TYPES:
                problem = f"holds columns {shown(str(table.schema.types), quote=False)}, not the cache's"
            else:
                users, items, split = (table[c].to_numpy() for c in _CACHE_TYPES)
                if _arrays_checksum(users, items, split) != record.get("checksum"):
                    problem = "checksum mismatch (cut short or corrupted)"
                else:
                    return users, items, split, dict(record["hashes"])
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, pa.ArrowException) as exc:
        problem = f"unreadable ({type(exc).__name__}: {shown(str(exc), quote=False)})"
    log.warning("interaction cache %s: %s; re-parsing %s", path, problem, inter_path)
    return None


# --------------------------------------------------------------------------- parsing .inter


def parse_inter(path: Path, spec: DatasetSpec | None = None,
                item_rows: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse and validate an interaction file: (users int64, items int64, split int8), deduplicated.

    Ids must be integers written in decimal (:func:`_int_column`) in ``[0, id_limit)``: see :data:`ID_FLOOR`;
    ``item_rows`` (the feature files' rows) raises the bound for items. The header must hold each
    required column once and no column name twice. Whether each split is non-empty is
    :func:`load_dataset_dir`'s check.
    """
    spec = spec or DatasetSpec()
    cols = spec.columns
    with open_regular(path) as f:
        header = _read_header(path, f, spec.separator)
        seen: dict[str, int] = {}
        for again, column in enumerate(header, start=1):
            first = seen.setdefault(column, again)
            if first != again:
                dup = column
                break
        else:
            dup = None
        if dup is not None:
            raise DataError(f"{path}: column {shown(dup, 80)} appears twice in the header (columns {first} and "
                            f"{again}); column names must be unique")
        missing = [c for c in (cols.user, cols.item, cols.split) if c not in header]
        if missing:
            raise DataError(
                f"{path}: missing column{'s' if len(missing) > 1 else ''} {shown(', '.join(missing), quote=False)} "
                f"(header has: {shown(', '.join(header), quote=False) or 'nothing'}; "
                f"required: {shown(', '.join((cols.user, cols.item, cols.split)), quote=False)})"
            )
        f.seek(0)
        try:
            table = pacsv.read_csv(
                f,
                parse_options=pacsv.ParseOptions(delimiter=spec.separator),
                # read as text, parsed by _int_column's one rule; only an empty field is missing ("nan", "NA"
                # and "null" are values, refused as not integers)
                convert_options=pacsv.ConvertOptions(
                    include_columns=[cols.user, cols.item, cols.split],
                    column_types={c: pa.string() for c in (cols.user, cols.item, cols.split)},
                    null_values=[""], strings_can_be_null=True),
            )
        except (pa.ArrowException, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DataError(f"{path}: cannot parse: {shown(first, quote=False)}") from None
    n = table.num_rows
    ids = (f"ids index tables sized by the largest id, so they must be below the larger of {ID_FLOOR:,} and "
           f"{ID_PER_ROW} x the {n:,} rows{{}}, and below {MAX_ID:,}; number the ids 0..n-1")
    users = _int_column(table[cols.user], path, f"column {cols.user}", id_limit(n), "ids must be non-negative",
                        ids.format(""))
    rows = f" or the {item_rows:,} feature rows" if item_rows else ""
    items = _int_column(table[cols.item], path, f"column {cols.item}", id_limit(n, item_rows),
                        "ids must be non-negative", ids.format(rows))
    allowed = "allowed: 0 (train), 1 (valid), 2 (test)"
    split = _int_column(table[cols.split], path, cols.split, 3, allowed, allowed).astype(np.int8)
    return _drop_duplicates(path, users, items, split)


def _read_header(path: Path, f, sep: str) -> list[str]:
    """The column names of the first line (at most :data:`HEADER_BYTES`; a UTF-8 BOM is dropped)."""
    try:
        line = f.readline(HEADER_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror or type(exc).__name__})") from None
    if len(line) > HEADER_BYTES:
        raise DataError(f"{path}: the first line is longer than {HEADER_BYTES:,} bytes; "
                        "expected a header line with userID, itemID and x_label")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: the header line is not UTF-8 text; expected userID, itemID and x_label") from None
    if not text.strip():
        raise DataError(f"{path}: empty file; expected a header line with userID, itemID and x_label")
    return [c.strip().strip('"') for c in text.rstrip("\r\n").split(sep)]


_DIGITS = r"^[0-9]{1,10}$"  # the common case: cast exactly, as int64 (10 digits cover every id below MAX_ID)
_NUMBER = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"  # any decimal literal: " 4", "+5", "2.0"


def _int_column(column: pa.ChunkedArray, path: Path, label: str, limit: int, negative: str,
                above: str) -> np.ndarray:
    """A text column as int64 in ``[0, limit)``, or a one-line error naming the first bad line: ``label =
    value at line N; <negative or above>``.

    The one rule for what an id is, whatever the CSV reader would have guessed for the column: a decimal
    number literal whose value is a finite integer (``7``, ``007``, ``+5``, `` 4``, ``2.0``, ``1e3``).
    Anything else is refused: ``bob``, ``1_000``, ``true``, ``nan``, ``inf``, and ``0x10`` (which the
    reader's own inference would take as 16). Values are compared before any cast to int64, so ``1e30``
    or ``10**20`` never wrap around.
    """
    def refuse(mask: np.ndarray, values, why: str, quote: bool = False):
        row = int(np.argmax(mask))
        value = values[row]
        text = shown(value) if quote else shown(str(value).strip(), quote=False)
        raise DataError(f"{path}: {label} = {text} at line {row + 2}; {why}")

    if len(column) == 0:
        return np.empty(0, dtype=np.int64)
    if column.null_count:
        row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
        raise DataError(f"{path}: {label} is empty at line {row + 2}; expected a non-negative integer")
    if pc.all(pc.match_substring_regex(column, _DIGITS)).as_py():
        raw = values = pc.cast(column, pa.int64()).to_numpy()
    else:
        values = column.to_numpy(zero_copy_only=False)
        ok = pc.match_substring_regex(column, _NUMBER).to_numpy(zero_copy_only=False)
        if not ok.all():
            refuse(~ok, values, "expected a non-negative integer", quote=True)
        raw = pc.cast(pc.utf8_trim_whitespace(column), pa.float64()).to_numpy()  # exact below 2**53 > MAX_ID
        bad = ~np.isfinite(raw) | (raw != np.floor(raw))
        if bad.any():
            refuse(bad, values, "expected a non-negative integer")
    if raw.min() < 0:
        refuse(raw < 0, values, negative)
    if raw.max() >= limit:
        refuse(raw >= limit, values, above)
    return raw.astype(np.int64)


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
