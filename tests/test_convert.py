"""convert-diffmm: the DiffMM pickle layout to the MMRec layout, values unchanged."""

from __future__ import annotations

import os
import pickle

import numpy as np
import scipy.sparse as sp

from mentor_ray import data as data_cmd
from mentor_ray.cli import run
from mentor_ray.datasets import dataset as data


def _diffmm(tmp_path, with_val=True):
    src = tmp_path / "diffmm"
    src.mkdir()
    rng = np.random.default_rng(1)
    n_users, n_items = 7, 9
    dense = rng.integers(0, 3, size=(n_users, n_items)).astype(np.float32)  # 0 = no interaction
    splits = rng.integers(0, 3, size=dense.shape)
    mats = {}
    for label, fname in enumerate(["trnMat.pkl", "valMat.pkl", "tstMat.pkl"]):
        m = sp.coo_matrix(np.where(splits == label, dense, 0))
        mats[label] = m
        if fname == "valMat.pkl" and not with_val:
            continue
        with open(src / fname, "wb") as f:
            pickle.dump(m, f)
    feats = {"image": rng.random((n_items, 5)).astype(np.float16), "audio": rng.random((n_items, 3))}
    for name, arr in feats.items():
        np.save(src / f"{name}_feat.npy", arr)
    return src, mats, feats


def test_convert_keeps_every_value(tmp_path, capsys):
    src, mats, feats = _diffmm(tmp_path)
    assert run(data_cmd.main, ["convert-diffmm", str(src), str(tmp_path / "out"), "--name", "tt"]) == 0
    out = tmp_path / "out" / "tt"
    table = data.pacsv.read_csv(out / "tt.inter", parse_options=data.pacsv.ParseOptions(delimiter="\t"))
    columns = (table[c].to_pylist() for c in ("userID", "itemID", "rating", "x_label"))
    got = {(u, i, lab): r for u, i, r, lab in zip(*columns)}
    want = {(int(u), int(i), lab): float(v) for lab, m in mats.items() for u, i, v in zip(m.row, m.col, m.data)}
    assert got == want
    for name in feats:
        assert (out / f"{name}_feat.npy").read_bytes() == (src / f"{name}_feat.npy").read_bytes()
    ds = data.load_dataset("tt", tmp_path / "out")
    assert len(ds.train) == mats[0].nnz and len(ds.valid) == mats[1].nnz and len(ds.test) == mats[2].nnz
    assert "tt" in capsys.readouterr().out


def test_convert_missing_pickle_leaves_nothing(tmp_path, capsys):
    src, _, _ = _diffmm(tmp_path, with_val=False)
    dst = tmp_path / "out"
    assert run(data_cmd.main, ["convert-diffmm", str(src), str(dst), "--name", "tt"]) == 2
    err = capsys.readouterr().err
    assert "valMat.pkl: missing file" in err and err.count("\n") == 1
    assert not (dst / "tt").exists()
    assert not any(p.name.startswith(".tt") for p in dst.iterdir()) if dst.exists() else True


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_convert_refuses_code_in_pickles(tmp_path, capsys):
    src, _, _ = _diffmm(tmp_path)
    with open(src / "tstMat.pkl", "wb") as f:
        pickle.dump(_Evil(), f)
    assert run(data_cmd.main, ["convert-diffmm", str(src), str(tmp_path / "out"), "--name", "tt"]) == 2
    assert "refusing to load" in capsys.readouterr().err


def test_convert_will_not_overwrite(tmp_path, capsys):
    src, _, _ = _diffmm(tmp_path)
    (tmp_path / "out" / "tt").mkdir(parents=True)
    assert run(data_cmd.main, ["convert-diffmm", str(src), str(tmp_path / "out"), "--name", "tt"]) == 2
    assert "already exists" in capsys.readouterr().err
