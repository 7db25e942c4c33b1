"""embed_cells through the public API reproduces the official implementation."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import omnicell as oc
from _helpers import align_signs


def _embed(adata, model, **kwargs):
    genes = kwargs.pop("genes")
    oc.pp.tokenize(
        adata, model, genes=genes, spatial=kwargs.pop("spatial", False), n_neighbors=kwargs.pop("n_neighbors", 9)
    )
    with pytest.warns(UserWarning, match="express none"):  # cell 0 of the fixture is empty
        oc.tl.embed_cells(adata, model, **kwargs)
    return adata


def test_single_cell_embedding_matches_official(tiny_adata, tiny_model, expected):
    _embed(tiny_adata, tiny_model, genes=expected["selected_genes"])
    embedding = tiny_adata.obsm["X_omnicell"]
    assert embedding.shape == (24, int(expected["n_components"]))
    assert embedding.dtype == np.float32
    np.testing.assert_allclose(
        align_signs(embedding, expected["sc_cell_embedding"]), expected["sc_cell_embedding"], atol=1e-4
    )
    assert np.all(embedding[0] == 0)  # the all-zero cell, as in the official code
    record = tiny_adata.uns["omnicell"]["embed_cells"]
    assert record["n_components"] == expected["n_components"]
    assert record["model_sha256"] == tiny_model.sha256
    assert record["n_empty_cells"] == 1
    assert "X_omnicell_niche" not in tiny_adata.obsm


def test_unprojected_embedding(tiny_adata, tiny_model, expected):
    _embed(tiny_adata, tiny_model, genes=expected["selected_genes"], projection=None, key_added="X_raw")
    np.testing.assert_allclose(tiny_adata.obsm["X_raw"], expected["sc_cell_unprojected"], atol=1e-4)
    norms = np.linalg.norm(tiny_adata.obsm["X_raw"][1:], axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_spatial_embedding_matches_official(tiny_adata, tiny_model, expected):
    _embed(
        tiny_adata,
        tiny_model,
        genes=expected["selected_genes"],
        spatial=True,
        n_neighbors=3,
        store_window=True,
        batch_size=5,
    )
    np.testing.assert_array_equal(tiny_adata.obsm["omnicell_neighbors"], expected["neighbors"])
    window = tiny_adata.obsm["X_omnicell_window"]
    assert window.shape == (24, 4, int(expected["n_components"]))
    reference = expected["sp_cell_embedding"]
    aligned = align_signs(window, reference)
    np.testing.assert_allclose(aligned, reference, atol=1e-3)
    np.testing.assert_allclose(align_signs(tiny_adata.obsm["X_omnicell"], reference[:, 0]), reference[:, 0], atol=1e-3)
    np.testing.assert_allclose(
        align_signs(tiny_adata.obsm["X_omnicell_niche"], reference.mean(1)), reference.mean(1), atol=1e-3
    )


@pytest.mark.parametrize("spatial", [False, True])
def test_batch_size_does_not_change_results(tiny_adata, tiny_model, expected, spatial):
    results = []
    for batch_size in (1, 7):
        adata = tiny_adata.copy()
        _embed(
            adata, tiny_model, genes=expected["selected_genes"], spatial=spatial, n_neighbors=3, batch_size=batch_size
        )
        results.append(adata.obsm["X_omnicell"])
    np.testing.assert_allclose(results[0], results[1], atol=1e-5, rtol=0)


def test_sparse_dense_and_backed_inputs_agree(tiny_adata, tiny_model, expected, tmp_path):
    dense = tiny_adata.copy()
    _embed(dense, tiny_model, genes=expected["selected_genes"])
    for matrix in (sp.csr_matrix(tiny_adata.X), sp.csc_matrix(tiny_adata.X)):
        sparse = tiny_adata.copy()
        sparse.X = matrix
        _embed(sparse, tiny_model, genes=expected["selected_genes"])
        np.testing.assert_allclose(sparse.obsm["X_omnicell"], dense.obsm["X_omnicell"], atol=1e-6)
    on_disk = tiny_adata.copy()
    on_disk.X = sp.csr_matrix(on_disk.X)
    on_disk.write_h5ad(tmp_path / "cells.h5ad")
    backed = ad.read_h5ad(tmp_path / "cells.h5ad", backed="r")
    _embed(backed, tiny_model, genes=expected["selected_genes"], batch_size=5)
    np.testing.assert_allclose(backed.obsm["X_omnicell"], dense.obsm["X_omnicell"], atol=1e-6)


def test_monotone_normalisation_gives_the_same_embedding(tiny_adata, tiny_model, expected):
    counts = tiny_adata.copy()
    _embed(counts, tiny_model, genes=expected["selected_genes"])
    normalised = tiny_adata.copy()
    normalised.layers["log"] = np.log1p(normalised.X / np.maximum(normalised.X.sum(1, keepdims=True), 1) * 1e4)
    normalised.X = np.zeros_like(normalised.X) - 1  # .X must not be read
    oc.pp.tokenize(normalised, tiny_model, genes=expected["selected_genes"], layer="log")
    with pytest.warns(UserWarning, match="express none"):
        oc.tl.embed_cells(normalised, tiny_model)
    np.testing.assert_allclose(normalised.obsm["X_omnicell"], counts.obsm["X_omnicell"], atol=1e-6)


def test_embed_without_tokenize_runs_it_with_defaults(tiny_adata, tiny_model):
    with pytest.warns(UserWarning, match="express none"):
        result = oc.tl.embed_cells(tiny_adata, tiny_model, copy=True)
    assert "omnicell" not in tiny_adata.uns and "X_omnicell" not in tiny_adata.obsm
    record = result.uns["omnicell"]["tokenize"]
    assert record["strategy"] == "hvg"
    assert len(record["genes"]) == 16  # 16 of 19 var names are in the vocabulary, fewer than n_genes
    assert result.obsm["X_omnicell"].shape[0] == 24


def test_embedding_tokenised_with_another_vocabulary_is_refused(tiny_adata, tiny_model, tiny_dir, tmp_path):
    oc.pp.tokenize(tiny_adata, tiny_model)
    other = oc.models.load(tiny_dir, device="cpu")
    other.vocab = oc.data.Vocabulary(
        {**{g: i for i, g in enumerate(tiny_model.vocab.genes[::-1])}, "<RNA_START>": 60, "<RNA_END>": 61}
    )
    before = tiny_adata.copy()
    with pytest.raises(ValueError, match="vocabulary differs"):
        oc.tl.embed_cells(tiny_adata, other)
    assert set(tiny_adata.obsm) == set(before.obsm)


def test_h5ad_round_trip(tiny_adata, tiny_model, expected, tmp_path):
    _embed(tiny_adata, tiny_model, genes=expected["selected_genes"], spatial=True, n_neighbors=3, store_window=True)
    tiny_adata.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(back.obsm["X_omnicell_window"], tiny_adata.obsm["X_omnicell_window"])
    assert list(back.uns["omnicell"]["tokenize"]["genes"]) == list(expected["selected_genes"])
    assert back.uns["omnicell"]["embed_cells"]["model"] == "official_tiny"


def test_results_work_with_scanpy(tiny_adata, tiny_model, expected):
    import scanpy as sc

    _embed(tiny_adata, tiny_model, genes=expected["selected_genes"])
    sc.pp.neighbors(tiny_adata, use_rep="X_omnicell", n_neighbors=5)
    sc.tl.leiden(tiny_adata, flavor="igraph", n_iterations=2, resolution=0.5)
    assert tiny_adata.obs["leiden"].notna().all() and tiny_adata.obsp["connectivities"].shape == (24, 24)
    # scanpy's graph is the Euclidean kNN graph of the embedding (it read obsm['X_omnicell'] as is)
    embedding = tiny_adata.obsm["X_omnicell"].astype(np.float64)
    pairwise = np.linalg.norm(embedding[:, None] - embedding[None], axis=-1)
    np.fill_diagonal(pairwise, np.inf)
    distances = tiny_adata.obsp["distances"].tocsr()
    for cell in range(24):
        row = distances[cell]
        assert row.nnz == 4
        np.testing.assert_allclose(row.data, pairwise[cell, row.indices], rtol=1e-4, atol=1e-5)
        assert row.data.max() <= np.sort(pairwise[cell])[3] + 1e-5  # the 4 nearest other cells


def test_token_batch_getter(tiny_adata, tiny_model, expected):
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"])
    batch = oc.get.token_batch(tiny_adata, [0, 1, 2], tiny_model)
    np.testing.assert_array_equal(batch.tokens, expected["sc_tokens"][:3])
    np.testing.assert_allclose(batch.values, expected["sc_values"][:3])
    np.testing.assert_array_equal(batch.expressed, expected["sc_mask"][:3].astype(bool))
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"], spatial=True, n_neighbors=3)
    spatial = oc.get.token_batch(tiny_adata, np.arange(24), tiny_model)
    np.testing.assert_array_equal(spatial.tokens, expected["sp_tokens"])
    np.testing.assert_allclose(spatial.values, expected["sp_values"])
    np.testing.assert_allclose(spatial.positions, expected["sp_positions"])
