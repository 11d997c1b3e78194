"""Checkpoints: read with ``weights_only`` (a doctored one runs nothing), and a corrupt newest one falls
back to the previous one in its run folder."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from mentor_ray.common import config
from mentor_ray.common.errors import CheckpointError
from mentor_ray.common.names import STATE_FILE
from mentor_ray.datasets import dataset as data
from mentor_ray.training.ray_train import restore, write_checkpoint
from mentor_ray.training.trainer import Trainer

Checkpoint = pytest.importorskip("ray.train").Checkpoint

TINY = ["embedding_dim=8", "knn_k=5", "batch_size=64", "eval_batch_size=16", "lr=1e-3", "patience=10"]


@pytest.fixture(scope="module")
def ds():
    return data.load_dataset("synth-tiny")


def _trainer(ds, max_epochs: int) -> Trainer:
    cfg = config.make_config(flags={"dataset": "synth-tiny", "variant": "mentor", "max_epochs": max_epochs},
                             overrides=TINY)
    return Trainer(cfg, ds=ds)


@pytest.fixture(scope="module")
def run_folder(ds, tmp_path_factory):
    """A run folder as Ray leaves it: the checkpoints of epochs 1 and 2, and the uninterrupted 4-epoch run."""
    root = tmp_path_factory.mktemp("run")
    for epochs in (1, 2):
        t = _trainer(ds, epochs)
        t.fit()
        (root / f"checkpoint_00000{epochs}").mkdir()
        write_checkpoint(t, root / f"checkpoint_00000{epochs}", [])
    full = _trainer(ds, 4).fit()
    return root, full


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _copy(src, dst, prefix="checkpoint_"):
    """A copy of the run folder, its checkpoints named as Ray Train (``epoch-``) or Tune (``checkpoint_``) does."""
    import shutil

    shutil.copytree(src, dst)
    for d in list(dst.iterdir()):
        d.rename(dst / d.name.replace("checkpoint_", prefix))
    return dst


def _corrupt(path, how: str, marker) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "bit-flipped":
        # A flip inside the pickled structure (torch's zip keeps tensor bytes unchecked, so aim at data.pkl).
        at = raw.index(b"data.pkl") + 200
        path.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :])
    elif how == "bit-flipped tensor":
        at = len(raw) // 2  # the embedding tables fill most of the file
        path.write_bytes(raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :])
    elif how == "code":
        torch.save({"trainer": _Evil(marker), "resumed": []}, path)
    elif how == "missing":
        path.unlink()


def test_a_checkpoint_round_trips_with_weights_only(ds, run_folder, tmp_path):
    root, _ = run_folder
    t = _trainer(ds, 4)
    assert restore(t, Checkpoint(str(root / "checkpoint_000002"))) == [2]
    saved = torch.load(root / "checkpoint_000002" / STATE_FILE, weights_only=True)["trainer"]
    assert t.epoch == 2 and t.history == saved["history"] and t.best == saved["best"]
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, saved["model"][k])
    assert t.optimizer.state_dict()["state"].keys() == saved["optimizer"]["state"].keys()


def test_a_checkpoint_holding_code_runs_nothing(ds, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "checkpoint_000001"
    ckpt.mkdir()
    torch.save({"trainer": _Evil(marker), "resumed": []}, ckpt / STATE_FILE)
    torch.load(ckpt / STATE_FILE, weights_only=False)  # the payload is live: a plain load runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError, match=r"no intact checkpoint to resume from: .*checkpoint_000001 \("):
        restore(_trainer(ds, 2), Checkpoint(str(ckpt)))
    assert not marker.exists()


@pytest.mark.parametrize("how, prefix", [
    ("truncated", "checkpoint_"), ("empty", "epoch-"), ("bit-flipped", "checkpoint_"),
    ("bit-flipped tensor", "epoch-"), ("code", "checkpoint_"), ("missing", "epoch-"),
])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(ds, run_folder, tmp_path, how, prefix, caplog):
    root, full = run_folder
    folder = _copy(root, tmp_path / "run", prefix)
    (folder / "unrelated-000009").mkdir()  # not a checkpoint of this run: never tried
    marker = tmp_path / "pwned"
    newest, previous = folder / f"{prefix}000002", folder / f"{prefix}000001"
    _corrupt(newest / STATE_FILE, how, marker)
    t = _trainer(ds, 4)
    with caplog.at_level(logging.WARNING, logger="mentor_ray.training.ray_train"):
        resumed = restore(t, Checkpoint(str(newest)))
    assert resumed == [1] and t.epoch == 1
    text = caplog.text
    assert f"checkpoint {newest} is corrupt" in text
    assert f"resumed from the older checkpoint {previous} (epoch 1)" in text
    assert not marker.exists()
    end = t.fit()  # every epoch re-seeds from (seed, epoch): the same end as the uninterrupted run
    assert end["valid"] == full["valid"] and end["test"] == full["test"] and end["best_epoch"] == full["best_epoch"]


def test_with_every_checkpoint_corrupt_the_error_names_them(ds, run_folder, tmp_path):
    root, _ = run_folder
    folder = _copy(root, tmp_path / "run")
    for name in ("checkpoint_000001", "checkpoint_000002"):
        _corrupt(folder / name / STATE_FILE, "truncated", None)
    with pytest.raises(CheckpointError) as err:
        restore(_trainer(ds, 4), Checkpoint(str(folder / "checkpoint_000002")))
    msg = str(err.value)
    assert "checkpoint_000002 (" in msg and "checkpoint_000001 (" in msg and "Delete the run folder" in msg
    assert "\n" not in msg
