"""spatial_domains (Leiden on niche embeddings, resolution search) and the neighbourhood-average baseline."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from scipy.spatial import cKDTree
from sklearn.metrics import adjusted_rand_score

import omnicell as oc
from _cell_data import starmap_pca


@pytest.fixture
def starmap():
    return starmap_pca()


def test_neighborhood_average_is_the_window_mean(starmap):
    oc.tl.neighborhood_average(starmap, use_rep="X_pca", n_neighbors=4)
    average = starmap.obsm["X_pca_niche"]
    coordinates = starmap.obsm["spatial"]
    _, nearest = cKDTree(coordinates).query(coordinates, k=5)  # self (distinct coordinates) + 4 others
    np.testing.assert_allclose(average, starmap.obsm["X_pca"][nearest].mean(1), rtol=1e-5, atol=1e-5)
    assert starmap.uns["omnicell"]["neighborhood_average"]["n_neighbors"] == 4


def test_neighborhood_average_stays_within_sections(starmap):
    section = starmap[:300].copy()
    two = ad.concat([section, section], index_unique="-", keys=["a", "b"], label="library")
    two.obsm["X_pca"] = np.concatenate([section.obsm["X_pca"], section.obsm["X_pca"] + 100.0])
    oc.tl.neighborhood_average(two, use_rep="X_pca", library_key="library", key_added="avg")
    oc.tl.neighborhood_average(section, use_rep="X_pca", key_added="avg")
    np.testing.assert_allclose(two.obsm["avg"][:300], section.obsm["avg"], atol=1e-4)
    np.testing.assert_allclose(two.obsm["avg"][300:], section.obsm["avg"] + 100.0, atol=1e-3)


def test_domains_from_neighbourhood_average_beat_expression(starmap):
    oc.tl.neighborhood_average(starmap, use_rep="X_pca")
    oc.tl.spatial_domains(starmap, n_domains=7, use_rep="X_pca_niche")
    domains = starmap.obs["omnicell_domain"]
    assert domains.dtype == "category" and domains.nunique() == 7
    record = starmap.uns["omnicell"]["spatial_domains"]
    assert record["n_domains_found"] == 7 and record["n_domains"] == 7
    tried = dict(zip(record["search_resolutions"], record["search_n_domains"], strict=True))
    assert tried[record["resolution"]] == 7
    # The found resolution is an ordinary scanpy Leiden run.
    reference = starmap.copy()
    sc.pp.neighbors(reference, use_rep="X_pca_niche", n_neighbors=15, random_state=0)
    sc.tl.leiden(reference, resolution=record["resolution"], flavor="igraph", n_iterations=2, random_state=0)
    assert adjusted_rand_score(reference.obs["leiden"], domains) == 1.0
    # Averaging over the spatial window recovers cortical layers far better than expression alone.
    niche_ari = adjusted_rand_score(starmap.obs["domain"], domains)
    expression = oc.tl.spatial_domains(starmap, n_domains=7, use_rep="X_pca", copy=True)
    expression_ari = adjusted_rand_score(starmap.obs["domain"], expression.obs["omnicell_domain"])
    assert niche_ari > 0.45 and niche_ari > expression_ari + 0.15


def test_fixed_resolution_and_unreachable_count(starmap):
    oc.tl.neighborhood_average(starmap, use_rep="X_pca")
    oc.tl.spatial_domains(starmap, resolution=0.5, use_rep="X_pca_niche", key_added="d")
    record = starmap.uns["omnicell"]["spatial_domains"]
    assert record["resolution"] == 0.5 and "search_resolutions" not in record
    assert starmap.obs["d"].nunique() == record["n_domains_found"]
    with pytest.warns(UserWarning, match="No Leiden resolution"):
        oc.tl.spatial_domains(starmap, n_domains=1000, use_rep="X_pca_niche", max_steps=3)


def test_runs_on_spatial_embed_cells_output(tiny_adata, tiny_model, expected):
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"], spatial=True, n_neighbors=3)
    with pytest.warns(UserWarning, match="express none"):
        oc.tl.embed_cells(tiny_adata, tiny_model)
    oc.tl.spatial_domains(tiny_adata, n_domains=3, n_neighbors=5)
    assert tiny_adata.obs["omnicell_domain"].nunique() == 3
    assert tiny_adata.uns["omnicell"]["spatial_domains"]["use_rep"] == "X_omnicell_niche"


def test_errors_say_what_to_run(tiny_adata, tiny_model, expected, starmap):
    with pytest.raises(KeyError, match=r"spatial=True.*embed_cells"):
        oc.tl.spatial_domains(starmap)
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"])
    with pytest.warns(UserWarning, match="express none"):
        oc.tl.embed_cells(tiny_adata, tiny_model)
    with pytest.raises(KeyError, match="single-cell mode"):
        oc.tl.spatial_domains(tiny_adata, n_domains=2)
    with pytest.raises(ValueError, match="not both"):
        oc.tl.spatial_domains(starmap, n_domains=3, resolution=0.5, use_rep="X_pca")
    with pytest.raises(ValueError, match="n_domains"):
        oc.tl.spatial_domains(starmap, n_domains=1, use_rep="X_pca")
    with pytest.raises(KeyError, match="coordinates"):
        oc.tl.neighborhood_average(starmap, use_rep="X_pca", spatial_key="xy")
    assert "omnicell_domain" not in starmap.obs and "omnicell" not in starmap.uns
