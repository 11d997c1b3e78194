"""On-disk cache: where it lives, atomic writes, and file content hashes.

The cache root is ``$MENTOR_RAY_CACHE`` or ``~/.cache/mentor_ray``. It holds generated ``synth-*``
datasets, Parquet copies of parsed interactions and built graphs. Everything in it can be deleted
at any time; it is rebuilt on demand. Writes go to a temporary name in the same directory and are
moved into place with ``os.replace``, so a killed process never leaves a torn file behind.

Every file mentor_ray writes goes through :func:`atomic_path` (or :func:`write_atomic`): a full disk then
stops the command with one :class:`StorageFullError` line naming the file and the space left, and the
temporary file is removed, so nothing half-written is left behind either.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mentor_ray.common.errors import MentorRayError

ENV_VAR = "MENTOR_RAY_CACHE"


class StorageFullError(MentorRayError):
    """A write found its file system full (ENOSPC) or the user's quota used up (EDQUOT)."""


def storage_full(path: str | Path, needed: int | None = None, at_least: bool = False) -> StorageFullError:
    """The one line for a write to ``path`` that ran out of space: the file, the space still free on its
    file system and, when known, how much the write needed (``at_least``: more than ``needed``, which is
    what it had written when the space ran out)."""
    need = f"needs {'more than ' if at_least else ''}{human_bytes(needed)}, " if needed else ""
    free = free_bytes(path)
    left = f"{human_bytes(free)} free" if free is not None else "free space unknown"
    return StorageFullError(f"{path}: no space left on its file system ({need}{left}); free some space, or "
                            f"write elsewhere")


def out_of_space(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from or during, is ENOSPC/EDQUOT. Libraries wrap
    it: ``torch.save`` raises a RuntimeError during the file's OSError, pyarrow an OSError of its own."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path: str | Path) -> int | None:
    """Bytes free to this user on the file system holding ``path`` (its nearest existing parent)."""
    p = Path(path).absolute()
    for candidate in (p, *p.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize
    return None


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value):,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n:,} bytes"


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
def atomic_path(final: Path, size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; move it into place only if the block succeeds.

    Out of space anywhere in it (creating the folder or the temporary file, writing, renaming) raises
    :class:`StorageFullError` naming ``final``; ``size``, when the caller knows it, is said as the space
    needed, else the size the temporary file had reached (the write needed more than that).
    """
    final = Path(final)
    tmp_path: Path | None = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        tmp_path = Path(tmp)
        try:  # mkstemp makes the file 0600; the user's umask decides who may read what a run writes
            os.fchmod(fd, 0o666 & ~process_umask())
        finally:
            os.close(fd)
        yield tmp_path
        os.replace(tmp_path, final)
    except Exception as exc:
        if not out_of_space(exc):
            raise
        written = _size(tmp_path)
        _remove(tmp_path)  # before measuring what is free: the partial file is not the user's to count
        raise storage_full(final, size or written, at_least=not size) from exc
    finally:
        _remove(tmp_path)


_UMASK: int | None = None


def process_umask() -> int:
    """The process's umask (read once): from ``/proc/self/status`` where Linux has it, else by setting it
    and putting it back (which is not atomic with respect to other threads, hence the cache)."""
    global _UMASK
    if _UMASK is None:
        try:
            status = Path("/proc/self/status").read_text()
            _UMASK = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
        except (OSError, StopIteration, ValueError, IndexError):
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def _remove(path: Path | None) -> None:
    if path is None:
        return
    try:
        path.unlink(missing_ok=True)
    except OSError:  # its folder went away or became unwritable: nothing more can be done here
        pass


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` through a hidden temporary file renamed over it: never a half-written file."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, size=len(payload)) as tmp:
        tmp.write_bytes(payload)


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
    if p.exists() and not p.is_file():  # a FIFO or a device (/dev/null): the atomic rename would replace it
        raise ConfigError(f"{flag} {path}: is not a regular file (a pipe or a device); give a file path")
    check_writable_dir(p.parent if str(p.parent) else Path("."), flag=f"{flag} {path}: its folder")


# --------------------------------------------------------------------------- one rule for a command's paths


def check_path_roles(outputs: list[tuple[str, str | Path | None, bool]],
                     inputs: list[tuple[str, str | Path | None, bool]] = ()) -> None:
    """Raise a one-line :class:`ConfigError` when a command would write over what it reads, or two of its outputs
    would share a place: the one rule every command applies to its paths before any work starts.

    ``outputs`` and ``inputs`` are ``(flag, path, folder)``; a ``folder`` input is read whole (a dataset's folder,
    a results store), a folder output is written anywhere inside (a store, Tune's storage, a leaderboard). Paths
    are compared resolved (``~``, ``..`` and symlinks followed); URIs (``s3://...``) and unset paths are skipped.
    An output may not be an input, nor lie inside an input folder; two outputs may not be the same path, nor may
    one output folder lie inside another (a file written into an output folder, e.g. a summary beside Tune's
    runs, is allowed). Checked by comparing paths only: nothing is created or read.
    """
    from mentor_ray.common.errors import ConfigError

    def resolved(items):
        return [(flag, Path(p).expanduser().resolve(), folder, p) for flag, p, folder in items
                if p is not None and str(p) != "" and "://" not in str(p)]

    outs, ins = resolved(outputs), resolved(inputs)
    for flag, out, _, given in outs:
        for iflag, src, in_folder, igiven in ins:
            if out == src:
                raise ConfigError(f"{flag} {given}: is also {iflag} {igiven}, which this command reads; write "
                                  f"elsewhere (outputs never replace inputs)")
            if in_folder and src in out.parents:
                raise ConfigError(f"{flag} {given}: is inside {iflag} {igiven}, which this command reads; write "
                                  f"outside it")
    for i, (flag, out, out_folder, given) in enumerate(outs):
        for oflag, other, other_folder, ogiven in outs[i + 1:]:
            if out == other:
                raise ConfigError(f"{flag} {given} and {oflag} {ogiven}: the same path; give each its own")
            if (out_folder and other_folder) and (out in other.parents or other in out.parents):
                inner, outer = ((flag, given), (oflag, ogiven)) if other in out.parents else \
                    ((oflag, ogiven), (flag, given))
                raise ConfigError(f"{inner[0]} {inner[1]}: is inside {outer[0]} {outer[1]}; give each its own "
                                  f"folder, side by side")


def dataset_inputs(data_root: str | Path | None, names: list[str]) -> list[tuple[str, Path, bool]]:
    """What a command on datasets ``names`` under ``data_root`` reads, in :func:`check_path_roles`' form: the
    root itself (outputs may sit beside the datasets, not be it) and each dataset's folder (read whole). A name
    that is no single folder name (``../x``) is left to the name check that refuses it."""
    if not data_root:
        return []
    root = Path(data_root).expanduser()
    return [("--data-root", root, False)] + [(f"dataset {d}'s folder", root / d, True) for d in names
                                            if d and "/" not in d and not d.startswith(".")]
