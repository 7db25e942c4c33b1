"""tokenize on real-world inputs: the paper's gene choice, backed files, raw, MuData, squidpy graphs, sections."""

from __future__ import annotations

import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

import omnicell as oc


@pytest.fixture
def counts_adata(tiny_model) -> ad.AnnData:
    """300 cells over the tiny model's 60 genes: sparse negative-binomial counts, two sections."""
    rng = np.random.default_rng(0)
    genes = tiny_model.vocab.genes
    means = rng.gamma(0.6, 2.0, size=len(genes))
    counts = rng.negative_binomial(0.8, 0.8 / (0.8 + means), size=(300, len(genes))).astype(np.float32)
    adata = ad.AnnData(X=sp.csr_matrix(counts))
    adata.var_names = genes
    adata.obs_names = [f"c{i}" for i in range(300)]
    adata.obsm["spatial"] = rng.uniform(0, 200, size=(300, 2))
    adata.obs["section"] = pd.Categorical(np.repeat(["s1", "s2"], 150))
    return adata


def test_expressed_strategy_sequences(counts_adata, tiny_model):
    oc.pp.tokenize(counts_adata, tiny_model, strategy="expressed", n_genes=20)
    record = counts_adata.uns["omnicell"]["tokenize"]
    assert record["strategy"] == "expressed"
    assert len(record["genes"]) == 60 and len(record["zero_fill"]) == 20
    batch = oc.get.token_batch(counts_adata, np.arange(10), tiny_model)
    X = counts_adata.X.toarray()
    token_of = {t: i for i, t in enumerate(record["token_ids"])}
    for row in range(10):
        genes = [
            token_of[t] for t, gene_slot in zip(batch.tokens[row], batch.cell_index[row] >= 0, strict=True) if gene_slot
        ]
        n_expressed = int((X[row] > 0).sum())
        shown = min(n_expressed, 20)
        values = X[row, genes]
        assert (values[:shown] > 0).all() and (values[shown:] == 0).all()
        assert (np.diff(values[:shown]) <= 0).all()  # descending
        assert set(np.asarray(genes)[shown:]) <= set(np.asarray(record["zero_fill"]))  # zeros from the HVGs
        assert len(genes) == 20


def test_expressed_strategy_embedding_is_independent_of_the_batch(counts_adata, tiny_model):
    genes = list(counts_adata.var_names[::-1])
    full = counts_adata.copy()
    oc.pp.tokenize(full, tiny_model, genes=genes, strategy="expressed", n_genes=12)
    oc.tl.embed_cells(full, tiny_model, batch_size=64)
    for index in (0, 7, 123):
        alone = counts_adata[index : index + 1].copy()
        oc.pp.tokenize(alone, tiny_model, genes=genes, strategy="expressed", n_genes=12)
        oc.tl.embed_cells(alone, tiny_model, batch_size=1)
        np.testing.assert_allclose(alone.obsm["X_omnicell"][0], full.obsm["X_omnicell"][index], atol=1e-6)


def test_padding_when_cells_have_fewer_genes_than_the_length(counts_adata, tiny_model):
    """With a short fill list, cells differ in length; padded batches equal one-cell batches."""
    counts_adata.X = sp.csr_matrix(counts_adata.X.toarray() * (np.random.default_rng(3).random((300, 60)) < 0.15))
    genes = list(counts_adata.var_names[:25])
    oc.pp.tokenize(counts_adata, tiny_model, genes=genes, strategy="expressed", n_genes=25)
    batch = oc.get.token_batch(counts_adata, np.arange(40), tiny_model)
    assert batch.padding_mask is None  # genes list length 25 == n_genes: every cell is full
    oc.pp.tokenize(counts_adata, tiny_model, strategy="expressed", n_genes=50)  # fill: top 50 HVGs of 60
    batch = oc.get.token_batch(counts_adata, np.arange(300), tiny_model)
    lengths = (batch.cell_index >= 0).sum(1)
    assert lengths.max() == 50
    one = counts_adata.copy()
    oc.tl.embed_cells(counts_adata, tiny_model, batch_size=300)
    oc.tl.embed_cells(one, tiny_model, batch_size=1)
    np.testing.assert_allclose(counts_adata.obsm["X_omnicell"], one.obsm["X_omnicell"], atol=1e-5)


def test_backed_file_equals_in_memory(counts_adata, tiny_model, tmp_path):
    counts_adata.write_h5ad(tmp_path / "cells.h5ad")
    backed = ad.read_h5ad(tmp_path / "cells.h5ad", backed="r")
    for adata in (counts_adata, backed):
        oc.pp.tokenize(adata, tiny_model, n_genes=30, spatial=True, n_neighbors=4, library_key="section")
        oc.tl.embed_cells(adata, tiny_model, batch_size=37)
    assert list(backed.uns["omnicell"]["tokenize"]["genes"]) == list(counts_adata.uns["omnicell"]["tokenize"]["genes"])
    np.testing.assert_array_equal(backed.obsm["omnicell_neighbors"], counts_adata.obsm["omnicell_neighbors"])
    np.testing.assert_allclose(backed.obsm["X_omnicell"], counts_adata.obsm["X_omnicell"], atol=1e-6)
    np.testing.assert_allclose(backed.obsm["X_omnicell_niche"], counts_adata.obsm["X_omnicell_niche"], atol=1e-6)


