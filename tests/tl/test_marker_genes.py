"""marker_genes: vectorised Wasserstein scores, the expression filter, scanpy's schema on pbmc68k_reduced."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from scipy.stats import wasserstein_distance

import omnicell as oc
from omnicell.tl._marker_genes import wasserstein_one_vs_rest

FIELDS = ("names", "scores", "logfoldchanges", "pvals", "pvals_adj")


def test_wasserstein_matches_scipy_with_ties_and_missing_values():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(80, 9))
    values[:10, 0] = 0.5  # ties
    values[:, 1] = np.round(values[:, 1])  # many ties
    values[rng.random(values.shape) < 0.15] = np.nan  # genes absent from some cells
    codes = rng.integers(-1, 4, size=80)  # -1: in no group (counts as rest)
    result = wasserstein_one_vs_rest(torch.from_numpy(values), torch.from_numpy(codes), 4).numpy()
    for g in range(4):
        for f in range(values.shape[1]):
            present = np.isfinite(values[:, f])
            inside, outside = values[present & (codes == g), f], values[present & (codes != g), f]
            assert result[g, f] == pytest.approx(wasserstein_distance(inside, outside), abs=1e-12)


@pytest.fixture
def pbmc_markers(pbmc, pbmc_model):
    oc.pp.tokenize(pbmc, pbmc_model, use_raw=True, n_genes=150, gene_key="gene_id")
    oc.tl.marker_genes(pbmc, "bulk_labels", pbmc_model, n_genes=10, pts=True, batch_size=128)
    return pbmc


def test_pbmc_markers_in_scanpy_schema(pbmc_markers, tmp_path):
    adata = pbmc_markers
    result = adata.uns["rank_genes_omnicell"]
    groups = list(adata.obs["bulk_labels"].cat.categories)
    assert result["params"] == {
        "groupby": "bulk_labels", "reference": "rest", "method": "omnicell_wasserstein",
        "use_raw": True, "layer": None, "corr_method": "none",
    }  # fmt: skip
    for field in FIELDS:
        assert list(result[field].dtype.names) == groups and len(result[field]) == 10
    assert result["scores"].dtype["CD34+"] == np.float32 and result["pvals"].dtype["CD34+"] == np.float64
    table = sc.get.rank_genes_groups_df(adata, None, key="rank_genes_omnicell")
    assert len(table) == 10 * len(groups)
    selected = set(adata.uns["omnicell"]["tokenize"]["genes"])
    assert set(table["names"]) <= selected
    expression = adata.raw.to_adata()
    for group in groups:
        part = table[table["group"] == group]
        scores = part["scores"].to_numpy()
        assert np.all(np.diff(scores) <= 1e-6)  # sorted by score
        members = (adata.obs["bulk_labels"] == group).to_numpy()
        genes = list(part["names"])
        inside = np.asarray(expression[members, genes].X.mean(0)).ravel()
        outside = np.asarray(expression[~members, genes].X.mean(0)).ravel()
        assert np.all(inside > outside)  # the expression filter
        np.testing.assert_allclose(part["logfoldchanges"], np.log2((inside + 1e-9) / (outside + 1e-9)), rtol=1e-4)
        np.testing.assert_allclose(part["pct_nz_group"], np.asarray((expression[members, genes].X > 0).mean(0)).ravel())
    assert table["pvals"].isna().all()

    path = tmp_path / "markers.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(sc.get.rank_genes_groups_df(back, None, key="rank_genes_omnicell"), table)


def test_pbmc_markers_are_the_top_wasserstein_genes(pbmc_markers, pbmc_model, tmp_path):
    """The listed genes are, among genes passing the filter, those with the highest mean distance."""
    adata = pbmc_markers
    store = tmp_path / "cells.zarr"
    genes = list(adata.uns["omnicell"]["tokenize"]["genes"][:40])
    oc.tl.embed_genes(adata, pbmc_model, level="cell", store=store, genes=genes, batch_size=128)
    import zarr

    values = zarr.open_group(str(store), mode="r")["embeddings"][:]
    members = (adata.obs["bulk_labels"] == "CD19+ B").to_numpy()
    reference = np.array([
        np.mean([wasserstein_distance(values[members, g, d], values[~members, g, d]) for d in range(values.shape[2])])
        for g in range(len(genes))
    ])  # fmt: skip
    oc.tl.marker_genes(adata, "bulk_labels", pbmc_model, store=store, n_genes=5, groups=["CD19+ B"], key_added="b")
    raw = adata.raw.to_adata()[:, genes].X
    higher = np.asarray(raw[members].mean(0)).ravel() > np.asarray(raw[~members].mean(0)).ravel()
    expected = [genes[i] for i in np.argsort(-np.where(higher, reference, -np.inf))[:5]]
    assert list(adata.uns["b"]["names"]["CD19+ B"]) == expected
    np.testing.assert_allclose(adata.uns["b"]["scores"]["CD19+ B"], np.sort(reference[higher])[::-1][:5], rtol=1e-5)


def test_bad_input(pbmc, pbmc_model):
    with pytest.raises(KeyError, match="not an obs column"):
        oc.tl.marker_genes(pbmc, "cell_type", pbmc_model)
    pbmc.obs["one"] = "x"
    with pytest.raises(ValueError, match="single group"):
        oc.tl.marker_genes(pbmc, "one", pbmc_model)
    with pytest.raises(ValueError, match="not categories"):
        oc.tl.marker_genes(pbmc, "bulk_labels", pbmc_model, groups=["T cells"])
    with pytest.raises(FileNotFoundError, match="embed_genes"):
        oc.tl.marker_genes(pbmc, "bulk_labels", pbmc_model, store="/nonexistent/cells.zarr")
    assert "rank_genes_omnicell" not in pbmc.uns and "omnicell" not in pbmc.uns


def test_short_groups_give_one_warning_and_their_counts_are_recorded(pbmc, pbmc_model):
    import warnings

    oc.pp.tokenize(pbmc, pbmc_model, use_raw=True, n_genes=150, gene_key="gene_id")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        oc.tl.marker_genes(pbmc, "bulk_labels", pbmc_model, batch_size=128)  # the default n_genes=100
    messages = [str(w.message) for w in caught if "more expressed" in str(w.message)]
    n_higher = pbmc.uns["omnicell"]["marker_genes"]["n_higher"]
    groups = list(pbmc.obs["bulk_labels"].cat.categories)
    short = [group for group in groups if n_higher[group] < 100]
    assert len(short) >= 2 and len(messages) == 1  # several short groups, one warning
    assert f"in {len(short)} of {len(groups)} groups" in messages[0]
    assert not any(group in messages[0] for group in short if n_higher[group] != min(n_higher.values()))
    logfc = pbmc.uns["rank_genes_omnicell"]["logfoldchanges"]
    for group in groups:  # the recorded count is where the list turns from higher to completed entries
        assert (logfc[group][: n_higher[group]] > 0).all() and (logfc[group][n_higher[group] :] <= 0).all()
