"""Gene identity through the public API on real datasets, against the released vocabulary."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc

import omnicell as oc
from conftest import STARMAP


def test_pbmc68k_symbols_map(official_vocab_model):
    adata = sc.datasets.pbmc68k_reduced()
    oc.pp.map_genes(adata, official_vocab_model)
    record = adata.uns["omnicell"]["map_genes"]
    assert record["species"] == "human"
    assert record["n_matched"] / adata.n_vars >= 0.95
    ids = adata.var["omnicell_gene_id"]
    assert ids["CD3E"] == "ENSG00000198851" and ids["MS4A1"] == "ENSG00000156738"
    matched = ids[ids != ""]
    assert matched.is_unique  # never the same gene twice


def test_starmap_mouse_symbols_map_through_orthologs(official_vocab_model):
    adata = ad.read_h5ad(STARMAP)
    oc.pp.map_genes(adata, official_vocab_model)
    record = adata.uns["omnicell"]["map_genes"]
    assert record["species"] == "mouse"
    assert record["n_matched"] / adata.n_vars >= 0.85
    assert adata.var["omnicell_gene_id"].get("Gad1") == "ENSG00000128683"  # GAD1


def test_versioned_ensembl_ids_map_completely(official_vocab_model):
    genes = official_vocab_model.vocab.genes[:2000:7]
    adata = ad.AnnData(np.ones((3, len(genes)), dtype=np.float32))
    adata.var_names = [f"{g}.{i % 9 + 1}" for i, g in enumerate(genes)]
    oc.pp.map_genes(adata, official_vocab_model)
    assert adata.uns["omnicell"]["map_genes"]["n_matched"] == len(genes)


def test_poor_match_warns_with_examples(official_vocab_model):
    adata = ad.AnnData(np.ones((2, 4), dtype=np.float32))
    adata.var_names = ["CD3E", "NOTAGENE1", "NOTAGENE2", "NOTAGENE3"]
    with pytest.warns(UserWarning, match=r"Only 1 of 4 genes matched.*NOTAGENE1"):
        oc.pp.map_genes(adata, official_vocab_model)


def test_pbmc68k_embeds_end_to_end_from_raw(official_vocab_model):
    adata = sc.datasets.pbmc68k_reduced()
    oc.pp.tokenize(adata, official_vocab_model, use_raw=True, n_genes=300, strategy="expressed")
    oc.tl.embed_cells(adata, official_vocab_model, batch_size=128)
    record = adata.uns["omnicell"]["tokenize"]
    assert record["n_vocabulary_genes"] >= 0.95 * adata.raw.n_vars
    assert adata.var["omnicell_gene_id"]["CD3E"] == "ENSG00000198851"
    # The same cells given with Ensembl ids (those the symbols mapped to; unmatched genes left out)
    # embed to the same values: the symbols reached the right vocabulary tokens.
    ids = adata.var["omnicell_gene_id"].reindex(adata.raw.var_names).fillna("").to_numpy()
    keep = ids != ""
    by_id = ad.AnnData(X=adata.raw.X[:, keep].copy())
    by_id.var_names = ids[keep]
    by_id.obs_names = adata.obs_names
    oc.pp.tokenize(by_id, official_vocab_model, n_genes=300, strategy="expressed")
    oc.tl.embed_cells(by_id, official_vocab_model, batch_size=128)
    embedding = adata.obsm["X_omnicell"]
    assert embedding.shape[0] == 700 and np.isfinite(embedding).all()
    np.testing.assert_allclose(embedding, by_id.obsm["X_omnicell"], rtol=1e-5, atol=1e-6)
    # ... and not to those of a wrong mapping (the ids shuffled among the genes)
    shuffled = by_id.copy()
    shuffled.var_names = np.random.default_rng(0).permutation(ids[keep])
    oc.pp.tokenize(shuffled, official_vocab_model, n_genes=300, strategy="expressed")
    oc.tl.embed_cells(shuffled, official_vocab_model, batch_size=128)
    assert np.abs(shuffled.obsm["X_omnicell"] - embedding).max() > 0.1
