"""pl.gene_modules: module scores on an embedding and a module x group heatmap."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import omnicell as oc


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    n_cells, n_genes = 150, 60
    groups = np.repeat(["p", "q", "r"], 50)
    programme = np.repeat(np.arange(3), 20)  # genes 0-19, 20-39, 40-59 belong to groups p, q, r
    rate = np.where(programme[None, :] == np.repeat(np.arange(3), 50)[:, None], 5.0, 0.5)
    adata = ad.AnnData(np.log1p(rng.poisson(rate)).astype(np.float32))
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    adata.obs["group"] = pd.Categorical(groups)
    adata.obsm["X_umap"] = rng.normal(size=(n_cells, 2))
    centres = rng.normal(size=(3, 8)) * 4
    adata.varm["omnicell"] = (centres[programme] + rng.normal(scale=0.3, size=(n_genes, 8))).astype(np.float32)
    oc.tl.gene_modules(adata, resolution=0.5, random_state=0, ctrl_size=20)
    return adata


def test_panels_and_heatmap(scored, tmp_path):
    path = tmp_path / "modules.png"
    axes = oc.pl.gene_modules(scored, "group", show=False, save=str(path))
    assert path.stat().st_size > 0
    modules = list(scored.uns["omnicell"]["gene_modules"]["modules"])
    assert [ax.get_title() for ax in axes["embedding"]] == [f"module {m}" for m in modules]
    heat = axes["heatmap"]
    assert [t.get_text() for t in heat.get_yticklabels()] == [f"module {m}" for m in modules]
    assert [t.get_text() for t in heat.get_xticklabels()] == ["p", "q", "r"]
    values = heat.get_images()[0].get_array()
    means = np.array([[scored.obs.loc[scored.obs["group"] == g, f"omnicell_module_{m}"].mean() for g in "pqr"]
                      for m in modules])  # fmt: skip
    expected = (means - means.mean(1, keepdims=True)) / means.std(1, keepdims=True)
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    # Each planted module scores highest in its own group.
    assert sorted(np.argmax(values, axis=1)) == [0, 1, 2]
    plt.close("all")


def test_heatmap_only_and_errors(scored):
    axes = oc.pl.gene_modules(scored, "group", basis=None, modules=["0"], zscore=False, show=False)
    assert "heatmap" in axes and "embedding" in axes  # umap is found by default
    del scored.obsm["X_umap"]
    axes = oc.pl.gene_modules(scored, "group", show=False)
    assert set(axes) == {"heatmap"}
    with pytest.raises(ValueError, match="Nothing to draw"):
        oc.pl.gene_modules(scored)
    with pytest.raises(ValueError, match="Unknown modules"):
        oc.pl.gene_modules(scored, "group", modules=["9"])
    del scored.var["omnicell_module"]
    with pytest.raises(KeyError, match="gene_modules"):
        oc.pl.gene_modules(scored, "group")
    plt.close("all")
