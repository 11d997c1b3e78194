"""#24: what a dataset, a cache entry, a results file or a DiffMM conversion makes mentor_ray read.

Each family is driven by generated variants (hypothesis) or a table of cases, against an oracle written
here from the rule, not from the code: either the input loads and is what it should be, or it is refused
with one ``DataError``/``ConfigError`` line (at most 600 characters) that never quotes a file outside the
dataset. FIFOs are real (``os.mkfifo``) and every test that meets one has a timeout: a hang fails it.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mentor_ray import data as data_cmd
from mentor_ray.cli import run
from mentor_ray.common import io as cache
from mentor_ray.common.errors import ConfigError, DataError
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets import graphs, synthetic
from mentor_ray.datasets.convert import _load_sparse_pickle, convert_diffmm
from mentor_ray.report import results
from tests.conftest import write_dataset

SECRET = "TOP-SECRET-first-line-of-a-file-outside-the-dataset"
GENERATED = settings(max_examples=40, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def one_line(exc: BaseException) -> str:
    """The message of ``exc``, asserted to be one line of at most 600 characters without the secret."""
    message = str(exc)
    assert "\n" not in message and len(message) <= 600, message
    assert SECRET not in message, message
    return message


def refused(fn, *args, **kwargs) -> str:
    with pytest.raises((DataError, ConfigError)) as info:
        fn(*args, **kwargs)
    return one_line(info.value)


def _fresh(parent: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=parent))


# --------------------------------------------------------------------------- 1. paths stay in the dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A dataset ``toy`` with links and special files in it, and files outside it that would load if read."""
    root = tmp_path_factory.mktemp("world")
    d = write_dataset(root / "data")
    outside = root / "outside"
    outside.mkdir()
    # Outside files that are valid inputs: only confinement can refuse them. The .inter's header carries
    # the secret, so an error quoting its header would show it.
    (outside / "secret.inter").write_text(f"userID\titemID\tx_label\t{SECRET}\n0\t0\t0\t1\n0\t1\t1\t1\n0\t2\t2\t1\n")
    np.save(outside / "secret_feat.npy", np.ones((6, 2)))
    (outside / "passwd").write_text(f"{SECRET}:x:0:0:root:/root:/bin/bash\n")
    (d / "sub").mkdir()
    shutil.copy(d / "toy.inter", d / "sub" / "copy.inter")
    shutil.copy(d / "image_feat.npy", d / "sub" / "feat.npy")
    (d / "in_link.inter").symlink_to("sub/copy.inter")
    (d / "in_link.npy").symlink_to("sub/feat.npy")
    (d / "out_link.inter").symlink_to(outside / "secret.inter")
    (d / "out_link.npy").symlink_to(outside / "secret_feat.npy")
    (d / "dotdot_link").symlink_to("../../outside/passwd")
    (d / "zero_link").symlink_to("/dev/zero")
    (d / "loop").symlink_to("loop")
    (d / "dangling").symlink_to("nowhere")
    (d / "adir").mkdir()
    os.mkfifo(d / "fifo")
    return {"root": root, "dir": d, "outside": outside}


PARTS = ["..", ".", "", "sub", "copy.inter", "feat.npy", "toy.inter", "image_feat.npy", "in_link.inter",
         "in_link.npy", "out_link.inter", "out_link.npy", "dotdot_link", "zero_link", "loop", "dangling", "adir",
         "fifo", "outside", "secret.inter", "secret_feat.npy", "passwd", "data", "toy", "dataset.yaml", "nope"]


def _path_value(draw, w) -> str:
    """A path as a user might write one in dataset.yaml: relative with .. and links, or absolute."""
    rel = "/".join(draw(st.lists(st.sampled_from(PARTS), min_size=1, max_size=6)))
    absolute = draw(st.sampled_from([
        str(w["root"]), str(w["outside"] / "secret.inter"), str(w["outside"] / "passwd"), "/etc/passwd",
        "/dev/zero", "/dev/null", "/proc/self/environ", str(w["dir"] / "toy.inter"), str(w["dir"] / "sub")]))
    return draw(st.sampled_from([rel, absolute, f"{absolute}/{rel}"]))


def _expect(w, value: str, valid: set[str]) -> tuple[bool, bool]:
    """(loads, leaves the directory) by the rule: the target, all links followed, is a regular file inside."""
    droot = os.path.realpath(w["dir"])
    real = os.path.realpath(os.path.join(w["dir"], value))
    inside = real == droot or real.startswith(droot + os.sep)
    return inside and os.path.isfile(real) and real in valid, not inside


