"""pl.marker_genes: scanpy's dot plot of oc.tl.marker_genes results."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import scanpy as sc

import omnicell as oc


def test_dotplot_of_pbmc_markers(pbmc, pbmc_model, tmp_path):
    oc.pp.tokenize(pbmc, pbmc_model, use_raw=True, n_genes=120, gene_key="gene_id")
    oc.tl.marker_genes(pbmc, "bulk_labels", pbmc_model, n_genes=8, batch_size=128)
    figure = oc.pl.marker_genes(pbmc, n_genes=3, return_fig=True, show=False)
    assert isinstance(figure, sc.pl.DotPlot)
    table = sc.get.rank_genes_groups_df(pbmc, None, key="rank_genes_omnicell")
    top = table.groupby("group", observed=True).head(3)
    groups = list(pbmc.obs["bulk_labels"].cat.categories)
    assert list(figure.var_names) == [gene for g in groups for gene in top.loc[top["group"] == g, "names"]]
    assert list(figure.var_groups.labels) == groups
    assert list(figure.categories) == list(pbmc.obs["bulk_labels"].cat.categories)
    axes = oc.pl.marker_genes(pbmc, n_genes=2, groups=["CD19+ B", "CD34+"], show=False)
    assert "mainplot_ax" in axes
    figdir = sc.settings.figdir
    sc.settings.figdir = tmp_path
    try:
        oc.pl.marker_genes(pbmc, n_genes=2, show=False, save="_pbmc.png")
    finally:
        sc.settings.figdir = figdir
    assert (tmp_path / "dotplot__pbmc.png").exists()
    plt.close("all")


def test_needs_markers(pbmc):
    with pytest.raises(KeyError, match="marker_genes"):
        oc.pl.marker_genes(pbmc)
