"""Spatial neighbourhoods: k-nearest search, squidpy graphs, sections."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np

from omnicell.data import graph_neighbors, spatial_knn


def _brute_force(coords: np.ndarray, k: int) -> np.ndarray:
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return np.argsort(distances, axis=1, kind="stable")[:, :k]


def test_knn_matches_brute_force():
    coords = np.random.default_rng(0).uniform(0, 100, size=(300, 2))
    np.testing.assert_array_equal(spatial_knn(coords, 6), _brute_force(coords, 6))


def test_squidpy_graph_gives_the_same_neighbours():
    import squidpy as sq

    coords = np.random.default_rng(1).uniform(0, 100, size=(200, 2))
    adata = ad.AnnData(np.zeros((200, 1), dtype=np.float32), obsm={"spatial": coords})
    sq.gr.spatial_neighbors_knn(adata, n_neighs=5)
    from_graph = graph_neighbors(adata.obsp["spatial_connectivities"], coords, 5)
    np.testing.assert_array_equal(from_graph, spatial_knn(coords, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated in squidpy 1.8, still common
        sq.gr.spatial_neighbors(adata, coord_type="generic", n_neighs=5, key_added="legacy")
    np.testing.assert_array_equal(graph_neighbors(adata.obsp["legacy_connectivities"], coords, 5), from_graph)


def test_sections_never_share_neighbours():
    rng = np.random.default_rng(2)
    coords = np.concatenate([rng.uniform(0, 10, size=(40, 2))] * 2)  # two sections on the same coordinates
    libraries = np.repeat(["a", "b"], 40)
    neighbors = spatial_knn(coords, 4, libraries=libraries)
    assert (libraries[neighbors] == libraries[:, None]).all()
    unrestricted = spatial_knn(coords, 4)
    assert (libraries[unrestricted] != libraries[:, None]).any()  # without sections they would mix


def test_self_excluded_with_repeated_coordinates_and_short_sections():
    coords = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [9.0, 9.0]])
    neighbors = spatial_knn(coords, 3, libraries=np.array([0, 0, 0, 0, 1]))
    assert not (neighbors == np.arange(5)[:, None]).any()
    np.testing.assert_array_equal(neighbors[0], [1, 2, 3])
    np.testing.assert_array_equal(neighbors[4], [-1, -1, -1])  # alone in its section


def test_graph_with_few_edges_pads():
    import scipy.sparse as sp

    coords = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    graph = sp.csr_matrix(np.array([[1, 1, 1], [1, 0, 0], [1, 0, 0]]))
    np.testing.assert_array_equal(graph_neighbors(graph, coords, 2), [[1, 2], [0, -1], [0, -1]])