@pytest.mark.timeout(60)
@GENERATED
@given(pick=st.data())
def test_inter_file_must_resolve_to_a_regular_file_inside_the_dataset(world, pick):
    w, d = world, world["dir"]
    value = _path_value(pick.draw, w)
    (d / "dataset.yaml").write_text(yaml.safe_dump({"inter_file": value}))
    loads, leaves = _expect(w, value, {os.path.realpath(d / "toy.inter"), os.path.realpath(d / "sub/copy.inter")})
    if loads:
        assert len(data.load_dataset_dir(d).train) == 5
        return
    message = refused(data.load_dataset_dir, d)
    if leaves:
        assert "outside the dataset directory" in message or "cannot be resolved" in message, message


@pytest.mark.timeout(60)
@GENERATED
@given(pick=st.data())
def test_feature_files_must_resolve_to_regular_files_inside_the_dataset(world, pick):
    w, d = world, world["dir"]
    value = _path_value(pick.draw, w)
    (d / "dataset.yaml").write_text(yaml.safe_dump({"modalities": {"image": value}}))
    loads, leaves = _expect(w, value, {os.path.realpath(d / "image_feat.npy"), os.path.realpath(d / "sub/feat.npy")})
    if loads:
        ds = data.load_dataset_dir(d)
        assert ds.modalities == ["image"] and tuple(ds.features["image"].shape) == (6, 4)
        return
    message = refused(data.load_dataset_dir, d)
    if leaves:
        assert "outside the dataset directory" in message or "cannot be resolved" in message, message


def test_a_path_with_a_nul_byte_or_too_long_is_one_line(world):
    d = world["dir"]
    for value in ("a\0b.inter", "x" * 5000, "/".join(["sub"] * 3000)):
        (d / "dataset.yaml").write_text(yaml.safe_dump({"inter_file": value}))
        message = refused(data.load_dataset_dir, d)
        assert "dataset.yaml: inter_file" in message and len(message) < 600
    (d / "dataset.yaml").unlink()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", ["inter link out", "feature link out", "feature link to /dev/zero",
                                  "yaml link out", "yaml dangling link", "inter is a FIFO", "feature is a FIFO",
                                  "yaml is a FIFO", "feature is a directory", "feature is a socket",
                                  "inter is a directory"])
def test_files_found_by_name_are_confined_and_regular(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text(f"{SECRET}\tuserID\titemID\tx_label\n")
    np.save(outside / "good_feat.npy", np.ones((6, 2)))
    d = write_dataset(tmp_path / "data")
    target = {"inter link out": "toy.inter", "feature link out": "image_feat.npy",
              "feature link to /dev/zero": "image_feat.npy", "yaml link out": "dataset.yaml",
              "yaml dangling link": "dataset.yaml", "inter is a FIFO": "toy.inter",
              "feature is a FIFO": "audio_feat.npy", "yaml is a FIFO": "dataset.yaml",
              "feature is a directory": "audio_feat.npy", "feature is a socket": "audio_feat.npy",
              "inter is a directory": "toy.inter"}[case]
    if (d / target).exists():
        (d / target).unlink()
    if case == "inter link out":
        (d / target).symlink_to(outside / "passwd")
    elif case == "feature link out":
        (d / target).symlink_to(outside / "good_feat.npy")
    elif case == "feature link to /dev/zero":
        (d / target).symlink_to("/dev/zero")
    elif case == "yaml link out":
        (d / target).symlink_to(outside / "passwd")
    elif case == "yaml dangling link":
        (d / target).symlink_to("nowhere.yaml")
    elif "FIFO" in case:
        os.mkfifo(d / target)
    elif "directory" in case:
        (d / target).mkdir()
    elif "socket" in case:
        cwd = os.getcwd()
        os.chdir(d)  # a socket path may have at most ~108 bytes: bind by a short relative name
        try:
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(target)
        finally:
            os.chdir(cwd)
    message = refused(data.load_dataset, "toy", tmp_path / "data")
    assert target in message
    kind = {"FIFO": "named pipe (FIFO)", "directory": "is a directory", "socket": "is a socket",
            "dangling": "missing", "out": "outside the dataset directory", "zero": "outside the dataset directory"}
    assert any(word in case and text in message for word, text in kind.items()), message


def test_a_dataset_directory_that_is_a_link_loads(tmp_path):
    write_dataset(tmp_path / "real")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "toy").symlink_to(tmp_path / "real" / "toy")
    assert len(data.load_dataset("toy", tmp_path / "data").train) == 5


