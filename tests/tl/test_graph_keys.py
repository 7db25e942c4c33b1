"""scanpy's conventions: kNN graphs reused through neighbors_key (scanpy and squidpy styles) and stored under a key."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import omnicell as oc


@pytest.fixture
def clustered():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=6.0, size=(3, 5))
    labels = np.repeat(np.arange(3), 30)
    adata = ad.AnnData(X=rng.poisson(1.0, size=(90, 4)).astype(np.float32))
    adata.obs_names = [f"c{i}" for i in range(90)]
    adata.obs["label"] = pd.Categorical(labels.astype(str))
    adata.obsm["X_omnicell"] = (centers[labels] + rng.normal(size=(90, 5))).astype(np.float32)
    return adata


def test_builds_and_stores_the_graph_reusably(clustered):
    oc.tl.evaluate_clustering(clustered, "label", resolutions=[0.5], random_state=0)
    stored = clustered.uns["X_omnicell_knn"]
    assert stored["connectivities_key"] == "X_omnicell_knn_connectivities"
    assert stored["params"]["n_neighbors"] == 15
    reference = clustered.copy()
    sc.pp.neighbors(reference, use_rep="X_omnicell", n_neighbors=15, random_state=0)
    np.testing.assert_allclose(
        clustered.obsp["X_omnicell_knn_connectivities"].toarray(), reference.obsp["connectivities"].toarray(), rtol=1e-6
    )
    first = clustered.obs["omnicell_leiden"].copy()
    oc.tl.evaluate_clustering(clustered, "label", resolutions=[0.5], random_state=0, neighbors_key="X_omnicell_knn")
    pd.testing.assert_series_equal(clustered.obs["omnicell_leiden"], first)


@pytest.mark.parametrize("style", ["scanpy default", "scanpy key_added", "squidpy prefix", "obsp key"])
def test_reuses_a_graph_given_by_key(clustered, style):
    # a graph that differs from what evaluate_clustering would build: 5 neighbours
    graph = clustered.copy()
    sc.pp.neighbors(graph, use_rep="X_omnicell", n_neighbors=5, random_state=0)
    connectivities = graph.obsp["connectivities"]
    if style == "scanpy default":
        sc.pp.neighbors(clustered, use_rep="X_omnicell", n_neighbors=5, random_state=0)
        key = "neighbors"
    elif style == "scanpy key_added":
        sc.pp.neighbors(clustered, use_rep="X_omnicell", n_neighbors=5, random_state=0, key_added="mine")
        key = "mine"
    elif style == "squidpy prefix":
        clustered.obsp["knn9_connectivities"] = connectivities
        key = "knn9"
    else:
        clustered.obsp["my_graph"] = connectivities
        key = "my_graph"
    oc.tl.spatial_domains(clustered, use_rep="X_omnicell", resolution=0.5, random_state=0, neighbors_key=key)
    expected = oc.tl._cell_tasks.leiden(connectivities, resolution=0.5, seed=0)
    np.testing.assert_array_equal(clustered.obs["omnicell_domain"].astype(int).to_numpy(), expected)
    assert clustered.uns["omnicell"]["spatial_domains"]["neighbors_key"] == key
    assert "X_omnicell_knn" not in clustered.uns  # reused: nothing built, nothing stored


def test_missing_graph_is_a_clear_error(clustered):
    with pytest.raises(KeyError, match=r"knn7.*sc\.pp\.neighbors"):
        oc.tl.evaluate_clustering(clustered, "label", neighbors_key="knn7")
