"""What the results store takes from a run summary, and what it reads back (mentor_ray.report.results.RunSummary).

``results add`` checks every file by one typed description of a finished run's summary before it writes any:
a value the store's readers could not read (a metric outside [0, 1] or not a number, a negative count, a best
epoch the run never ran, a non-finite timing, a curve or per-user list of the wrong shape, item embeddings the
decoder refuses) is one line naming the file and the field, exit 2, and the store is left as it was. A summary
a real ``train --summary`` wrote passes and reads back. A run file whose blobs (per-user values, item
embeddings) were changed afterwards is a corrupted run file: skipped with one warning naming the file, the run
and the column, as a truncated file is, and the leaderboard builds from the rest.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mentor_ray import leaderboard as leaderboard_cmd
from mentor_ray import results as results_cmd
from mentor_ray import train as train_cmd
from mentor_ray.cli import run
from mentor_ray.common import embeddings
from mentor_ray.common.names import USER_METRICS
from mentor_ray.report import results


def _add(store: Path, *files: Path) -> int:
    return run(results_cmd.main, ["add", "--results", str(store), "--role", "final", *map(str, files)])


def _reseeded(summary: dict, seed: int) -> dict:
    """The same summary as another seed's run (another run id; every value still one train writes)."""
    out = json.loads(json.dumps(summary))
    out["seed"] = out["config"]["seed"] = seed
    return out


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A summary ``train --summary`` wrote (MENTOR on synth-tiny, 2 epochs: it keeps a validation curve, per-user
    test values and item embeddings) and a store ``results add`` made of it: (summary, store)."""
    root = tmp_path_factory.mktemp("real")
    path = root / "s0.json"
    assert run(train_cmd.main, ["--dataset", "synth-tiny", "--max-epochs", "2", "--threads", "1",
                                "--summary", str(path)]) == 0
    assert _add(root / "store", path) == 0
    return json.loads(path.read_text()), root / "store"


def _files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.iterdir())}


def test_a_real_summary_is_added_and_reads_back_as_it_was_written(real):
    summary, store = real
    assert summary["item_embeddings"] and set(summary["test_users"]) == {"user", *USER_METRICS}
    assert len(summary["valid_curve"]) == summary["epochs_run"] == 2
    back = results.stored_summary(store, "final", summary["config"])
    assert back is not None and back["item_embeddings"] == summary["item_embeddings"]
    assert back["test_users"]["user"] == summary["test_users"]["user"]
    results.check_summary(back, "stored")  # what the store gives back is a summary it takes again
    assert results.read_results(store).num_rows == 16


# --------------------------------------------------------------------------- results add: a mutated real summary

# Values no field of the kind may hold (the real summary decides each field's kind: a metric, a count, an amount)
NOT_FRACTION = [math.nan, math.inf, -math.inf, -0.01, 1.5, 7.5, "high", "0.5", None, True, [0.5], {"v": 0.5}]
NOT_COUNT = [-1, -3, 2**31, 2**70, 1.5, 3.0, "3", True, math.nan, [1]]
NOT_AMOUNT = [-1.0, -1e9, math.inf, -math.inf, math.nan, "fast", True, [1.0], {"s": 1}]


def _leaves(summary: dict) -> list[tuple[tuple[str, ...], list]]:
    """(key path, values it may not hold) of every number the store keeps from ``summary``."""
    kept = set(results.RunSummary.model_fields)
    out = [((split, name), NOT_FRACTION) for split in ("valid", "test") for name in summary[split]]
    for key, value in summary.items():
        if key in kept and isinstance(value, int) and not isinstance(value, bool):
            out.append(((key,), NOT_COUNT))
        elif key in kept and isinstance(value, float):
            out.append(((key,), NOT_AMOUNT))
    return out


def _blob(doc: dict, **change) -> str:
    return json.dumps({**doc, **change})


def _blob_tampers(summary: dict) -> list[tuple[str, object]]:
    """(field, a value of it that the store could not read) for the curve, the per-user values and the item
    embeddings of ``summary``."""
    doc = json.loads(summary["item_embeddings"])
    name = next(iter(doc["modalities"]))
    users = summary["test_users"]
    n = len(users["user"])
    nan_blob = embeddings.encode(np.arange(2), {"id": np.array([[math.nan, 0], [0, 0]], np.float32)})
    return [
        ("valid_curve", [{"x": "y"}, None, "z"]), ("valid_curve", [0.1] * 5), ("valid_curve", [0.1, 1.5]),
        ("valid_curve", "curve"), ("best_epoch", summary["epochs_run"]), ("best_epoch", 10**6),
        ("test_users", {**users, "recall@20": users["recall@20"][:3]}),
        ("test_users", {**users, "user": users["user"][::-1]}),
        ("test_users", {**users, "user": [users["user"][0]] * n}),
        ("test_users", {**users, "ndcg@20": [1.5] * n}), ("test_users", {**users, "ndcg@10": None}),
        ("test_users", {**users, "recall@5": users["recall@20"]}), ("test_users", {**users, "user": [-1] * n}),
        ("test_users", [1, 2]), ("test_users", {k: v for k, v in users.items() if k != "user"}),
        ("item_embeddings", "{{{"), ("item_embeddings", _blob(doc, dim=10**9)), ("item_embeddings", _blob(doc, dim=0)),
        ("item_embeddings", _blob(doc, modalities={name: "!!!notb64"})),
        ("item_embeddings", _blob(doc, modalities={name: base64.b64encode(b"\0" * 6).decode()})),
        ("item_embeddings", _blob(doc, modalities={})), ("item_embeddings", _blob(doc, items=[])),
        ("item_embeddings", _blob(doc, extra=1)), ("item_embeddings", nan_blob), ("item_embeddings", 5),
        ("started_at", 1e20), ("status", "failed"), ("test", None), ("test", "bad"), ("config", [1]),
    ]


@st.composite
def _mutations(draw, summary: dict) -> tuple[str, dict]:
    """(the field named, ``summary`` with that field holding a value the store may not take)."""
    out = json.loads(json.dumps(summary))
    if draw(st.booleans()):
        path, pool = draw(st.sampled_from(_leaves(summary)))
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = draw(st.sampled_from(pool))
        return ".".join(path), out
    field, value = draw(st.sampled_from(_blob_tampers(summary)))
    out[field] = value
    return field, out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), good_first=st.booleans())
def test_results_add_refuses_a_value_the_store_cannot_read_in_one_line_and_writes_nothing(
        real, tmp_path_factory, capsys, data, good_first):
    summary, template = real
    field, bad_summary = data.draw(_mutations(_reseeded(summary, 9)))
    root = tmp_path_factory.mktemp("add")
    store = root / "store"
    shutil.copytree(template, store)
    good, bad = root / "good.json", root / "bad.json"
    good.write_text(json.dumps(_reseeded(summary, 8)))
    bad.write_text(json.dumps(bad_summary))  # NaN and Infinity as Python's json writes them
    before = _files(store)
    capsys.readouterr()
    assert _add(store, *([good, bad] if good_first else [bad])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: ") and field in err[0], (field, err)
    assert "internal error" not in err[0] and len(err[0]) < 1000
    assert _files(store) == before


# --------------------------------------------------------------------------- reading a store: a tampered run file


def _rewrite(path: Path, column: str, change) -> None:
    """``path`` with ``change(values)`` as its ``column`` (a hand edit of a run file)."""
    table = pq.read_table(path)
    i = table.schema.get_field_index(column)
    values = change(table.column(i).to_pylist())
    pq.write_table(table.set_column(i, column, pa.array(values, table.schema.field(i).type)), path)


def _at(row: int, value):
    """Set the ``row``-th non-null value of a column (a blob a run keeps on some rows only) to ``value``."""

    def change(values):
        held = [i for i, v in enumerate(values) if v is not None]
        values[held[row % len(held)]] = value(values[held[row % len(held)]])
        return values

    return change


def _store_tampers() -> list[tuple[str, object]]:
    doc = lambda text: json.loads(text)  # noqa: E731
    return [
        ("item_embeddings", lambda t: "{{{"), ("item_embeddings", lambda t: _blob(doc(t), dim=10**9)),
        ("item_embeddings", lambda t: _blob(doc(t), modalities={k: "!!!notb64" for k in doc(t)["modalities"]})),
        ("item_embeddings", lambda t: _blob(doc(t), modalities={"id": base64.b64encode(b"\0" * 6).decode()})),
        ("item_embeddings", lambda t: embeddings.encode(np.arange(1), {"id": np.full((1, 2), np.nan, np.float32)})),
        ("user_values", lambda v: v[:3]), ("user_values", lambda v: [1.5] * len(v)),
        ("user_values", lambda v: [math.nan] * len(v)), ("user_values", lambda v: None),
        ("user_ids", lambda v: v[::-1]), ("user_ids", lambda v: [v[0]] * len(v)), ("user_ids", lambda v: None),
    ]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tamper=st.sampled_from(_store_tampers()), row=st.integers(0, 3))
def test_a_tampered_blob_in_the_store_is_one_warning_naming_the_file_run_and_column(
        real, tmp_path_factory, capsys, tamper, row):
    summary, template = real
    root = tmp_path_factory.mktemp("lb")
    store = root / "store"
    shutil.copytree(template, store)
    (root / "s9.json").write_text(json.dumps(_reseeded(summary, 9)))
    assert _add(store, root / "s9.json") == 0
    victim = next(store.glob("*-s9.parquet"))
    column, value = tamper
    _rewrite(victim, column, _at(row, value))
    capsys.readouterr()
    assert run(leaderboard_cmd.main, ["--results", str(store), "--out", str(root / "lb"), "--format", "md"]) == 0
    err = capsys.readouterr().err
    named = [line for line in err.splitlines() if str(victim) in line]
    assert len(named) == 1 and victim.stem in named[0] and column in named[0], err
    assert "corrupted run file" in named[0] and "internal error" not in err and "Traceback" not in err


def test_a_store_whose_only_run_was_tampered_with_is_exit_2_naming_it(real, tmp_path, capsys):
    _, template = real
    store = tmp_path / "store"
    shutil.copytree(template, store)
    victim = next(store.glob("*.parquet"))
    _rewrite(victim, "item_embeddings", _at(0, lambda t: t[: len(t) // 2]))  # cut short
    capsys.readouterr()
    assert run(leaderboard_cmd.main, ["--results", str(store), "--out", str(tmp_path / "lb"), "--format", "md"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(str(victim) in line and "item_embeddings" in line for line in err), err
    assert err[-1].startswith("error: --results") and not (tmp_path / "lb").exists()