def test_inter_file_etc_passwd_on_the_command_line(tmp_path, capsys):
    d = write_dataset(tmp_path)
    (d / "dataset.yaml").write_text("inter_file: /etc/passwd\n")
    assert run(data_cmd.main, ["info", "--dataset", "toy", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inter_file = '/etc/passwd': leads outside the dataset directory" in err
    if Path("/etc/passwd").is_file():
        first = Path("/etc/passwd").read_text().splitlines()[0]
        assert first not in err


def test_dataset_names_are_one_path_component(tmp_path):
    with pytest.raises(ConfigError, match="not allowed as a name"):
        data.load_dataset("../toy", tmp_path)
    d = write_dataset(tmp_path, "bad name")
    assert "not allowed as a name" in refused(data.load_dataset_dir, d)


@pytest.mark.parametrize("bad", [{"separator": "::"}, {"separator": "\n"}, {"separator": ""},
                                 {"columns": {"user": "a", "item": "a"}}, {"modalities": {"a/b": "image_feat.npy"}},
                                 {"inter_file": ["x"] * 5000}])
def test_dataset_yaml_values_are_checked(tmp_path, bad):
    d = write_dataset(tmp_path)
    (d / "dataset.yaml").write_text(yaml.safe_dump(bad))
    assert "dataset.yaml" in refused(data.load_dataset_dir, d)


def test_dataset_yaml_goes_through_the_one_yaml_reader(tmp_path):
    d = write_dataset(tmp_path)
    (d / "dataset.yaml").write_text("separator: ','\nseparator: ';'\n")
    assert "appears twice" in refused(data.load_dataset_dir, d)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdef", "bcdefg"))
    (d / "dataset.yaml").write_text(bomb)
    assert "expand to more than" in refused(data.load_dataset_dir, d)
    (d / "dataset.yaml").write_text("x: " + "y" * (1 << 20) + "\n")
    assert "at most" in refused(data.load_dataset_dir, d)


# --------------------------------------------------------------------------- 2. features


FINITE_VALUES = [0.0, 1.0, -1.0, 1e-320, 1e-45, 65504.0, 1e5, 3.4e38, 3.5e38, -1e300, 1e300]
FLOAT_VALUES = [*FINITE_VALUES, np.inf, -np.inf, np.nan]
DTYPES = [np.float16, np.float32, np.float64, np.longdouble, np.int8, np.int64, np.uint8, np.bool_,
          np.complex64, np.dtype("U3"), np.dtype([("a", "<f4"), ("b", "<f4")])]


def _feature_ok(arr: np.ndarray) -> bool:
    """The rule: a float dtype, (rows >= 6 items, >= 1 column), every value finite once in float32."""
    if arr.dtype.fields is not None or not np.issubdtype(arr.dtype, np.floating) or arr.ndim != 2:
        return False
    if arr.shape[0] < 6 or arr.shape[1] < 1:
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(arr.astype(np.float32)).all())


@pytest.mark.timeout(60)
@settings(GENERATED, max_examples=80)
@given(dtype=st.one_of(st.sampled_from(DTYPES[:4]), st.sampled_from(DTYPES[4:])),
       shape=st.one_of(st.tuples(st.sampled_from([6, 7]), st.sampled_from([1, 3])),
                       st.tuples(st.sampled_from([0, 1, 5, 6]), st.sampled_from([0, 1])),
                       st.tuples(st.integers(0, 7)), st.tuples(st.integers(1, 7), st.just(2), st.just(2))),
       values=st.one_of(st.lists(st.sampled_from(FINITE_VALUES), min_size=1, max_size=8),
                        st.lists(st.one_of(st.sampled_from(FLOAT_VALUES), st.floats(-1e6, 1e6)), min_size=1,
                                 max_size=8)))
@example(dtype=np.float64, shape=(6, 2), values=[1.0, 3.5e38])  # finite in float64, not in float32
@example(dtype=np.longdouble, shape=(6, 1), values=[-1e300])
@example(dtype=np.float64, shape=(6, 2), values=[3.4e38, -1e-320])  # the largest float32 and a subnormal: fine
@example(dtype=np.float16, shape=(7, 3), values=[1e5])  # inf once stored as float16
@example(dtype=np.float32, shape=(6, 0), values=[1.0])
@example(dtype=np.dtype([("a", "<f4"), ("b", "<f4")]), shape=(6, 2), values=[1.0])
def test_feature_arrays_load_exactly_or_are_refused_in_one_line(tmp_path, dtype, shape, values):
    n = int(np.prod(shape))
    with np.errstate(over="ignore", invalid="ignore"):
        raw = np.resize(np.asarray(values, dtype=np.float64), n).reshape(shape)
        if np.dtype(dtype).fields is not None:
            arr = np.zeros(shape, dtype=dtype)
        elif np.dtype(dtype).kind == "U":
            arr = raw.astype(str).astype(dtype)
        else:
            arr = np.nan_to_num(raw).astype(dtype) if np.dtype(dtype).kind in "iub" else raw.astype(dtype)
    d = write_dataset(_fresh(tmp_path), features={"image": arr})
    if _feature_ok(arr):
        ds = data.load_dataset_dir(d)
        assert ds.n_items == shape[0]
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(ds.features["image"].numpy(), arr.astype(np.float32))
    else:
        message = refused(data.load_dataset_dir, d)
        assert "image_feat.npy" in message or "toy.inter: itemID" in message, message


def test_float64_beyond_float32_is_refused_naming_the_value(tmp_path):
    f = np.ones((6, 2))
    f[3, 1] = 1e39  # finite in float64, inf in the model's float32
    d = write_dataset(tmp_path, features={"image": f})
    message = refused(data.load_dataset_dir, d)
    assert "value 1e+39 in row 3, column 1 is beyond float32's range" in message


def test_object_features_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    d = write_dataset(tmp_path / "data", features={})
    np.save(d / "image_feat.npy", np.array([[Evil()]] * 6, dtype=object), allow_pickle=True)
    assert "dtype object; features must be a float dtype" in refused(data.load_dataset_dir, d)
    assert not marker.exists()


def _npy(path: Path, shape: tuple, data: bytes, descr: str = "<f8") -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.write(data)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case, fragment", [
    ("header claims 10**12 rows", "bytes of data) but the file holds 96"),
    ("cut short", "the file is cut short"),
    ("trailing bytes", "but the file holds 200"),
    ("not npy", "unreadable .npy file"),
    ("zero columns", "has no columns"),
    ("zero rows", "has no rows"),
    ("empty file", "unreadable .npy file"),
])
def test_npy_headers_are_checked_before_reading(tmp_path, case, fragment):
    d = write_dataset(tmp_path, features={})
    path = d / "image_feat.npy"
    if case == "header claims 10**12 rows":
        _npy(path, (10**12, 2), b"\0" * 96)
    elif case == "cut short":
        _npy(path, (6, 2), b"\0" * 95)
    elif case == "trailing bytes":
        _npy(path, (6, 2), b"\0" * 200)
    elif case == "not npy":
        path.write_bytes(b"\x93NUMPY garbage" * 10)
    elif case == "zero columns":
        np.save(path, np.ones((6, 0)))
    elif case == "zero rows":
        np.save(path, np.ones((0, 3)))
    else:
        path.write_bytes(b"")
    message = refused(data.load_dataset_dir, d)
    assert "image_feat.npy" in message and fragment in message, message


