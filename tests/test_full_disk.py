"""A full disk: every write is one ``error:`` line naming the file and the space, and leaves nothing half-written;
a Ray Train run whose snapshot was torn (as a full disk leaves it) continues from its newest intact checkpoint.

The full disk is a 2 MB tmpfs, mounted for each test (root only; skipped where mounting is not allowed)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mentor_ray.common.io import StorageFullError, atomic_path, write_atomic, write_json_atomic

TINY = ["embedding_dim=8", "knn_k=5", "batch_size=64", "eval_batch_size=16", "lr=1e-3", "patience=10"]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB file system of its own, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    disk = tmp_path / "disk"
    disk.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if out.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip() or out.returncode})")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)  # still busy: detach it


def _fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` up to ``leave`` bytes free (0: to the last block)."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        if leave:
            os.write(fd, b"\0" * (shutil.disk_usage(disk).free - leave))
            return
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _only_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg
    return msg


def test_a_write_onto_a_full_disk_is_one_line_naming_the_file_and_leaves_no_temporary_file(small_disk):
    target = small_disk / "big.bin"
    with pytest.raises(StorageFullError) as err:
        write_atomic(target, b"x" * (3 << 20))
    msg = _only_line(err.value)
    assert msg.startswith(f"{target}: no space left on its file system (needs 3.0 MB, ")
    assert " free); free some space, or write elsewhere" in msg
    assert os.listdir(small_disk) == []  # the partial temporary file is gone

    _fill(small_disk)
    with pytest.raises(StorageFullError, match=rf"^{small_disk / 'run.json'}: no space left on its file system"):
        write_json_atomic(small_disk / "run.json", {"values": list(range(5000))})
    assert os.listdir(small_disk) == ["filler"]


def test_a_library_that_wraps_the_full_disk_error_still_gives_the_one_line(small_disk):
    """torch.save turns the file's ENOSPC into a RuntimeError of its own: the atomic writer still knows it."""
    torch = pytest.importorskip("torch")
    target = small_disk / "state.pt"
    with pytest.raises(StorageFullError, match=rf"^{target}: no space left on its file system \(needs more than "):
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            torch.save({"w": torch.zeros(1 << 20)}, f)  # 4 MB
    assert os.listdir(small_disk) == []


def test_a_results_store_write_onto_a_full_disk_leaves_no_partial_parquet(small_disk):
    from mentor_ray.report import results
    from tests.test_results import _summary

    _fill(small_disk, leave=4096)  # room for the temporary file, not for the run's rows
    with pytest.raises(StorageFullError) as err:
        results.record(small_disk, _summary(), "final", "s")
    msg = _only_line(err.value)
    assert msg.startswith(f"{small_disk}/final-synth-tiny-") and ".parquet: no space left on its file system" in msg
    assert os.listdir(small_disk) == ["filler"]  # neither the run's file nor its hidden temporary one
    assert results.read_results(small_disk).num_rows == 0


def test_the_train_command_says_a_full_disk_in_one_line(small_disk, capsys):
    from mentor_ray import train as train_cmd
    from mentor_ray.cli import run

    _fill(small_disk)
    summary = small_disk / "summary.json"
    rc = run(train_cmd.main, ["--dataset", "synth-tiny", "--max-epochs", "1", "--summary", str(summary), *TINY])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"error: {summary}: no space left on its file system (needs ")
    assert os.listdir(small_disk) == ["filler"]


@pytest.mark.driver
@pytest.mark.slow
def test_a_torn_train_snapshot_resumes_from_the_newest_intact_checkpoint(local_ray, tmp_path, capsys):
    """A full disk while Ray writes its run snapshot leaves it empty; the newest checkpoint may be cut short too.
    Re-running continues from the newest checkpoint that checks out (Ray alone would fail on every re-run with
    CheckpointManagerInitializationError), and the torn snapshot is kept aside."""
    from mentor_ray import train as train_cmd
    from mentor_ray.cli import run

    storage = tmp_path / "runs"
    args = ["--dataset", "synth-tiny", "--workers", "1", "--storage", str(storage), *TINY]
    assert run(train_cmd.main, [*args, "--max-epochs", "2"]) == 0
    (folder,) = [p for p in storage.iterdir() if p.is_dir()]
    snapshot = folder / "checkpoint_manager_snapshot.json"
    assert sorted(p.name for p in folder.glob("epoch-*")) == ["epoch-00000", "epoch-00001"]
    snapshot.write_bytes(b"")  # as a full disk leaves it
    state = folder / "epoch-00001" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # and the newest checkpoint cut short

    summary = tmp_path / "summary.json"
    capsys.readouterr()
    rc = run(train_cmd.main, [*args, "--max-epochs", "4", "--summary", str(summary)])
    assert rc == 0, capsys.readouterr().err
    done = json.loads(summary.read_text())
    assert done["resumed_at_epochs"] == [1] and done["epochs_run"] == 4  # from epoch-00000's state
    (aside,) = folder.glob("checkpoint_manager_snapshot.json.torn-*")
    assert aside.stat().st_size == 0 and json.loads(snapshot.read_text())["checkpoint_results"]
    (torn,) = folder.glob("epoch-00001.torn-*")  # kept, and out of the way of the run's new epoch-00001
    assert (torn / "trainer_state.pt").stat().st_size == 100

    snapshot.write_text('{"ray_version": "2.60.0", "checkpoint_res')  # torn mid-way this time
    rc = run(train_cmd.main, [*args, "--max-epochs", "5", "--summary", str(summary)])
    assert rc == 0, capsys.readouterr().err
    assert json.loads(summary.read_text())["resumed_at_epochs"] == [1, 4]  # the newest, intact this time


@pytest.mark.driver
@pytest.mark.slow
def test_a_ray_train_run_whose_storage_fills_up_is_one_line_and_a_rerun_starts_clean(local_ray, small_disk, capsys):
    """The disk fills while Ray copies the first checkpoint to the storage: one line naming the run's folder;
    with space again, the same command runs (the cut-short checkpoint set aside, not resumed from)."""
    from mentor_ray import train as train_cmd
    from mentor_ray.cli import run

    storage = small_disk / "runs"
    args = ["--dataset", "synth-tiny", "--workers", "1", "--storage", str(storage), "--max-epochs", "2",
            "--max-failures", "0", *TINY]
    _fill(small_disk, leave=60 << 10)  # room for the lock and Ray's markers, not for a checkpoint
    capsys.readouterr()
    assert run(train_cmd.main, args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    (folder,) = storage.iterdir()
    assert len(errors) == 1 and errors[0].startswith(f"error: Ray Train run {folder.name}: {folder}")
    assert "no space left on its file system" in errors[0]
    (small_disk / "filler").unlink()
    assert run(train_cmd.main, args) == 0
    assert sorted(p.name for p in folder.glob("epoch-0000?")) == ["epoch-00000", "epoch-00001"]
