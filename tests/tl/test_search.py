"""oc.tl.build_index and oc.tl.search on pbmc68k_reduced: hits equal exact kNN, every source builds the same index."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy.spatial.distance import cdist

import omnicell as oc


@pytest.fixture
def halves():
    adata = sc.datasets.pbmc68k_reduced()
    rng = np.random.default_rng(0)
    is_reference = rng.random(adata.n_obs) < 0.6
    return adata[is_reference].copy(), adata[~is_reference].copy()


def _exact(query: np.ndarray, reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    distances = cdist(query.astype(np.float64), reference.astype(np.float64))
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(distances, order, axis=1)


def test_search_finds_the_exact_neighbours_and_their_labels(halves, tmp_path):
    reference, query = halves
    index = oc.tl.build_index(reference, tmp_path / "index", use_rep="X_pca", obs_keys=["bulk_labels", "n_genes"])
    assert index.method == "exact" and index.use_rep == "X_pca"
    before = query.copy()
    table = oc.tl.search(query, tmp_path / "index", k=5, use_rep="X_pca", obs_keys="bulk_labels")
    expected_rows, expected_distances = _exact(query.obsm["X_pca"], reference.obsm["X_pca"], 5)
    np.testing.assert_array_equal(query.obsm["omnicell_search_indices"], expected_rows)
    np.testing.assert_allclose(query.obsm["omnicell_search_distances"], expected_distances, rtol=1e-5, atol=1e-5)
    assert list(table.columns) == ["query", "rank", "reference", "reference_row", "distance", "bulk_labels"]
    assert table["bulk_labels"].dtype == reference.obs["bulk_labels"].dtype  # categories kept
    assert len(table) == query.n_obs * 5
    first = table.iloc[:5]
    assert (first["query"] == query.obs_names[0]).all() and first["rank"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(table["reference"], reference.obs_names[expected_rows.ravel()])
    np.testing.assert_array_equal(
        table["bulk_labels"].astype(str), reference.obs["bulk_labels"].astype(str).to_numpy()[expected_rows.ravel()]
    )
    record = query.uns["omnicell"]["search"]
    assert record["sha256"] == index.sha256 and record["k"] == 5 and record["method"] == "exact"
    # Only the slots named in the docstring were added.
    assert set(query.obsm) - set(before.obsm) == {"omnicell_search_indices", "omnicell_search_distances"}
    pd.testing.assert_frame_equal(oc.get.search_results(query, index, obs_keys="bulk_labels"), table)


def test_search_does_not_depend_on_batch_size_and_copy_leaves_adata(halves):
    reference, query = halves
    index = oc.tl.build_index(reference, use_rep="X_pca")
    table = oc.tl.search(query.copy(), index, k=8, use_rep="X_pca")
    untouched = query.copy()
    copied = oc.tl.search(query, index, k=8, use_rep="X_pca", batch_size=17, copy=True, key_added="hits")
    assert isinstance(copied, ad.AnnData) and "hits_indices" not in query.obsm
    assert set(query.obsm) == set(untouched.obsm) and "omnicell" not in query.uns
    np.testing.assert_array_equal(copied.obsm["hits_indices"].ravel(), table["reference_row"])
    np.testing.assert_array_equal(copied.obsm["hits_distances"].ravel(), table["distance"])
    pd.testing.assert_frame_equal(oc.get.search_results(copied, index, key="hits"), table)


def test_every_reference_source_builds_the_same_index(halves, tmp_path):
    reference, _ = halves
    path = tmp_path / "reference.h5ad"
    reference.write_h5ad(path)
    in_memory = oc.tl.build_index(reference, use_rep="X_pca", obs_keys=["bulk_labels"])
    tar = tmp_path / "index.tar"
    from_file = oc.tl.build_index(path, tar, use_rep="X_pca", obs_keys=["bulk_labels"], chunk_size=50)
    backed = oc.tl.build_index(ad.read_h5ad(path, backed="r"), use_rep="X_pca", obs_keys=["bulk_labels"])
    loaded = oc.data.ReferenceIndex.load(tmp_path / "index.tar")
    assert isinstance(loaded.embeddings, np.memmap)
    for index in (from_file, backed, loaded):
        assert index.sha256 == in_memory.sha256
        pd.testing.assert_frame_equal(index.obs, in_memory.obs)
    assert from_file.source == str(path)
    all_columns = oc.tl.build_index(path, use_rep="X_pca")
    assert list(all_columns.obs.columns) == list(reference.obs.columns)


def test_soma_reference(halves, tmp_path):
    tiledbsoma_io = pytest.importorskip("tiledbsoma.io", reason="tiledbsoma is not installed")
    reference, _ = halves
    uri = tiledbsoma_io.from_anndata(str(tmp_path / "soma"), reference, measurement_name="RNA")
    index = oc.tl.build_index(uri, use_rep="X_pca", obs_keys=["bulk_labels"])
    assert index.sha256 == oc.tl.build_index(reference, use_rep="X_pca").sha256
    assert index.obs["bulk_labels"].astype(str).tolist() == reference.obs["bulk_labels"].astype(str).tolist()


def test_bad_references_are_refused_before_anything_is_written(halves, tmp_path):
    reference, query = halves
    target = tmp_path / "index"
    with pytest.raises(KeyError, match=r"no representation in adata.obsm\['X_omnicell'\]"):
        oc.tl.build_index(reference, target)
    nan = reference.copy()
    nan.obsm["X_pca"][[1, 5, 9]] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in 3 cells"):
        oc.tl.build_index(nan, target, use_rep="X_pca")
    nan.write_h5ad(tmp_path / "nan.h5ad")
    with pytest.raises(ValueError, match=r"in 3 of \d+ cells; subset the reference"):
        oc.tl.build_index(tmp_path / "nan.h5ad", target, use_rep="X_pca", chunk_size=4)
    duplicated = reference.copy()
    duplicated.obs_names = ["same"] * duplicated.n_obs
    with pytest.raises(ValueError, match="occur more than once"):
        oc.tl.build_index(duplicated, target, use_rep="X_pca")
    with pytest.raises(ValueError, match="no cells"):
        oc.tl.build_index(reference[:0].copy(), target, use_rep="X_pca")
    with pytest.raises(KeyError, match="obs_keys"):
        oc.tl.build_index(reference, target, use_rep="X_pca", obs_keys=["no_such_column"])
    assert not target.exists()
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a reference index folder"):
        oc.tl.build_index(reference, target, use_rep="X_pca")
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="not a reference index"):
        oc.tl.search(query, target, use_rep="X_pca")


def test_bad_searches_are_refused_before_anything_is_written(halves):
    reference, query = halves
    index = oc.tl.build_index(reference, use_rep="X_pca", obs_keys=["bulk_labels"])
    query = query.copy()
    query.obsm["X_small"] = query.obsm["X_pca"][:, :10]
    with pytest.raises(ValueError, match="has 10 dimensions but the reference index has 50"):
        oc.tl.search(query, index, use_rep="X_small")
    with pytest.raises(ValueError, match=f"k={index.n_cells + 1} is more than"):
        oc.tl.search(query, index, k=index.n_cells + 1, use_rep="X_pca")
    with pytest.raises(KeyError, match="stores no obs column"):
        oc.tl.search(query, index, use_rep="X_pca", obs_keys=["louvain"])
    query.obsm["X_other"] = query.obsm["X_pca"]
    with pytest.warns(UserWarning, match=r"built from obsm\['X_pca'\], the query is obsm\['X_other'\]"):
        oc.tl.search(query, index, use_rep="X_other", copy=True)
    assert not any(key.startswith("omnicell_search") for key in query.obsm) and "omnicell" not in query.uns