# --------------------------------------------------------------------------- 2. the .inter file


BASE = [(0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 0, 0)]  # user, item, split: every split present
VALID_IDS = {"0": 0, "1": 1, "2": 2, "3": 3, "007": 7, "+5": 5, "-0": 0, "2.0": 2, "1e3": 1000, " 4": 4, "4 ": 4,
             "1048575": 1048575}
INVALID_IDS = ["-1", "-3", "1.5", "inf", "-inf", "nan", "NaN", "NA", "null", "N/A", "", "bob", "true", "0x10",
               "0X1f", "0b1", "1_000", "1e999", "\u0661\u0662", "1e30", "1048576", "9223372036854775807",
               "9223372036854775808", "18446744073709551616", "10" * 20, "1" * 400]
TOKENS = [*VALID_IDS, *INVALID_IDS]


def _write_inter(d: Path, rows: list[tuple[str, str, int]]) -> None:
    lines = ["userID\titemID\trating\ttimestamp\tx_label", *(f"{u}\t{i}\t1\t0\t{s}" for u, i, s in rows)]
    (d / "toy.inter").write_text("\n".join(lines) + "\n")


@pytest.mark.timeout(60)
@settings(GENERATED, max_examples=80)
@given(extra=st.lists(st.tuples(st.sampled_from(TOKENS), st.sampled_from(TOKENS), st.integers(0, 2)), max_size=5))
@example(extra=[("0", "0x10", 0)])  # the CSV reader's own inference reads hex as an int64
@example(extra=[("1e30", "0", 0)])
@example(extra=[("nan", "0", 0)])
@example(extra=[("1048575", "-0", 0), (" 4", "2.0", 1), ("+5", "1e3", 2)])  # all valid
@example(extra=[("3", "1048576", 0)])
def test_interaction_ids_parse_exactly_or_are_refused_in_one_line(tmp_path, extra):
    d = write_dataset(_fresh(tmp_path), features={})
    rows = [(str(u), str(i), s) for u, i, s in BASE] + extra
    _write_inter(d, rows)
    bad = any(tok not in VALID_IDS for u, i, _ in extra for tok in (u, i))
    pairs = {}
    conflict = False
    for u, i, s in rows:
        if u in VALID_IDS and i in VALID_IDS:
            key = (VALID_IDS[u], VALID_IDS[i])
            conflict |= pairs.setdefault(key, s) != s
    if bad or conflict:
        message = refused(data.load_dataset_dir, d)
        assert "toy.inter" in message
        if len(message) > 400:  # the long token is cut, with its length said
            assert "characters)" in message
        return
    ds = data.load_dataset_dir(d)
    got = {(int(u), int(i), k) for k, s in enumerate(data.SPLITS)
           for u, i in zip(ds.split(s).users, ds.split(s).items)}
    assert got == {(VALID_IDS[u], VALID_IDS[i], s) for u, i, s in rows}
    assert ds.n_users == max(VALID_IDS[u] for u, _, _ in rows) + 1


