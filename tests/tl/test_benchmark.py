"""benchmark: scib-metrics on real PBMC embeddings, with exact neighbours; a batch-shifted embedding scores worse."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from sklearn.neighbors import NearestNeighbors

import omnicell as oc
from omnicell.tl._benchmark import exact_neighbors


@pytest.fixture
def pbmc_batches():
    """pbmc68k_reduced split at random into two batches, with a copy of its PCA shifted in one batch."""
    adata = sc.datasets.pbmc68k_reduced()
    batch = np.random.default_rng(0).choice(["a", "b"], adata.n_obs)
    adata.obs["batch"] = batch
    shifted = adata.obsm["X_pca"].copy()
    shifted[batch == "b"] += 3.0 * shifted.std(0)
    adata.obsm["X_shifted"] = shifted
    return adata


def test_exact_neighbors():
    points = np.random.default_rng(1).normal(size=(200, 5)).astype(np.float32)
    result = exact_neighbors(points, 10)
    distances, indices = NearestNeighbors(n_neighbors=10, algorithm="brute").fit(points).kneighbors(points)
    np.testing.assert_array_equal(result.indices, indices)
    np.testing.assert_allclose(result.distances, distances, rtol=1e-5)
    assert (result.indices[:, 0] == np.arange(200)).all()  # self first, as scib-metrics expects


@pytest.mark.slow  # scib-metrics compiles its metrics with jax and numba on first use
def test_batch_shift_is_penalised(pbmc_batches, tmp_path):
    import scib_metrics.nearest_neighbors as neighbors_module

    original = neighbors_module.pynndescent
    oc.tl.benchmark(
        pbmc_batches, label_key="bulk_labels", batch_key="batch", embeddings=["X_pca", "X_shifted"],
        # the slowest metrics to compile are left out to keep the test short
        bio_conservation={"isolated_labels": False, "nmi_ari_cluster_labels_kmeans": False},
        batch_correction={"bras": False, "pcr_comparison": False},
    )  # fmt: skip
    assert neighbors_module.pynndescent is original  # the exact search was swapped in only for the run
    record = pbmc_batches.uns["omnicell"]["benchmark"]
    results = record["results"]
    assert list(results.index) == ["X_pca", "X_shifted"]
    types = dict(zip(results.columns, record["metric_types"], strict=True))
    assert types["iLISI"] == "Batch correction" and types["cLISI"] == "Bio conservation"
    assert types["Total"] == "Aggregate score" and "BRAS" not in types and "KMeans NMI" not in types
    assert record["batch_correction"] == "ilisi_knn, kbet_per_label, graph_connectivity"
    # Batches of X_pca are random, so they mix; the shifted embedding separates them.
    assert results.loc["X_pca", "iLISI"] > 0.8 > 0.1 > results.loc["X_shifted", "iLISI"]
    assert results.loc["X_pca", "KBET"] > 0.8 > 0.1 > results.loc["X_shifted", "KBET"]
    assert results.loc["X_pca", "Batch correction"] > results.loc["X_shifted", "Batch correction"] + 0.3
    batch_metrics = [c for c, t in types.items() if t == "Batch correction"]
    assert results.loc["X_pca", "Batch correction"] == pytest.approx(results.loc["X_pca", batch_metrics].mean())
    expected_total = 0.6 * results["Bio conservation"] + 0.4 * results["Batch correction"]
    np.testing.assert_allclose(results["Total"], expected_total)
    path = tmp_path / "benchmarked.h5ad"
    pbmc_batches.write_h5ad(path)
    stored = ad.read_h5ad(path).uns["omnicell"]["benchmark"]
    np.testing.assert_allclose(stored["results"].to_numpy(), results.to_numpy())


def test_bad_input(pbmc_batches):
    with pytest.raises(KeyError, match="embed_cells"):
        oc.tl.benchmark(pbmc_batches, label_key="bulk_labels", batch_key="batch")  # no X_omnicell
    with pytest.raises(KeyError, match=r"sc\.pp\.pca"):
        oc.tl.benchmark(
            pbmc_batches, label_key="bulk_labels", batch_key="batch", embeddings=["X_pca"], pre_integrated_key="X_raw"
        )
    with pytest.raises(ValueError, match="unknown metrics"):
        oc.tl.benchmark(
            pbmc_batches,
            label_key="bulk_labels",
            batch_key="batch",
            embeddings=["X_pca"],
            batch_correction={"kbet": False},
        )
    with pytest.raises(ValueError, match="90"):
        oc.tl.benchmark(pbmc_batches[:80].copy(), label_key="bulk_labels", batch_key="batch", embeddings=["X_pca"])
    with pytest.raises(KeyError, match="label_key"):
        oc.tl.benchmark(pbmc_batches, label_key="cell_type", batch_key="batch", embeddings=["X_pca"])
    assert "omnicell" not in pbmc_batches.uns
