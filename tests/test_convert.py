"""convert-diffmm: the DiffMM pickle layout to the MMRec layout, values unchanged."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from mentor_ray import data as data_cmd
from mentor_ray.cli import run
from mentor_ray.common.errors import DataError
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets.convert import _load_sparse_pickle


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


def _global_call(module: str, name: str, *args) -> bytes:
    """A protocol-0 pickle that calls ``module.name(*args)`` (string arguments): what an attacker writes."""
    body = b"".join(b"V" + a.encode("raw_unicode_escape") + b"\n" for a in args)
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n(" + body + b"tR."


def _payloads(marker: Path) -> dict[str, bytes]:
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    return {
        "os.system": _global_call("os", "system", f"touch {marker}"),
        "builtins.exec": _global_call("builtins", "exec", code),
        # The numpy.* route: a numpy function that runs a string of code.
        "numpy.testing runstring": _global_call("numpy.testing._private.utils", "runstring", code)[:-3]
        + b"(dtR.",
        "scipy.sparse, not a matrix class": _global_call("scipy.sparse._sputils", "get_index_dtype"),
        "codecs other than latin1": _global_call("_codecs", "encode", "x", "rot13"),
    }


def test_malicious_pickles_run_nothing(tmp_path, capsys):
    src, _, _ = _diffmm(tmp_path)
    marker = tmp_path / "pwned"
    # The payloads are live: plain pickle runs them (the numpy.* one included).
    for label in ("builtins.exec", "numpy.testing runstring"):
        pickle.loads(_payloads(marker)[label])
        assert marker.exists(), label
        marker.unlink()
    for label, payload in _payloads(marker).items():
        (src / "tstMat.pkl").write_bytes(payload)
        assert run(data_cmd.main, ["convert-diffmm", str(src), str(tmp_path / "out"), "--name", "tt"]) == 2, label
        err = capsys.readouterr().err
        assert "tstMat.pkl: unreadable pickle" in err and "refusing" in err, (label, err)
        assert err.count("\n") == 1, err
        assert not marker.exists(), label
        assert not (tmp_path / "out" / "tt").exists()


def test_an_object_array_inside_a_matrix_cannot_smuggle_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    m = sp.coo_matrix(np.eye(3))
    m.data = np.array([Evil(), 1.0, 1.0], dtype=object)
    with pytest.raises(DataError, match="refusing to load (posix|nt).system"):
        path = tmp_path / "m.pkl"
        path.write_bytes(pickle.dumps(m))
        _load_sparse_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["coo", "csr", "csc", "dok", "lil", "bsr", "dia"])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_every_sparse_format_and_protocol_still_loads(tmp_path, fmt, protocol):
    m = sp.random(6, 5, density=0.4, format=fmt, dtype=np.float32, random_state=0)
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(m, protocol=protocol))
    assert (_load_sparse_pickle(path).toarray() == m.toarray()).all()


def test_pickles_from_older_scipy_module_paths_load(tmp_path):
    # scipy < 1.8 defined coo_matrix in scipy.sparse.coo; DiffMM's files were written then.
    m = sp.coo_matrix(np.arange(6, dtype=np.float32).reshape(2, 3))
    raw = pickle.dumps(m, protocol=2)
    old = raw.replace(b"scipy.sparse._coo", b"scipy.sparse.coo")
    assert old != raw
    path = tmp_path / "m.pkl"
    path.write_bytes(old)
    assert (_load_sparse_pickle(path).toarray() == m.toarray()).all()


def test_convert_will_not_overwrite(tmp_path, capsys):
    src, _, _ = _diffmm(tmp_path)
    (tmp_path / "out" / "tt").mkdir(parents=True)
    assert run(data_cmd.main, ["convert-diffmm", str(src), str(tmp_path / "out"), "--name", "tt"]) == 2
    assert "already exists" in capsys.readouterr().err