def test_the_id_bound_grows_with_the_rows_and_the_feature_rows(tmp_path):
    assert data.id_limit(10) == data.ID_FLOOR and data.id_limit(10**6) == 8 * 10**6
    assert data.id_limit(10**9) == data.MAX_ID and data.id_limit(10, at_least=3 * 10**6) == 3 * 10**6
    d = write_dataset(tmp_path, features={})
    _write_inter(d, [("0", "0", 0), ("0", "1", 1), ("0", "2", 2), (str(10**18), "0", 0)])
    message = refused(data.load_dataset_dir, d)
    assert f"column userID = {10**18} at line 5; ids index tables sized by the largest id" in message
    assert "below the larger of 1,048,576 and 8 x the 4 rows" in message


@pytest.mark.parametrize("header, fragment", [
    ("userID\titemID\tuserID\tx_label", "column 'userID' appears twice in the header (columns 1 and 3)"),
    ("userID\titemID\tx_label\trating\trating", "column 'rating' appears twice"),
    ("userID\titem\tx_label", "missing column itemID"),
    ("", "empty file"),
    ("u" * 70000, "the first line is longer than 65,536 bytes"),
])
def test_the_header_has_each_required_column_once(tmp_path, header, fragment):
    d = write_dataset(tmp_path, features={})
    (d / "toy.inter").write_text(header + "\n0\t0\t0\t0\t0\n")
    message = refused(data.load_dataset_dir, d)
    assert fragment in message, message


@GENERATED
@given(columns=st.lists(st.sampled_from(["userID", "itemID", "x_label", "rating", "timestamp"]), min_size=1,
                        max_size=6))
def test_generated_headers(tmp_path, columns):
    d = write_dataset(_fresh(tmp_path), features={})
    values = {"userID": ["0", "0", "0"], "itemID": ["0", "1", "2"], "x_label": ["0", "1", "2"],
              "rating": ["1"] * 3, "timestamp": ["0"] * 3}
    lines = ["\t".join(columns), *("\t".join(values[c][r] for c in columns) for r in range(3))]
    (d / "toy.inter").write_text("\n".join(lines) + "\n")
    if len(set(columns)) == len(columns) and {"userID", "itemID", "x_label"} <= set(columns):
        assert len(data.load_dataset_dir(d).train) == 1
    else:
        refused(data.load_dataset_dir, d)


def test_a_long_row_is_not_echoed_whole(tmp_path):
    d = write_dataset(tmp_path, features={})
    (d / "toy.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n" + "row" * 5000 + "\n")
    message = refused(data.load_dataset_dir, d)
    assert "cannot parse" in message and "row" * 100 not in message, message


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_an_empty_split_is_refused(tmp_path, split):
    k = data.SPLITS.index(split)
    rows = [(u, i, 1, 0, s) for u, i, s in [(0, 0, 0), (0, 1, 1), (0, 2, 2), (1, 3, 0), (1, 4, 1), (1, 5, 2)]
            if s != k]
    d = write_dataset(tmp_path, rows=rows)
    message = refused(data.load_dataset_dir, d)
    assert f"toy.inter: the {split} split is empty (no row with x_label = {k})" in message


# --------------------------------------------------------------------------- 3. caches say what they were made from


def _slot(name: str, d: Path) -> Path:
    key = cache.sha256_json([name, str((d / f"{name}.inter").resolve())])[:20]
    return cache.cache_dir("interactions") / f"{key}.v{data.PARSER_VERSION}.parquet"


def _warnings(caplog, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == logging.WARNING]


