"""The MMRec data layer: loading, cold users and items, caching, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from mentor_ray import data as data_cmd
from mentor_ray.cli import run
from mentor_ray.common.errors import DataError
from mentor_ray.datasets import dataset as data
from tests.conftest import REPO, write_dataset


def _train_items(ds, user: int):
    indptr, items = ds.train_csr
    return items[indptr[user] : indptr[user + 1]]

def test_loads_toy_dataset_with_cold_users_and_items(tmp_path):
    write_dataset(tmp_path)
    ds = data.load_dataset("toy", tmp_path)
    assert (ds.n_users, ds.n_items) == (4, 6)
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (5, 2, 2)
    assert ds.modalities == ["image", "text"]
    assert all(f.dtype == torch.float32 for f in ds.features.values())
    assert ds.feature_dtypes == {"image": "float16", "text": "float64"}
    assert _train_items(ds, 0).tolist() == [0, 1]
    assert _train_items(ds, 2).tolist() == []
    s = ds.summary()
    assert s["cold_users"] == 1 and s["cold_users_in_valid"] == 1 and s["cold_users_in_test"] == 0
    assert s["cold_items"] == 3  # items 2, 3, 5 have no training interaction
    assert s["valid_interactions_on_cold_items"] == 2 and s["test_interactions_on_cold_items"] == 2


def test_train_csr_matches_interactions(tmp_path):
    ds = data.load_dataset("synth-tiny")
    indptr, items = ds.train_csr
    assert indptr[-1] == len(ds.train)
    for u in range(ds.n_users):
        expected = sorted(ds.train.items[ds.train.users == u].tolist())
        assert _train_items(ds, u).tolist() == expected


def test_tiktok_statistics(tiktok_root):
    ds = data.load_dataset("tiktok", tiktok_root)
    s = ds.summary()
    assert (s["users"], s["items"]) == (9308, 6710)
    assert s["interactions"] == {"train": 59541, "valid": 3051, "test": 6130}
    assert {m: v["dim"] for m, v in s["modalities"].items()} == {"audio": 128, "image": 128}
    assert s["modalities"]["image"]["dtype_on_disk"] == "float16"
    assert (s["cold_users"], s["cold_users_in_valid"], s["cold_users_in_test"]) == (10, 5, 5)
    assert (s["valid_interactions_on_cold_items"], s["test_interactions_on_cold_items"]) == (223, 449)
    assert ds.features["audio"].dtype == torch.float32


def test_info_command_prints_statistics(tiktok_root, capsys):
    assert run(data_cmd.main, ["info", "--dataset", "tiktok", "--data-root", str(tiktok_root)]) == 0
    out = capsys.readouterr().out
    assert "9,308" in out and "6,710" in out and "59,541 / valid 3,051 / test 6,130" in out
    assert "audio 128-d" in out and "image 128-d" in out and "10 without training interactions" in out


def test_parquet_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    d = write_dataset(tmp_path)
    first = data.load_dataset("toy", tmp_path)
    calls = []
    monkeypatch.setattr(data, "parse_inter", lambda *a, **k: calls.append(1) or real_parse(*a, **k))
    second = data.load_dataset("toy", tmp_path)
    assert calls == [] and second.content_hash == first.content_hash
    np.testing.assert_array_equal(second.train.items, first.train.items)
    with open(d / "toy.inter", "a") as f:  # a source change must invalidate the cache
        f.write("3\t4\t1\t0\t0\n")
    third = data.load_dataset("toy", tmp_path)
    assert calls == [1] and len(third.train) == len(first.train) + 1
    assert third.content_hash != first.content_hash


real_parse = data.parse_inter


def test_duplicates_within_a_split_are_dropped_with_a_warning(tmp_path, caplog):
    rows = [(0, 0, 1, 0, 0), (0, 0, 1, 0, 0), (0, 1, 1, 0, 1), (1, 2, 1, 0, 2)]
    write_dataset(tmp_path, rows=rows)
    ds = data.load_dataset("toy", tmp_path)
    assert len(ds.train) == 1
    assert "dropped 1 duplicate" in caplog.text


def test_dataset_yaml_renames_files_columns_and_separator(tmp_path):
    d = tmp_path / "custom"
    d.mkdir()
    (d / "events.csv").write_text("u,i,split\n0,0,0\n0,1,1\n1,1,0\n1,0,2\n")
    np.save(d / "pixels.npy", np.eye(2, dtype=np.float32))
    (d / "dataset.yaml").write_text(
        "inter_file: events.csv\nseparator: ','\ncolumns: {user: u, item: i, split: split}\n"
        "modalities: {vision: pixels.npy}\n"
    )
    ds = data.load_dataset("custom", tmp_path)
    assert ds.modalities == ["vision"] and len(ds.train) == 2 and ds.n_items == 2


def test_discover_datasets(tmp_path):
    write_dataset(tmp_path, "a")
    write_dataset(tmp_path, "b")
    (tmp_path / "not_a_dataset").mkdir()
    assert data.discover_datasets(tmp_path) == ["a", "b"]


# --------------------------------------------------------------------------- bad input


def _case(tmp_path, kind):
    """Build one broken dataset; return the file name the error must name and a message fragment."""
    rng = np.random.default_rng(0)
    if kind == "missing_inter":
        d = write_dataset(tmp_path)
        (d / "toy.inter").unlink()
        return "toy.inter", "missing interaction file"
    if kind == "missing_column":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0)], header="userID\titemID\trating\ttimestamp")
        return "toy.inter", "missing column x_label"
    if kind == "non_integer_id":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), ("bob", 1, 1, 0, 0)])
        return "toy.inter", "userID = 'bob' at line 3; expected a non-negative integer"
    if kind == "fractional_id":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), (1, 1.5, 1, 0, 0)])
        return "toy.inter", "itemID = 1.5 at line 3"
    if kind == "empty_value":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), (1, "", 1, 0, 0)])
        return "toy.inter", "column itemID is empty at line 3"
    if kind == "negative_id":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), (-1, 1, 1, 0, 0)])
        return "toy.inter", "userID = -1 at line 3; ids must be non-negative"
    if kind == "item_beyond_features":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), (0, 7, 1, 0, 0)])
        return "toy.inter", "itemID 7 (row 2) >= 6, the number of rows in"
    if kind == "row_counts_differ":
        write_dataset(tmp_path, features={"image": rng.random((6, 2)), "text": rng.random((5, 2))})
        return "text_feat.npy", "5 rows but image_feat.npy has 6"
    if kind == "nan_feature":
        f = rng.random((6, 2))
        f[4, 1] = np.nan
        write_dataset(tmp_path, features={"image": f})
        return "image_feat.npy", "NaN or Inf in row 4"
    if kind == "inf_feature":
        f = rng.random((6, 2)).astype(np.float16)
        f[2, 0] = np.inf
        write_dataset(tmp_path, features={"image": f})
        return "image_feat.npy", "NaN or Inf in row 2"
    if kind == "integer_feature":
        write_dataset(tmp_path, features={"image": np.ones((6, 2), dtype=np.int32)})
        return "image_feat.npy", "features must be a float dtype"
    if kind == "unreadable_npy":
        d = write_dataset(tmp_path)
        (d / "image_feat.npy").write_bytes(b"this is not numpy")
        return "image_feat.npy", "unreadable .npy file"
    if kind == "empty_train":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 1), (0, 1, 1, 0, 2)])
        return "toy.inter", "the train split is empty"
    if kind == "bad_x_label":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), (0, 1, 1, 0, 3)])
        return "toy.inter", "x_label = 3 at line 3; allowed: 0 (train), 1 (valid), 2 (test)"
    if kind == "pair_in_two_splits":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), (0, 1, 1, 0, 0), (0, 0, 1, 0, 2)])
        return "toy.inter", "user 0 item 0 is in split train (line 2) and in split test (line 4)"
    if kind == "yaml_unknown_key":
        d = write_dataset(tmp_path)
        (d / "dataset.yaml").write_text("colums: {user: u}\n")
        return "dataset.yaml", "unknown key 'colums'; allowed keys: columns, inter_file, modalities, separator"
    if kind == "yaml_missing_modality_file":
        d = write_dataset(tmp_path)
        (d / "dataset.yaml").write_text("modalities: {image: nope.npy}\n")
        return "nope.npy", "missing feature file for modality 'image'"
    if kind == "empty_valid":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), (0, 1, 1, 0, 2)])
        return "toy.inter", "the valid split is empty (no row with x_label = 1)"
    if kind == "empty_test":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), (0, 1, 1, 0, 1)])
        return "toy.inter", "the test split is empty (no row with x_label = 2)"
    if kind == "huge_id":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), (0, 1, 1, 0, 1), (0, 2, 1, 0, 2), (10**18, 1, 1, 0, 0)])
        return "toy.inter", f"userID = {10**18} at line 5; ids index tables sized by the largest id"
    if kind == "inf_id":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0), ("inf", 1, 1, 0, 0)])
        return "toy.inter", "userID = 'inf' at line 3; expected a non-negative integer"
    if kind == "duplicate_column":
        write_dataset(tmp_path, rows=[(0, 0, 1, 0, 0)], header="userID\titemID\titemID\ttimestamp\tx_label")
        return "toy.inter", "column 'itemID' appears twice in the header (columns 2 and 3)"
    if kind == "float32_overflow":
        f = np.ones((6, 2))
        f[1, 0] = -1e300
        write_dataset(tmp_path, features={"image": f})
        return "image_feat.npy", "value -1e+300 in row 1, column 0 is beyond float32's range"
    if kind == "zero_width_feature":
        write_dataset(tmp_path, features={"image": np.ones((6, 0), dtype=np.float32)})
        return "image_feat.npy", "shape (6, 0) has no columns"
    if kind == "yaml_inter_outside":
        d = write_dataset(tmp_path)
        (d / "dataset.yaml").write_text(f"inter_file: ../{d.name}/../other.inter\n")
        (tmp_path / "other.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n")
        return "dataset.yaml: inter_file", "leads outside the dataset directory"
    if kind == "unknown_dataset":
        write_dataset(tmp_path, "other")
        return "toy", "no directory"
    raise AssertionError(kind)


BAD_CASES = [
    "missing_inter", "missing_column", "non_integer_id", "fractional_id", "empty_value", "negative_id",
    "item_beyond_features", "row_counts_differ", "nan_feature", "inf_feature", "integer_feature",
    "unreadable_npy", "empty_train", "bad_x_label", "pair_in_two_splits", "yaml_unknown_key",
    "yaml_missing_modality_file", "unknown_dataset", "empty_valid", "empty_test", "huge_id", "inf_id",
    "duplicate_column", "float32_overflow", "zero_width_feature", "yaml_inter_outside",
]


@pytest.mark.parametrize("kind", BAD_CASES)
def test_bad_input_is_one_line_error_naming_the_file(tmp_path, capsys, kind):
    file_name, fragment = _case(tmp_path, kind)
    rc = run(data_cmd.main, ["info", "--dataset", "toy", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and err.startswith("error: ")
    assert file_name in err and fragment in err, err


def test_unknown_synthetic_preset():
    with pytest.raises(DataError, match="unknown synthetic preset; allowed: synth-tiny, synth-small"):
        data.load_dataset("synth-huge")


def test_command_line_exit_code_and_single_line(tmp_path):
    write_dataset(tmp_path, rows=[(0, 0, 1, 0, 9)])
    proc = subprocess.run(
        [sys.executable, "-m", "mentor_ray.data", "info", "--dataset", "toy", "--data-root", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'toy' / 'toy.inter'}: x_label = 9 at line 2; allowed: 0 (train), 1 (valid), 2 (test)"
    ]
