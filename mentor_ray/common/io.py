"""On-disk cache: where it lives, atomic writes, and file content hashes.

The cache root is ``$MENTOR_RAY_CACHE`` or ``~/.cache/mentor_ray``. It holds generated ``synth-*``
datasets, Parquet copies of parsed interactions and built graphs. Everything in it can be deleted
at any time; it is rebuilt on demand. Writes go to a temporary name in the same directory and are
moved into place with ``os.replace``, so a killed process never leaves a torn file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

ENV_VAR = "MENTOR_RAY_CACHE"


def cache_root() -> Path:
    """The cache directory (created on first use)."""
    root = Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "mentor_ray").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; move it into place only if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` through a hidden temporary file renamed over it: never a half-written file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any | None:
    """The parsed JSON at ``path``, or None if it is absent or unreadable (a cache miss)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def stat_signature(path: Path) -> list[int]:
    """(size, mtime in ns): the change detector used to invalidate cached parses and hashes."""
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns]


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- checksum files


def write_checksums(path: Path, files: list[Path]) -> None:
    """Write ``path``: the SHA-256 of each of ``files`` (named relative to its directory), atomically.

    Written after the files, so its presence marks a complete set: :func:`checksum_problem` finds a
    file cut short, flipped or missing, and a set whose checksum file never got written.
    """
    path = Path(path)
    digests = {Path(f).relative_to(path.parent).as_posix(): sha256_file(f) for f in files}
    write_json_atomic(path, {"sha256": digests})


def checksum_problem(path: Path) -> str | None:
    """None when every file listed in the checksum file ``path`` has its recorded SHA-256, else what
    is wrong, in a few words that name the file (a missing or unreadable checksum file counts)."""
    path = Path(path)
    recorded = read_json(path)
    digests = recorded.get("sha256") if isinstance(recorded, dict) else None
    if not isinstance(digests, dict) or not digests:
        return f"{path}: no checksum file (an incomplete entry, or one from an older version)"
    for name, digest in sorted(digests.items()):
        file = path.parent / name
        try:
            actual = sha256_file(file)
        except OSError as exc:
            return f"{file}: unreadable ({exc.strerror or type(exc).__name__})"
        if actual != digest:
            return f"{file}: checksum mismatch (cut short or corrupted)"
    return None


def check_writable_dir(path: str | Path, flag: str) -> None:
    """Raise a one-line :class:`ConfigError` unless ``path`` is, or can be made, a writable directory.

    Checked before any work starts, so that a run never ends with its results unwritable. Nothing is
    created here. URIs (``s3://...``) are left to the storage layer.
    """
    from mentor_ray.common.errors import ConfigError

    if "://" in str(path):
        return
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {path}: is a file, not a directory; give a directory (or a new path)")
    existing = p
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is a file, so the directory cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == p else f"cannot be created: {existing} is not writable"
        raise ConfigError(f"{flag} {path}: {what}; choose a directory you can write to")


def check_writable_file(path: str | Path, flag: str) -> None:
    """Raise a one-line :class:`ConfigError` unless a file can be written at ``path``."""
    from mentor_ray.common.errors import ConfigError

    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file path")
    check_writable_dir(p.parent if str(p.parent) else Path("."), flag=f"{flag} {path}: its folder")
