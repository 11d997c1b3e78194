"""The MMRec layout on disk: writing the ``.inter`` table, and the one rule for reading a dataset's files.

Every file a dataset is read from (its ``.inter``, feature files, ``dataset.yaml``, whether named by
``dataset.yaml``, by convention or found by a glob) goes through :func:`confined_file`, then is opened by
:func:`open_regular`. A path that leads outside the dataset's own directory (``/etc/passwd``,
``../other/x.npy``, a symlink out) is refused, so a dataset cannot make mentor_ray read, hash or quote
another file; and anything but a regular file (a FIFO, a device such as ``/dev/zero``, a socket, a
directory) is refused before it is opened, because reading one blocks forever or never ends.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Callable

import pyarrow as pa
import pyarrow.csv as pacsv

from mentor_ray.common.errors import DataError, shown

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def write_inter(table: pa.Table, path: Path) -> None:
    """Write an interaction table as MMRec TSV (header, tab separator, no quoting)."""
    with open(path, "wb") as f:  # pyarrow quotes header names, so the header line is ours
        f.write(("\t".join(table.column_names) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
        pacsv.write_csv(table, f, write_options=options)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def confined_file(directory: Path, value: str | Path, source: str | None = None,
                  missing: str | Callable[[], str] = "file") -> Path:
    """The resolved path of the file ``value`` (relative to ``directory``, or absolute) if it is a regular
    file inside ``directory`` once every symlink is followed; else a one-line :class:`DataError`.

    ``source`` names where ``value`` came from (``.../dataset.yaml: inter_file``) when a user wrote it;
    ``missing`` says what the file is, for the message when it does not exist (a callable is asked only
    then). Only ``stat`` is used: nothing is opened here. The caller reads the returned, resolved path,
    so the file checked is the file read.
    """
    directory = Path(directory)
    path = directory / value
    said = f"{source} = {shown(str(value))}" if source else str(path)
    try:
        root = directory.resolve(strict=True)
        real = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte, a name too long
        raise DataError(f"{said}: cannot be resolved ({_reason(exc)}); a dataset's files must be regular files "
                        f"in {directory}") from None
    if real != root and root not in real.parents:
        raise DataError(f"{said}: leads outside the dataset directory {root} (to {shown(str(real), quote=False)}); "
                        f"a dataset may only read files inside its own directory")
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        what = missing() if callable(missing) else missing
        raise DataError(f"{path}: missing {what}") from None
    except OSError as exc:
        raise DataError(f"{said}: unreadable ({_reason(exc)})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{said}: is {_kind(mode)}; a dataset's files must be regular files")
    return real


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for binary reading, refusing anything that is not a regular file *as opened*.

    Opened non-blocking, so that a FIFO put in place after :func:`confined_file` looked cannot hang the
    open, then checked with ``fstat`` on the open descriptor: what is read is what was checked.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({_reason(exc)})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: is {_kind(mode)}; a dataset's files must be regular files")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else None) or type(exc).__name__
