"""pl.expert_heatmap: groups as rows, experts as columns, diverging z-scores, lineage ordering."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import omnicell as oc

LINEAGE = {
    "CD4+/CD25 T Reg": "T/NK", "CD4+/CD45RA+/CD25- Naive T": "T/NK", "CD4+/CD45RO+ Memory": "T/NK",
    "CD8+ Cytotoxic T": "T/NK", "CD8+/CD45RA+ Naive Cytotoxic": "T/NK", "CD56+ NK": "T/NK",
    "CD19+ B": "B", "CD14+ Monocyte": "myeloid", "Dendritic": "myeloid", "CD34+": "progenitor",
}  # fmt: skip


@pytest.fixture
def routed(pbmc, pbmc_model):
    oc.pp.tokenize(pbmc, pbmc_model, use_raw=True, n_genes=100, gene_key="gene_id")
    oc.tl.expert_usage(pbmc, "bulk_labels", pbmc_model)
    pbmc.obs["lineage"] = pbmc.obs["bulk_labels"].map(LINEAGE).astype("category")
    return pbmc


def test_heatmap_layout_and_colours(routed, tmp_path):
    path = tmp_path / "experts.png"
    axes = oc.pl.expert_heatmap(routed, "bulk_labels", show=False, save=str(path))
    assert path.stat().st_size > 0
    heatmap = axes["heatmap"]
    groups = list(routed.obs["bulk_labels"].cat.categories)
    assert [t.get_text() for t in heatmap.get_yticklabels()] == groups
    n_experts = routed.obsm["omnicell_experts"].shape[1]
    assert [t.get_text() for t in heatmap.get_xticklabels()] == [f"Expert_{i}" for i in range(n_experts)]
    image = heatmap.get_images()[0]
    zscore = routed.uns["omnicell"]["expert_usage"]["zscore"]
    np.testing.assert_allclose(image.get_array(), zscore.loc[groups].to_numpy())
    assert image.get_cmap().name == "RdBu_r"
    assert image.norm.vmin == pytest.approx(-image.norm.vmax)
    assert image.norm.vmax == pytest.approx(np.abs(zscore.to_numpy()).max())
    assert axes["colorbar"].get_ylabel() == "z-score"
    plt.close("all")


def test_rows_ordered_by_lineage(routed):
    axes = oc.pl.expert_heatmap(routed, "bulk_labels", lineage_key="lineage", show=False)
    rows = [t.get_text() for t in axes["lineage"].get_yticklabels()]
    order = list(routed.obs["lineage"].cat.categories)
    ranks = [order.index(LINEAGE[row]) for row in rows]
    assert ranks == sorted(ranks) and sorted(rows) == sorted(LINEAGE)
    values = axes["heatmap"].get_images()[0].get_array()
    zscore = routed.uns["omnicell"]["expert_usage"]["zscore"]
    np.testing.assert_allclose(values, zscore.loc[rows].to_numpy())
    legend = axes["colorbar"].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == order
    plt.close("all")


def test_means_and_errors(routed):
    axes = oc.pl.expert_heatmap(routed, "bulk_labels", zscore=False, show=False)
    mean = routed.uns["omnicell"]["expert_usage"]["mean"]
    np.testing.assert_allclose(axes["heatmap"].get_images()[0].get_array(), mean.to_numpy())
    del routed.obsm["omnicell_experts"]
    with pytest.raises(KeyError, match="expert_usage"):
        oc.pl.expert_heatmap(routed, "bulk_labels")
    plt.close("all")
