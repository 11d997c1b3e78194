"""The graph stage against brute-force references on tiny inputs, and the graph cache."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from mentor_ray.common.errors import ConfigError
from mentor_ray.datasets import dataset as data
from mentor_ray.datasets import graphs
from tests.conftest import needs_dgl, write_dataset


def _brute_knn(feats: np.ndarray, k: int) -> np.ndarray:
    """Dense binary A[i, j] = 1 iff j is among i's top-k by cosine (float64, ties to lower index)."""
    n = feats.shape[0]
    a = np.zeros((n, n))
    for i in range(n):
        sims = []
        for j in range(n):
            x, y = feats[i].astype(np.float64), feats[j].astype(np.float64)
            sims.append((-(x @ y) / (np.linalg.norm(x) * np.linalg.norm(y)), j))
        for _, j in sorted(sims)[:k]:
            a[i, j] = 1.0
    return a


@pytest.fixture
def feats():
    return np.random.default_rng(7).standard_normal((13, 5)).astype(np.float32)


@pytest.mark.parametrize("chunk", [None, 1, 4])
def test_knn_neighbours_match_brute_force(feats, chunk):
    k = 4
    nbrs = graphs.knn_neighbours(torch.from_numpy(feats), k, chunk=chunk)
    dense = np.zeros((13, 13))
    dense[np.arange(13).repeat(k), nbrs.reshape(-1).numpy()] = 1
    np.testing.assert_array_equal(dense, _brute_knn(feats, k))
    assert (nbrs[:, 0] <= nbrs[:, -1]).all()  # ascending index per row
    assert all(i in nbrs[i].tolist() for i in range(13))  # itself included (Eq. 5)


BUILDERS = [pytest.param("dgl", marks=needs_dgl), "torch"]


def knn_adjacency(builder: str, feats: torch.Tensor, k: int, norm: str) -> torch.Tensor:
    if builder == "dgl":
        return graphs.normalized_knn_adjacency(graphs.knn_graph(feats, k), norm)
    return graphs.normalized_knn_adjacency_torch(*graphs.knn_edges(feats, k), feats.shape[0], norm)


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("norm", ["row", "sym", "none"])
def test_knn_adjacency_values_and_degrees(feats, norm, builder):
    k = 4
    adj = knn_adjacency(builder, torch.from_numpy(feats), k, norm).to_dense().numpy()
    binary = _brute_knn(feats, k)
    deg_row, deg_col = binary.sum(1), binary.sum(0)
    assert np.all(deg_row == k)
    expected = {
        "row": binary / deg_row[:, None],
        "sym": binary / np.sqrt(np.outer(deg_row, np.maximum(deg_col, 1))),
        "none": binary,
    }[norm]
    np.testing.assert_allclose(adj, expected, rtol=1e-6)


def test_knn_ties_go_to_the_lower_index():
    f = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)  # items 0,1,2,4 identical
    nbrs = graphs.knn_neighbours(torch.from_numpy(f), 2)
    assert nbrs[4].tolist() == [0, 1] and nbrs[0].tolist() == [0, 1] and nbrs[2].tolist() == [0, 1]
    assert nbrs[3].tolist() == [0, 3]  # 3 is orthogonal to everything: itself, then the lowest tie (0)


@pytest.mark.parametrize("builder", BUILDERS)
def test_user_item_adjacency_matches_brute_force(tmp_path, builder):
    write_dataset(tmp_path)
    ds = data.load_dataset("toy", tmp_path)
    if builder == "dgl":
        adj = graphs.normalized_ui_adjacency(graphs.user_item_graph(ds)).to_dense().numpy()
    else:
        adj = graphs.normalized_ui_adjacency_torch(ds).to_dense().numpy()
    n_u, n_i = ds.n_users, ds.n_items
    r = np.zeros((n_u, n_i))
    r[ds.train.users, ds.train.items] = 1
    du, di = r.sum(1), r.sum(0)
    norm = r / np.sqrt(np.outer(np.where(du > 0, du, 1), np.where(di > 0, di, 1)))
    expected = np.block([[np.zeros((n_u, n_u)), norm], [norm.T, np.zeros((n_i, n_i))]])
    np.testing.assert_allclose(adj, expected, rtol=1e-6)
    assert np.all(adj[2] == 0) and np.all(adj[n_u + 5] == 0)  # cold user 2 and cold item 5: empty rows


