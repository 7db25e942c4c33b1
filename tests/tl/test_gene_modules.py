"""gene_modules: soft-thresholded similarity, community detection, module scores."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from sklearn.metrics import adjusted_rand_score

import omnicell as oc
from omnicell.tl._gene_modules import gene_similarity


@pytest.fixture
def planted():
    """Cells x 90 genes whose varm embeddings form three tight clusters (and 5 genes without one)."""
    rng = np.random.default_rng(0)
    n_genes = 95
    centres = rng.normal(size=(3, 16)) * 4
    truth = np.repeat(np.arange(3), 30)
    embedding = np.full((n_genes, 16), np.nan, dtype=np.float32)
    embedding[:90] = centres[truth] + rng.normal(scale=0.5, size=(90, 16))
    adata = ad.AnnData(rng.poisson(1.0, size=(200, n_genes)).astype(np.float32))
    adata.var_names = [f"g{i}" for i in range(n_genes)]
    adata.varm["omnicell"] = embedding
    return adata, truth


@pytest.mark.parametrize(("method", "similarity"), [("leiden", "cosine"), ("louvain", "gaussian")])
def test_planted_modules_are_found(planted, method, similarity):
    adata, truth = planted
    oc.tl.gene_modules(adata, method=method, similarity=similarity, resolution=0.5, random_state=1)
    modules = adata.var["omnicell_module"]
    assert modules.iloc[90:].isna().all()  # genes without embedding
    assert adjusted_rand_score(truth, modules.iloc[:90].astype(str)) == 1.0
    assert list(modules.cat.categories) == ["0", "1", "2"]
    record = adata.uns["omnicell"]["gene_modules"]
    assert list(record["sizes"]) == [30, 30, 30] and record["method"] == method
    for label in ("0", "1", "2"):
        genes = list(adata.var_names[(modules == label).to_numpy()])
        reference = sc.tl.score_genes(adata, genes, ctrl_size=50, random_state=1, copy=True, score_name="s").obs["s"]
        np.testing.assert_allclose(adata.obs[f"omnicell_module_{label}"], reference)


def test_seeded_and_min_size(planted):
    adata, _ = planted
    oc.tl.gene_modules(adata, resolution=3.0, random_state=0, min_size=1, score=False)
    first = adata.var["omnicell_module"].copy()
    oc.tl.gene_modules(adata, resolution=3.0, random_state=0, min_size=1, score=False)
    assert first.equals(adata.var["omnicell_module"])
    assert not any(c.startswith("omnicell_module_") for c in adata.obs.columns)
    sizes = first.value_counts()
    oc.tl.gene_modules(adata, resolution=3.0, random_state=0, min_size=int(sizes.max()), score=False)
    kept = adata.var["omnicell_module"]
    assert kept.notna().sum() == (sizes == sizes.max()).sum() * sizes.max()


def test_similarity_is_soft_thresholded():
    embedding = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    adjacency = gene_similarity(embedding, power=2)
    assert adjacency[0, 1] == pytest.approx(0.5)  # cos 45 degrees squared
    assert adjacency[0, 2] == 0.0 and np.all(np.diag(adjacency) == 0)
    gaussian = gene_similarity(embedding, similarity="gaussian", power=1)
    d2 = np.array([1.0, 4.0, 5.0])  # squared distances 0-1, 0-2, 1-2; sigma^2 = median d^2 = 4
    np.testing.assert_allclose([gaussian[0, 1], gaussian[0, 2], gaussian[1, 2]], np.exp(-d2 / 8))


def test_bad_input(planted):
    adata, _ = planted
    with pytest.raises(KeyError, match="embed_genes"):
        oc.tl.gene_modules(adata, use_rep="missing")
    with pytest.raises(ValueError, match="method"):
        oc.tl.gene_modules(adata, method="kmeans")
    with pytest.raises(ValueError, match="min_size"):
        oc.tl.gene_modules(adata, min_size=100)
    assert "omnicell_module" not in adata.var and "omnicell" not in adata.uns