def test_an_interaction_cache_entry_of_another_dataset_is_not_used(tmp_path, caplog):
    a = write_dataset(tmp_path, "a")
    b = write_dataset(tmp_path, "b", rows=[(0, 0, 1, 0, 0), (0, 1, 1, 0, 1), (0, 2, 1, 0, 2)])
    first = data.load_dataset("a", tmp_path)
    data.load_dataset("b", tmp_path)
    shutil.copy(_slot("b", b), _slot("a", a))  # b's parse in a's place
    with caplog.at_level(logging.WARNING, logger=data.__name__):
        again = data.load_dataset("a", tmp_path)
    (message,) = _warnings(caplog, data.__name__)
    assert "was made from dataset 'b'" in message and "re-parsing" in message and "\n" not in message
    assert len(again.train) == len(first.train) and again.content_hash == first.content_hash
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=data.__name__):  # rebuilt: the next read is a quiet hit
        data.load_dataset("a", tmp_path)
    assert _warnings(caplog, data.__name__) == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how, fragment", [
    ("rows changed, record kept", "checksum mismatch"), ("cut short", "unreadable"),
    ("no record", "no record of what it was made from"), ("a FIFO", "not a regular file"),
    ("another column type", "holds columns"),
])
def test_a_damaged_interaction_cache_entry_is_rebuilt_with_a_warning(tmp_path, caplog, how, fragment):
    d = write_dataset(tmp_path)
    first = data.load_dataset("toy", tmp_path)
    slot = _slot("toy", d)
    table = pq.read_table(slot)
    if how == "rows changed, record kept":
        users = table["user"].to_numpy().copy()
        users[0] = 3
        pq.write_table(table.set_column(0, "user", pa.array(users)), slot)
    elif how == "cut short":
        slot.write_bytes(slot.read_bytes()[:100])
    elif how == "no record":
        pq.write_table(table.replace_schema_metadata(None), slot)
    elif how == "a FIFO":
        slot.unlink()
        os.mkfifo(slot)
    else:
        pq.write_table(table.set_column(2, "split", table["split"].cast(pa.int64())), slot)
    with caplog.at_level(logging.WARNING, logger=data.__name__):
        again = data.load_dataset("toy", tmp_path)
    (message,) = _warnings(caplog, data.__name__)
    assert fragment in message and str(slot) in message, message
    np.testing.assert_array_equal(again.train.users, first.train.users)


def test_a_graph_cache_file_of_another_dataset_is_rebuilt_with_a_warning(tmp_path, caplog):
    write_dataset(tmp_path, "a")
    write_dataset(tmp_path, "b", features={"image": np.eye(6, 4), "text": np.ones((6, 3))})
    a, b = data.load_dataset("a", tmp_path), data.load_dataset("b", tmp_path)
    ga = graphs.build_graphs(a, k=2, builder="torch")
    graphs.build_graphs(b, k=2, builder="torch")
    root = cache.cache_dir("graphs")
    shutil.copy(root / f"{graphs.graph_key(b, 2, 'row')}.npz", root / f"{ga.key}.npz")
    graphs._MEMO.clear()
    with caplog.at_level(logging.WARNING, logger=graphs.__name__):
        again = graphs.build_graphs(a, k=2, builder="torch")
    (message,) = _warnings(caplog, graphs.__name__)
    assert "another key" in message and "rebuilding" in message
    assert not again.from_cache and torch_equal(again.ui_adj, ga.ui_adj)


@pytest.mark.timeout(30)
def test_a_graph_cache_file_that_is_a_fifo_is_replaced_with_a_warning(tmp_path, caplog):
    write_dataset(tmp_path)
    ds = data.load_dataset("toy", tmp_path)
    path = cache.cache_dir("graphs") / f"{graphs.graph_key(ds, 2, 'row')}.npz"
    path.unlink(missing_ok=True)
    graphs._MEMO.clear()
    os.mkfifo(path)
    with caplog.at_level(logging.WARNING, logger=graphs.__name__):
        g = graphs.build_graphs(ds, k=2, builder="torch")
    (message,) = _warnings(caplog, graphs.__name__)
    assert "not a regular file" in message and not g.from_cache and path.is_file()


def torch_equal(x, y) -> bool:
    return bool((x.to_dense() == y.to_dense()).all())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["checksums list ../x", "checksums list /dev/zero", "feature is a FIFO"])
def test_a_synthetic_cache_pointing_elsewhere_is_regenerated(tmp_path, monkeypatch, caplog, how):
    monkeypatch.setenv("MENTOR_RAY_CACHE", str(tmp_path / "cache"))
    directory = synthetic.ensure_preset("synth-tiny")
    (tmp_path / "x").write_text(SECRET)
    sums = json.loads((directory / synthetic.CHECKSUMS).read_text())
    if how == "feature is a FIFO":
        (directory / "image_feat.npy").unlink()
        os.mkfifo(directory / "image_feat.npy")
    else:
        sums["sha256"]["../../x" if "../x" in how else "/dev/zero"] = "0" * 64
        (directory / synthetic.CHECKSUMS).write_text(json.dumps(sums))
    with caplog.at_level(logging.WARNING, logger=synthetic.__name__):
        ds = data.load_dataset("synth-tiny")
    (message,) = _warnings(caplog, synthetic.__name__)
    assert "regenerating synth-tiny" in message and SECRET not in message
    assert len(ds.train) > 0 and (directory / "image_feat.npy").is_file()


# --------------------------------------------------------------------------- 4. the results store's read side


