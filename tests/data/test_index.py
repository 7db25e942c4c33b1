"""The reference search index: exact search against scipy, the approximate index's recall, save/load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from omnicell.data import ReferenceIndex, is_index_folder
from omnicell.data import _index as index_module


def _clustered(n: int, dim: int, *, seed: int, n_clusters: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(n_clusters, dim)) * 3
    return (centers[rng.integers(0, n_clusters, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def _scipy_knn(queries: np.ndarray, reference: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    distances = cdist(queries.astype(np.float64), reference.astype(np.float64), metric=metric)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(distances, order, axis=1)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return _clustered(3000, 16, seed=0)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return _clustered(200, 16, seed=1)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_search_matches_scipy(reference, queries, metric, monkeypatch):
    # Small reference blocks, so the search spans several of them and merges their candidates.
    monkeypatch.setattr(index_module, "REFERENCE_BLOCK", 700)
    index = ReferenceIndex.build(reference, metric=metric)
    assert index.method == "exact"
    indices, distances = index.query(queries, 7)
    expected_indices, expected_distances = _scipy_knn(queries, reference, 7, metric)
    assert indices.dtype == np.int64 and distances.dtype == np.float32
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-5, atol=1e-6)
    assert (np.diff(distances, axis=1) >= 0).all()


def test_exact_search_does_not_depend_on_batch_size(reference, queries):
    index = ReferenceIndex.build(reference)
    indices, distances = index.query(queries, 10)
    for batch_size in (1, 7, 64):
        other_indices, other_distances = index.query(queries, 10, batch_size=batch_size)
        np.testing.assert_array_equal(other_indices, indices)
        np.testing.assert_array_equal(other_distances, distances)


def test_ties_are_broken_by_row_number():
    # Rows 1, 3 and 5 are copies of one point, rows 2 and 4 of another at the same distance from the query.
    reference = np.array([[9, 9], [1, 0], [0, 1], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    indices, distances = ReferenceIndex.build(reference).query(np.zeros((1, 2), dtype=np.float32), 4)
    np.testing.assert_array_equal(indices, [[1, 2, 3, 4]])
    np.testing.assert_allclose(distances, [[1, 1, 1, 1]])


def test_self_query_finds_itself_first(reference):
    indices, distances = ReferenceIndex.build(reference).query(reference[:50], 3)
    np.testing.assert_array_equal(indices[:, 0], np.arange(50))
    np.testing.assert_array_equal(distances[:, 0], 0)


@pytest.fixture(scope="module")
def approximate(reference) -> ReferenceIndex:
    return ReferenceIndex.build(reference, method="pynndescent", random_state=0)


def test_approximate_recall_and_exact_distances(approximate, reference, queries):
    assert approximate.method == "pynndescent"
    indices, distances = approximate.query(queries, 10)
    expected_indices, _ = _scipy_knn(queries, reference, 10, "euclidean")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(indices, expected_indices, strict=True)])
    assert recall >= 0.95
    # Whatever the search proposed, the distances reported are the true ones.
    true = np.linalg.norm(reference[indices].astype(np.float64) - queries[:, None].astype(np.float64), axis=2)
    np.testing.assert_allclose(distances, true, rtol=1e-5, atol=1e-6)


def test_approximate_search_does_not_depend_on_batch_size_or_the_build(approximate, reference, queries):
    indices, distances = approximate.query(queries, 10)
    other_indices, other_distances = approximate.query(queries, 10, batch_size=13)
    np.testing.assert_array_equal(other_indices, indices)
    np.testing.assert_array_equal(other_distances, distances)
    # A cell's hits depend on that cell alone, not on the cells queried with it.
    np.testing.assert_array_equal(approximate.query(queries[::-1], 10)[0], indices[::-1])
    # The same seed builds the same index.
    again = ReferenceIndex.build(reference, method="pynndescent", random_state=0)
    np.testing.assert_array_equal(again.query(queries, 10)[0], indices)


def test_approximate_index_of_a_few_cells_is_exact(reference, queries):
    small = reference[:5]
    approximate = ReferenceIndex.build(small, method="pynndescent").query(queries[:20], 5)
    for a, b in zip(approximate, ReferenceIndex.build(small).query(queries[:20], 5), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="at least 3 reference cells"):
        ReferenceIndex.build(reference[:2], method="pynndescent")


def test_auto_switches_at_the_threshold(reference):
    assert ReferenceIndex.build(reference[:100], exact_max_cells=100).method == "exact"
    # One cell over: the approximate index (built on a small set to keep the test short).
    assert ReferenceIndex.build(reference[:101], exact_max_cells=100).method == "pynndescent"


def test_save_and_load_round_trip(tmp_path, approximate, reference, queries):
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(np.arange(len(reference)) % 3).rename_categories(["B", "T", "NK"])},
        index=[f"cell{i}" for i in range(len(reference))],
    )
    exact = ReferenceIndex.build(reference, obs, metric="cosine", use_rep="X_omnicell", source="ref.h5ad")
    for index, folder in ((exact, tmp_path / "exact"), (approximate, tmp_path / "ann")):
        index.save(folder)
        assert is_index_folder(folder)
        loaded = ReferenceIndex.load(folder, verify=True)
        assert isinstance(loaded.embeddings, np.memmap) and not loaded.embeddings.flags.writeable
        assert (loaded.metric, loaded.method, loaded.n_cells, loaded.dim) == (
            index.metric,
            index.method,
            len(reference),
            16,
        )
        assert loaded.sha256 == index.sha256
        pd.testing.assert_frame_equal(loaded.obs, index.obs)
        for a, b in zip(loaded.query(queries, 5), index.query(queries, 5), strict=True):
            np.testing.assert_array_equal(a, b)
    manifest = json.loads((tmp_path / "exact" / "manifest.json").read_text())
    assert manifest["use_rep"] == "X_omnicell" and manifest["source"] == "ref.h5ad"
    assert ReferenceIndex.load(tmp_path / "exact", mmap=False).embeddings.__class__ is np.ndarray


def test_sha256_identifies_the_embeddings(reference):
    import hashlib

    index = ReferenceIndex.build(reference)
    assert index.sha256 == hashlib.sha256(reference.tobytes()).hexdigest()
    changed = reference.copy()
    changed[5, 3] += 1
    assert ReferenceIndex.build(changed).sha256 != index.sha256


def test_build_errors(reference):
    with pytest.raises(ValueError, match="2 of 3000 reference rows hold NaN"):
        bad = reference.copy()
        bad[[4, 9], 0] = np.nan
        ReferenceIndex.build(bad)
    with pytest.raises(ValueError, match="empty reference"):
        ReferenceIndex.build(np.zeros((0, 16), dtype=np.float32))
    with pytest.raises(ValueError, match="more than once"):
        ReferenceIndex.build(reference[:3], pd.DataFrame(index=["a", "b", "a"]))
    with pytest.raises(ValueError, match="obs has 2 rows"):
        ReferenceIndex.build(reference[:3], pd.DataFrame(index=["a", "b"]))
    with pytest.raises(ValueError, match="metric must be"):
        ReferenceIndex.build(reference, metric="manhattan")
    with pytest.raises(ValueError, match="cosine metric needs non-zero"):
        ReferenceIndex.build(np.zeros((3, 2), dtype=np.float32), metric="cosine")


def test_query_errors(reference):
    index = ReferenceIndex.build(reference[:20])
    with pytest.raises(ValueError, match="k=21 is more than the 20 reference cells"):
        index.query(reference[:2], 21)
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        index.query(reference[:2, :5], 3)
    bad = reference[:4].copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="Query row 2 holds NaN"):
        index.query(bad, 3)


def test_load_and_save_errors(tmp_path, reference):
    with pytest.raises(FileNotFoundError, match="No reference index at"):
        ReferenceIndex.load(tmp_path / "missing")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="does not hold a reference index"):
        ReferenceIndex.build(reference[:10]).save(other)
    assert sorted(p.name for p in other.iterdir()) == ["keep.txt"]
    with pytest.raises(ValueError, match=r"holds no manifest\.json"):
        ReferenceIndex.load(other)
    folder = tmp_path / "index"
    ReferenceIndex.build(reference[:10]).save(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(ValueError, match="format version 99"):
        ReferenceIndex.load(folder)
    (folder / "manifest.json").write_text(json.dumps({**manifest, "dim": 3}))
    with pytest.raises(ValueError, match=r"the manifest says float32 \(10, 3\)"):
        ReferenceIndex.load(folder)
    (folder / "manifest.json").write_text(json.dumps({**manifest, "sha256": "0" * 64}))
    with pytest.raises(ValueError, match="does not match the SHA-256"):
        ReferenceIndex.load(folder, verify=True)