@needs_dgl
def test_user_item_heterograph_has_both_directions(tmp_path):
    write_dataset(tmp_path)
    ds = data.load_dataset("toy", tmp_path)
    hg = graphs.user_item_graph(ds)
    assert hg.num_edges("interacts") == hg.num_edges("interacted_by") == len(ds.train)
    assert hg.num_nodes("user") == ds.n_users and hg.num_nodes("item") == ds.n_items


def test_build_graphs_caches_on_disk_and_in_memory(monkeypatch):
    ds = data.load_dataset("synth-tiny")
    graphs._MEMO.clear()
    first = graphs.build_graphs(ds, k=5, use_cache=False)  # built, and written to the disk cache
    assert not first.from_cache and first.ui_adj.layout == torch.sparse_csr
    assert graphs.build_graphs(ds, k=5) is first  # in-process memo
    graphs._MEMO.clear()
    monkeypatch.setattr(graphs, "_build", lambda *a, **k: pytest.fail("rebuilt despite a cached copy"))
    second = graphs.build_graphs(ds, k=5)
    assert second.from_cache
    for a, b in [(first.ui_adj, second.ui_adj)] + [(first.item_adj[m], second.item_adj[m]) for m in ds.modalities]:
        assert torch.equal(a.to_dense(), b.to_dense())
    assert graphs.graph_key(ds, 5, "row") != graphs.graph_key(ds, 6, "row") != graphs.graph_key(ds, 5, "sym")


def test_k_larger_than_items_is_clamped(caplog):
    ds = data.load_dataset("synth-tiny")
    g = graphs.build_graphs(ds, k=1000)
    assert g.k == ds.n_items and "using k = 40" in caplog.text


def test_bad_graph_options():
    ds = data.load_dataset("synth-tiny")
    with pytest.raises(ConfigError, match="knn_norm = 'cosine'; allowed: row, sym, none"):
        graphs.build_graphs(ds, knn_norm="cosine")
    with pytest.raises(ConfigError, match="knn_k = 0"):
        graphs.build_graphs(ds, k=0)


def test_sparse_matmul_on_the_adjacency_propagates_gradients():
    ds = data.load_dataset("synth-tiny")
    g = graphs.build_graphs(ds, k=5)
    e = torch.randn(ds.n_users + ds.n_items, 8, requires_grad=True)
    out = torch.sparse.mm(g.ui_adj, e)
    out.sum().backward()
    assert e.grad is not None and torch.allclose(out, g.ui_adj.to_dense() @ e.detach(), atol=1e-5)


def _damage(path, how: str, fresh) -> None:
    data_ = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data_[: len(data_) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "bit-flipped":
        middle = len(data_) // 2
        path.write_bytes(data_[:middle] + bytes([data_[middle] ^ 0x10]) + data_[middle + 1 :])
    elif how == "wrong checksum":  # a well-formed file whose arrays are not the ones its checksum covers
        arrays = graphs.to_arrays(fresh)
        checksum = graphs.arrays_checksum(arrays)
        arrays["ui.val"] = arrays["ui.val"] * 2
        with open(path, "wb") as f:
            np.savez(f, **arrays, **{graphs.CHECKSUM: checksum})
    else:  # "no checksum": a complete file as written before cache files carried one
        with open(path, "wb") as f:
            np.savez(f, **graphs.to_arrays(fresh))


@pytest.mark.parametrize("how", ["truncated", "empty", "bit-flipped", "wrong checksum", "no checksum"])
def test_a_damaged_graph_cache_file_is_named_and_rebuilt(tmp_path, monkeypatch, caplog, how):
    monkeypatch.setenv("MENTOR_RAY_CACHE", str(tmp_path))
    ds = data.load_dataset("synth-tiny")
    graphs._MEMO.clear()
    fresh = graphs.build_graphs(ds, k=5, use_cache=False, builder="torch")  # built, and written to the cache
    path = tmp_path / "graphs" / f"{fresh.key}.npz"
    _damage(path, how, fresh)
    graphs._MEMO.clear()
    caplog.set_level(logging.WARNING, logger=graphs.__name__)
    again = graphs.build_graphs(ds, k=5, builder="torch")
    assert not again.from_cache
    for a, b in [(fresh.ui_adj, again.ui_adj)] + [(fresh.item_adj[m], again.item_adj[m]) for m in ds.modalities]:
        assert torch.equal(a.to_dense(), b.to_dense())
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and str(path) in warned[0] and warned[0].endswith("rebuilding it"), warned
    assert "\n" not in warned[0]
    graphs._MEMO.clear()
    caplog.clear()
    assert graphs.build_graphs(ds, k=5, builder="torch").from_cache  # the entry was rewritten whole
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    graphs._MEMO.clear()
