"""pl.benchmark: the scib-metrics table of tl.benchmark, best embedding first, values written in."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scanpy as sc

import omnicell as oc

pytestmark = pytest.mark.slow  # the fixture runs scib-metrics (jax/numba compilation on first use)

FAST_BIO = {"isolated_labels": False, "nmi_ari_cluster_labels_kmeans": False, "clisi_knn": False}
FAST_BATCH = {"bras": False, "kbet_per_label": False, "pcr_comparison": False, "ilisi_knn": False}


@pytest.fixture(scope="module")
def benchmarked():
    adata = sc.datasets.pbmc68k_reduced()
    batch = np.random.default_rng(0).choice(["a", "b"], adata.n_obs)
    adata.obs["batch"] = batch
    shifted = adata.obsm["X_pca"].copy()
    shifted[batch == "b"] += 3.0 * shifted.std(0)
    adata.obsm["X_shifted"] = shifted
    oc.tl.benchmark(adata, label_key="bulk_labels", batch_key="batch", embeddings=["X_pca", "X_shifted"],
                    bio_conservation=FAST_BIO, batch_correction=FAST_BATCH)  # fmt: skip
    return adata


def test_table_layout(benchmarked, tmp_path):
    path = tmp_path / "benchmark.png"
    ax = oc.pl.benchmark(benchmarked, show=False, save=str(path))
    assert path.stat().st_size > 0
    results = benchmarked.uns["omnicell"]["benchmark"]["results"]
    order = list(results.sort_values("Total", ascending=False).index)
    assert [t.get_text() for t in ax.get_yticklabels()] == order == ["X_pca", "X_shifted"]
    columns = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert columns == ["Silhouette label", "Graph connectivity", "Batch correction", "Bio conservation", "Total"]
    texts = {t.get_text() for t in ax.texts}
    assert {"Bio conservation", "Batch correction", "Aggregate score"} <= texts
    for embedding in order:
        for column in results.columns:
            assert f"{results.loc[embedding, column]:.2f}" in texts
    assert len(ax.patches) == 2 * 3  # one bar per embedding and aggregate score
    plt.close(ax.figure)


def test_scaled_and_sorted(benchmarked):
    ax = oc.pl.benchmark(benchmarked, min_max_scale=True, sort_by="Silhouette label", show=False)
    results = benchmarked.uns["omnicell"]["benchmark"]["results"]
    best = results["Silhouette label"].idxmax()
    assert ax.get_yticklabels()[0].get_text() == best
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("1.00") >= 2 and texts.count("0.00") >= 2  # each metric scaled to [0, 1]
    plt.close(ax.figure)
    with pytest.raises(KeyError, match="sort_by"):
        oc.pl.benchmark(benchmarked, sort_by="F1", show=False)


def test_needs_results():
    with pytest.raises(KeyError, match=r"oc\.tl\.benchmark"):
        oc.pl.benchmark(sc.datasets.pbmc68k_reduced(), show=False)
