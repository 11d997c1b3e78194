"""The built-in torch graph builder against DGL, and against independent formulas.

Where DGL loads (the pinned profile), every graph is built both ways and compared: the same CSR
structure (so the same user-item edges and the same kNN neighbours, ties included) and every weight
equal to 1e-7. That equality is what lets the two builders share cached graphs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mentor_ray import graphs as graphs_cmd
from mentor_ray.common.errors import ConfigError
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets import graphs
from tests.conftest import needs_dgl, write_dataset


def assert_same_csr(a: torch.Tensor, b: torch.Tensor, what: str) -> float:
    """Identical structure, weights equal to 1e-7; returns the largest weight difference."""
    assert a.shape == b.shape, what
    assert torch.equal(a.crow_indices(), b.crow_indices()), f"{what}: row pointers differ"
    assert torch.equal(a.col_indices(), b.col_indices()), f"{what}: columns differ"
    diff = float((a.values().double() - b.values().double()).abs().max()) if a.values().numel() else 0.0
    assert diff <= 1e-7, f"{what}: weights differ by {diff:.3g}"
    return diff


def compare_builders(ds: data.Dataset, k: int, norm: str) -> float:
    by_dgl = graphs.build_graphs(ds, k=k, knn_norm=norm, use_cache=False, builder="dgl")
    by_torch = graphs.build_graphs(ds, k=k, knn_norm=norm, use_cache=False, builder="torch")
    assert (by_dgl.builder, by_torch.builder) == ("dgl", "torch")
    assert by_dgl.key == by_torch.key  # one cache entry for both: allowed only by this equality
    worst = assert_same_csr(by_dgl.ui_adj, by_torch.ui_adj, f"{ds.name} user-item")
    for m in ds.modalities:
        worst = max(worst, assert_same_csr(by_dgl.item_adj[m], by_torch.item_adj[m], f"{ds.name} {m} k={k} {norm}"))
    return worst


@needs_dgl
@pytest.mark.parametrize("preset", ["synth-tiny", "synth-small"])
@pytest.mark.parametrize("norm", graphs.KNN_NORMS)
def test_builders_agree_on_synthetic_presets(preset, norm):
    ds = data.load_dataset(preset)
    for k in (1, 10, 40):
        compare_builders(ds, k, norm)


@needs_dgl
def test_builders_agree_with_ties_and_cold_nodes(tmp_path):
    f = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)  # many exact ties
    write_dataset(tmp_path, features={"image": f})
    ds = data.load_dataset("toy", tmp_path)
    for k in (1, 2, 3, 6):
        for norm in graphs.KNN_NORMS:
            compare_builders(ds, k, norm)


@needs_dgl
@pytest.mark.parametrize("k", [10, 40, 80])
def test_builders_agree_on_tiktok(tiktok_root, k):
    ds = data.load_dataset("tiktok", tiktok_root)
    for norm in graphs.KNN_NORMS:
        compare_builders(ds, k, norm)


@pytest.mark.parametrize("norm", graphs.KNN_NORMS)
def test_torch_builder_matches_formulas(norm):
    """The built-in builder against dense formulas, in every profile."""
    rng = np.random.default_rng(3)
    feats = torch.from_numpy(rng.standard_normal((11, 4)).astype(np.float32))
    k = 3
    adj = graphs.normalized_knn_adjacency_torch(*graphs.knn_edges(feats, k), 11, norm).to_dense().double().numpy()
    x = feats.double().numpy()
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    binary = np.zeros((11, 11))
    for i in range(11):
        binary[i, np.argsort(-sim[i], kind="stable")[:k]] = 1
    deg_in, deg_out = binary.sum(1), binary.sum(0)
    expected = {"row": binary / k,
                "sym": binary / np.sqrt(np.outer(deg_in, np.maximum(deg_out, 1))),
                "none": binary}[norm]
    np.testing.assert_allclose(adj, expected, rtol=1e-6, atol=0)


def test_torch_builder_user_item_matches_formula(tmp_path):
    write_dataset(tmp_path)
    ds = data.load_dataset("toy", tmp_path)
    adj = graphs.normalized_ui_adjacency_torch(ds).to_dense().double().numpy()
    r = np.zeros((ds.n_users, ds.n_items))
    r[ds.train.users, ds.train.items] = 1
    du, di = r.sum(1), r.sum(0)
    norm = r / np.sqrt(np.outer(np.maximum(du, 1), np.maximum(di, 1)))
    expected = np.block([[np.zeros((ds.n_users, ds.n_users)), norm], [norm.T, np.zeros((ds.n_items, ds.n_items))]])
    np.testing.assert_allclose(adj, expected, rtol=1e-6, atol=0)


def test_builder_is_recorded_and_cached_graphs_keep_it():
    ds = data.load_dataset("synth-tiny")
    graphs._MEMO.clear()
    built = graphs.build_graphs(ds, k=7, knn_norm="sym", use_cache=False, builder="torch")
    assert built.builder == "torch" and built.describe() == "built by torch"
    graphs._MEMO.clear()
    again = graphs.build_graphs(ds, k=7, knn_norm="sym")
    assert again.from_cache and again.builder == "torch" and again.describe() == "cache hit (built by torch)"
    assert again.summary()["builder"] == "torch"


def test_auto_builder_follows_dgl_availability(monkeypatch):
    monkeypatch.setattr(graphs, "dgl_status", lambda: "ImportError: No module named 'dgl'")
    assert graphs.resolve_builder("auto") == "torch"
    with pytest.raises(ConfigError, match="graph builder = 'dgl' but DGL does not load here .*--builder torch"):
        graphs.resolve_builder("dgl")
    monkeypatch.setattr(graphs, "dgl_status", lambda: None)
    assert graphs.resolve_builder("auto") == "dgl"
    with pytest.raises(ConfigError, match="graph builder = 'igraph'; allowed: auto, dgl, torch"):
        graphs.resolve_builder("igraph")


def test_graphs_build_command_names_the_builder(capsys):
    assert graphs_cmd.main(["build", "--dataset", "synth-tiny", "--k", "6", "--builder", "torch", "--no-cache"]) == 0
    assert "built by torch" in capsys.readouterr().out
    graphs._MEMO.clear()
    assert graphs_cmd.main(["build", "--dataset", "synth-tiny", "--k", "6"]) == 0
    assert "cache hit (built by torch)" in capsys.readouterr().out