def test_hvg_choice_equals_scanpy(counts_adata, tiny_model):
    oc.pp.tokenize(counts_adata, tiny_model, n_genes=25)
    table = sc.pp.highly_variable_genes(counts_adata, flavor="seurat_v3", n_top_genes=25, inplace=False)
    assert list(counts_adata.uns["omnicell"]["tokenize"]["genes"]) == list(
        counts_adata.var_names[table["highly_variable"].to_numpy()]
    )


def test_library_key_and_squidpy_graph(counts_adata, tiny_model):
    import squidpy as sq

    sections = counts_adata.obs["section"].to_numpy()
    counts_adata.obsm["spatial"][150:] = counts_adata.obsm["spatial"][:150]  # sections overlap in space
    oc.pp.tokenize(counts_adata, tiny_model, spatial=True, n_neighbors=5, library_key="section")
    neighbors = counts_adata.obsm["omnicell_neighbors"]
    assert (sections[neighbors] == sections[:, None]).all()
    sq.gr.spatial_neighbors_knn(counts_adata, n_neighs=5, library_key="section")
    graph = counts_adata.copy()
    oc.pp.tokenize(graph, tiny_model, spatial=True, n_neighbors=5, neighbors_key="spatial_neighbors")
    np.testing.assert_array_equal(graph.obsm["omnicell_neighbors"], neighbors)
    with pytest.raises(KeyError, match="spatial_neighbors_knn"):
        oc.pp.tokenize(counts_adata, tiny_model, spatial=True, neighbors_key="nope")


def test_coord_scale_changes_only_rotary_positions(counts_adata, tiny_model):
    scaled = counts_adata.copy()
    scaled.obsm["spatial"] = scaled.obsm["spatial"] / 10
    oc.pp.tokenize(counts_adata, tiny_model, n_genes=20, spatial=True, n_neighbors=3)
    oc.pp.tokenize(scaled, tiny_model, n_genes=20, spatial=True, n_neighbors=3, coord_scale=10.0)
    np.testing.assert_array_equal(scaled.obsm["omnicell_neighbors"], counts_adata.obsm["omnicell_neighbors"])
    for adata in (counts_adata, scaled):
        oc.tl.embed_cells(adata, tiny_model)
    np.testing.assert_allclose(scaled.obsm["X_omnicell"], counts_adata.obsm["X_omnicell"], atol=1e-4)


def test_small_section_pads_missing_neighbours(counts_adata, tiny_model):
    counts_adata.obs["section"] = ["tiny" if i < 3 else "big" for i in range(300)]
    with pytest.warns(UserWarning, match="3 cells have fewer than 4 neighbours"):
        oc.pp.tokenize(counts_adata, tiny_model, n_genes=20, spatial=True, n_neighbors=4, library_key="section")
    assert (counts_adata.obsm["omnicell_neighbors"][:3, 2:] == -1).all()
    oc.tl.embed_cells(counts_adata, tiny_model, store_window=True)
    window = counts_adata.obsm["X_omnicell_window"]
    assert np.isnan(window[:3, 3:]).all() and not np.isnan(window[3:]).any()
    np.testing.assert_allclose(counts_adata.obsm["X_omnicell_niche"][:3], window[:3, :3].mean(1), atol=1e-6)


def test_raw_and_layer_inputs(counts_adata, tiny_model):
    reference = counts_adata.copy()
    oc.pp.tokenize(reference, tiny_model, n_genes=30)
    oc.tl.embed_cells(reference, tiny_model)
    from_raw = counts_adata.copy()
    from_raw.raw = from_raw.copy()
    sc.pp.normalize_total(from_raw)
    sc.pp.log1p(from_raw)
    sc.pp.scale(from_raw)  # .X now negative: must not be read
    oc.pp.tokenize(from_raw, tiny_model, n_genes=30, use_raw=True)
    oc.tl.embed_cells(from_raw, tiny_model)
    np.testing.assert_allclose(from_raw.obsm["X_omnicell"], reference.obsm["X_omnicell"], atol=1e-6)
    with pytest.raises(ValueError, match="negative"):
        oc.pp.tokenize(from_raw, tiny_model, n_genes=30)


def test_mudata(counts_adata, tiny_model):
    protein = ad.AnnData(np.ones((300, 3), dtype=np.float32), obs=counts_adata.obs[[]].copy())
    mdata = md.MuData({"rna": counts_adata, "prot": protein})
    oc.pp.tokenize(mdata, tiny_model, n_genes=20)
    assert "omnicell_token" in mdata.mod["rna"].var
    oc.tl.embed_cells(mdata, tiny_model)
    np.testing.assert_array_equal(mdata.obsm["X_omnicell"], mdata.mod["rna"].obsm["X_omnicell"])
    copied = oc.tl.embed_cells(mdata, tiny_model, key_added="X_copy", copy=True)
    assert "X_copy" in copied.obsm and "X_copy" not in mdata.obsm
    with pytest.raises(KeyError, match="modalities"):
        oc.pp.tokenize(mdata, tiny_model, mod="atac")


def test_map_genes_records(counts_adata, tiny_model):
    counts_adata.var_names = [f"{g}.{i % 3 + 1}" for i, g in enumerate(counts_adata.var_names)]  # versioned ids
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oc.pp.map_genes(counts_adata, tiny_model)
    record = counts_adata.uns["omnicell"]["map_genes"]
    assert record["n_matched"] == 60 and record["n_unmatched"] == 0
    assert (counts_adata.var["omnicell_gene_id"] == [g.split(".")[0] for g in counts_adata.var_names]).all()
