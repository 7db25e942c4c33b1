"""evaluate_clustering: Leiden sweep scored against labels, best clusters kept, as scanpy would compute them."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

import omnicell as oc
from _cell_data import starmap_pca


@pytest.fixture
def starmap():
    return starmap_pca()


def test_sweep_matches_scanpy_and_keeps_the_best(starmap, tmp_path):
    oc.tl.evaluate_clustering(starmap, "cell_type", use_rep="X_pca", resolutions=[0.2, 0.6, 1.0], random_state=0)
    record = starmap.uns["omnicell"]["evaluate_clustering"]
    table = record["table"]
    assert list(table["resolution"]) == [0.2, 0.6, 1.0]
    # The kept clusters are scanpy's neighbours + Leiden at the best resolution.
    reference = starmap.copy()
    sc.pp.neighbors(reference, use_rep="X_pca", n_neighbors=15, random_state=0)
    for row in table.itertuples():
        sc.tl.leiden(
            reference, resolution=row.resolution, flavor="igraph", n_iterations=2, random_state=0, key_added="ref"
        )
        truth = reference.obs["cell_type"]
        assert row.ari == pytest.approx(adjusted_rand_score(truth, reference.obs["ref"]))
        assert row.nmi == pytest.approx(normalized_mutual_info_score(truth, reference.obs["ref"]))
        assert row.n_clusters == reference.obs["ref"].nunique()
        if row.resolution == record["best_resolution"]:
            assert adjusted_rand_score(reference.obs["ref"], starmap.obs["omnicell_leiden"]) == 1.0
    best = int(np.argmax(table["ari"] + table["nmi"]))
    assert record["best_resolution"] == table["resolution"].iloc[best]
    assert record["ari"] == table["ari"].iloc[best] and record["nmi"] == table["nmi"].iloc[best]
    clusters = starmap.obs["omnicell_leiden"]
    assert clusters.dtype == "category" and list(clusters.cat.categories) == [
        str(i) for i in range(record["n_clusters"])
    ]
    sizes = clusters.value_counts(sort=False).to_numpy()
    assert np.all(np.diff(sizes) <= 0)  # numbered by decreasing size
    # Expression PCA recovers cell types far above chance; shuffled labels score about zero.
    assert record["ari"] > 0.3
    starmap.obs["shuffled"] = np.random.default_rng(0).permutation(starmap.obs["cell_type"].to_numpy())
    shuffled = oc.tl.evaluate_clustering(starmap, "shuffled", use_rep="X_pca", resolutions=[0.6], copy=True)
    assert abs(shuffled.uns["omnicell"]["evaluate_clustering"]["ari"]) < 0.02
    path = tmp_path / "clustered.h5ad"
    starmap.write_h5ad(path)
    stored = ad.read_h5ad(path).uns["omnicell"]["evaluate_clustering"]["table"]
    np.testing.assert_allclose(stored["ari"].to_numpy(), table["ari"].to_numpy())


def test_select_missing_labels_seed_and_copy(starmap):
    starmap.obs.loc[starmap.obs_names[:100], "cell_type"] = np.nan
    result = oc.tl.evaluate_clustering(
        starmap, "cell_type", use_rep="X_pca", resolutions=[0.3, 1.0], select="nmi", key_added="c", copy=True
    )
    assert "omnicell" not in starmap.uns and "c" not in starmap.obs
    table = result.uns["omnicell"]["evaluate_clustering"]["table"]
    assert (
        result.uns["omnicell"]["evaluate_clustering"]["best_resolution"]
        == table["resolution"].iloc[table["nmi"].argmax()]
    )
    labelled = starmap.obs["cell_type"].notna().to_numpy()
    kept = result.obs["c"].to_numpy()
    assert table["nmi"].max() == pytest.approx(
        normalized_mutual_info_score(starmap.obs["cell_type"][labelled].astype(str), kept[labelled])
    )
    again = oc.tl.evaluate_clustering(
        result, "cell_type", use_rep="X_pca", resolutions=[0.3, 1.0], select="nmi", key_added="c", copy=True
    )
    assert again.obs["c"].equals(result.obs["c"])


def test_bad_input(starmap):
    with pytest.raises(KeyError, match="embed_cells"):
        oc.tl.evaluate_clustering(starmap, "cell_type")  # no X_omnicell
    with pytest.raises(KeyError, match="label_key"):
        oc.tl.evaluate_clustering(starmap, "celltype", use_rep="X_pca")
    with pytest.raises(ValueError, match="select"):
        oc.tl.evaluate_clustering(starmap, "cell_type", use_rep="X_pca", select="f1")
    with pytest.raises(ValueError, match="resolutions"):
        oc.tl.evaluate_clustering(starmap, "cell_type", use_rep="X_pca", resolutions=[0.0])
    starmap.obsm["X_bad"] = starmap.obsm["X_pca"].copy()
    starmap.obsm["X_bad"][3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        oc.tl.evaluate_clustering(starmap, "cell_type", use_rep="X_bad")
    assert "omnicell" not in starmap.uns and "omnicell_leiden" not in starmap.obs