def _summary(seed=0):
    from mentor_ray.common.config import make_config

    cfg = make_config(flags={"dataset": "synth-tiny", "variant": "mentor", "seed": seed}).model_dump()
    metrics = {f"{m}@{k}": 0.1 for m in ("recall", "ndcg") for k in (5, 10, 20, 50)}
    return {"dataset": "synth-tiny", "synthetic": True, "variant": "mentor", "seed": seed, "best_epoch": 1,
            "epochs_run": 2, "valid": metrics, "test": metrics, "config": cfg,
            "space_axes": {"tau": [0.1, 0.2]}}


def _good_rows(seed=0) -> pa.Table:
    return results.rows_from_summary(_summary(seed), "search", "s", version="test")


def _with(table: pa.Table, column: str, values) -> pa.Table:
    i = table.schema.get_field_index(column)
    return table.set_column(i, column, pa.array(values if isinstance(values, list) else [values] * table.num_rows))


def _bad_tables() -> dict[str, pa.Table]:
    t = _good_rows(seed=5)
    dup = pa.Table.from_arrays([*t.columns, t.column("seed")], names=[*t.column_names, "seed"])
    return {
        "a column twice": dup,
        "k as text": _with(t, "k", "ten"),
        "seed as a fraction": _with(t, "seed", 1.5),
        "value as a list": _with(t, "value", [[1.0]] * t.num_rows),
        "space_axes not JSON": _with(t, "space_axes", "{tau: [0.1"),
        "space_axes a list": _with(t, "space_axes", "[1, 2]"),
        "space_axes with an empty axis": _with(t, "space_axes", '{"tau": []}'),
        "space_axes with a number axis": _with(t, "space_axes", '{"tau": 3}'),
        "space_axes nested too deep": _with(t, "space_axes", "[" * 100000),
        "config_json not an object": _with(t, "config_json", '"x"'),
        "split train": _with(t, "split", "train"),
        "role other": _with(t, "role", "hacker"),
        "k 7": _with(t, "k", pa.array([7] * t.num_rows, pa.int32()).to_pylist()),
        "run_id with a newline": _with(t, "run_id", "search-x\nerror: fake"),
    }


@pytest.mark.parametrize("case", list(_bad_tables()))
def test_a_malformed_results_file_is_skipped_with_one_warning(tmp_path, caplog, case):
    results.write_run(tmp_path, _good_rows(seed=0))
    bad = tmp_path / "bad.parquet"
    pq.write_table(_bad_tables()[case], bad)
    with caplog.at_level(logging.WARNING, logger=results.__name__):
        table = results.read_results(tmp_path)
    assert table.num_rows == 16 and set(table.column("seed").to_pylist()) == {0}
    (message,) = _warnings(caplog, results.__name__)
    assert str(bad) in message and "corrupted run file" in message and "\n" not in message
    assert len(message) < 800


@GENERATED
@given(text=st.one_of(st.text(max_size=40), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8).map(json.dumps)))
def test_generated_space_axes_are_kept_only_when_readers_can_use_them(tmp_path, text):
    store = _fresh(tmp_path)
    pq.write_table(_with(_good_rows(), "space_axes", text), store / "run.parquet")
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    usable = isinstance(value, dict) and all(isinstance(v, list) and v for v in value.values())
    assert results.read_results(store).num_rows == (16 if usable else 0)


def test_the_leaderboard_builds_over_a_store_with_malformed_files(tmp_path):
    from mentor_ray.report.leaderboard import write_leaderboard

    store = tmp_path / "r"
    results.write_run(store, _good_rows(seed=0))
    results.write_run(store, results.rows_from_summary(_summary(0), "final", "s", version="test"))
    for name, table in _bad_tables().items():
        pq.write_table(table, store / f"{name.replace(' ', '_')}.parquet")
    assert "MENTOR" in write_leaderboard(store, tmp_path / "lb", "md")


# --------------------------------------------------------------------------- 5. DiffMM conversion


def _diffmm(root: Path, n_users=5, n_items=6) -> Path:
    src = root / "diffmm"
    src.mkdir(parents=True)
    dense = np.zeros((n_users, n_items), dtype=np.float32)
    for u in range(n_users):
        dense[u, u % n_items] = 1
    for label, name in enumerate(("trnMat.pkl", "valMat.pkl", "tstMat.pkl")):
        m = sp.coo_matrix(np.roll(dense, label, axis=1))
        (src / name).write_bytes(pickle.dumps(m))
    np.save(src / "image_feat.npy", np.ones((n_items, 3), dtype=np.float32))
    return src


def _raw_coo(shape, rows, cols, data) -> sp.coo_matrix:
    """A coo_matrix whose arrays bypass the constructor's checks (as unpickling does)."""
    m = sp.coo_matrix(shape)
    m.row, m.col, m.data = (np.asarray(a) for a in (rows, cols, data))
    return m


@pytest.mark.timeout(60)
@GENERATED
@given(rows=st.lists(st.integers(-3, 8), min_size=1, max_size=5), cols=st.lists(st.integers(-3, 8), min_size=1,
       max_size=5), values=st.lists(st.sampled_from([1.0, 2.0, 0.0, np.nan, np.inf]), min_size=1, max_size=5),
       shape=st.sampled_from([(5, 6), (5, 7), (4, 6)]))
def test_generated_test_matrices_convert_or_are_refused_in_one_line(tmp_path, rows, cols, values, shape):
    base = _fresh(tmp_path)
    src = _diffmm(base)
    n = min(len(rows), len(cols), len(values))
    rows, cols, values = rows[:n], cols[:n], values[:n]
    (src / "tstMat.pkl").write_bytes(pickle.dumps(_raw_coo(shape, rows, cols, values)))
    ok = (shape == (5, 6) and all(0 <= r < 5 for r in rows) and all(0 <= c < 6 for c in cols)
          and all(np.isfinite(values)) and any(v != 0 for v in values))
    # a (user, item) pair already in train or valid would be in two splits
    trn_val = {(u, (u + k) % 6) for u in range(5) for k in (0, 1)}
    nonzero = {(r, c) for r, c, v in zip(rows, cols, values) if v != 0}
    ok = ok and not (nonzero & trn_val)
    out = base / "out"
    if ok:
        ds = data.load_dataset_dir(convert_diffmm(src, out, "tt"))
        assert len(ds.test) == len(nonzero)
    else:
        message = refused(convert_diffmm, src, out, "tt")
        assert "tstMat.pkl" in message or "would not load" in message or "shapes differ" in message, message
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case, fragment", [
    ("csr with an index out of range", "tstMat.pkl: not a valid sparse matrix"),
    ("csr with a broken index pointer", "tstMat.pkl: not a valid sparse matrix"),
    ("text values", "tstMat.pkl: not a valid sparse matrix"),
    ("complex values", "tstMat.pkl: values of dtype complex128"),
    ("a FIFO", "tstMat.pkl: is a named pipe (FIFO)"),
    ("a link out", "tstMat.pkl: leads outside the dataset directory"),
    ("feature rows short", "image_feat.npy: 5 rows but the matrices have 6 items"),
    ("feature is a FIFO", "audio_feat.npy: is a named pipe (FIFO)"),
    ("feature links to /dev/zero", "audio_feat.npy: leads outside"),
    ("empty valid", "valMat.pkl: no non-zero entry, so the valid split would be empty"),
])
def test_diffmm_inputs_are_checked_in_one_line(tmp_path, case, fragment):
    src = _diffmm(tmp_path)
    tst = src / "tstMat.pkl"
    if case == "csr with an index out of range":
        m = sp.csr_matrix(np.eye(5, 6))
        m.indices = np.array([0, 1, 2, 3, 99], dtype=m.indices.dtype)
        tst.write_bytes(pickle.dumps(m))
    elif case == "csr with a broken index pointer":
        m = sp.csr_matrix(np.eye(5, 6))
        m.indptr = np.array([0, 1, 2, 3, 4, 50], dtype=m.indptr.dtype)
        tst.write_bytes(pickle.dumps(m))
    elif case == "text values":
        m = sp.coo_matrix(np.eye(5, 6))
        m.data = np.array(list("abcde"))
        tst.write_bytes(pickle.dumps(m))
    elif case == "complex values":
        m = sp.coo_matrix(np.eye(5, 6))
        m.data = np.array([1j] * 5)
        tst.write_bytes(pickle.dumps(m))
    elif case == "a FIFO":
        tst.unlink()
        os.mkfifo(tst)
    elif case == "a link out":
        (tmp_path / "elsewhere.pkl").write_bytes(tst.read_bytes())
        tst.unlink()
        tst.symlink_to(tmp_path / "elsewhere.pkl")
    elif case == "feature rows short":
        np.save(src / "image_feat.npy", np.ones((5, 3)))
    elif case == "feature is a FIFO":
        os.mkfifo(src / "audio_feat.npy")
    elif case == "feature links to /dev/zero":
        (src / "audio_feat.npy").symlink_to("/dev/zero")
    else:
        (src / "valMat.pkl").write_bytes(pickle.dumps(sp.coo_matrix((5, 6))))
    message = refused(convert_diffmm, src, tmp_path / "out", "tt")
    assert fragment in message, message
    assert not (tmp_path / "out").exists()


def test_the_sparse_loader_refuses_a_matrix_with_negative_indices(tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(_raw_coo((3, 3), [0, -1], [0, 1], [1.0, 1.0])))
    assert "negative" in refused(_load_sparse_pickle, path)

