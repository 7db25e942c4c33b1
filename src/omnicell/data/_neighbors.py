"""Spatial neighbourhoods: each cell's k nearest other cells, nearest first.

Missing neighbours (a section with fewer than ``k + 1`` cells, a graph node with fewer than ``k``
edges) are marked -1; their blocks in a window are padding and take no part in the niche mean.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["graph_neighbors", "spatial_knn"]


def spatial_knn(coordinates: np.ndarray, n_neighbors: int, *, libraries: np.ndarray | None = None) -> np.ndarray:
    """Indices (n_cells, k) of each cell's ``n_neighbors`` nearest other cells (Euclidean), nearest first.

    A cell is never its own neighbour, also when several cells share its coordinates. With
    ``libraries`` (one label per cell), neighbours are searched within the cell's own library only.
    Ties in distance are broken by the smaller cell index.
    """
    from scipy.spatial import cKDTree

    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be at least 1, got {n_neighbors}.")
    coordinates = np.asarray(coordinates, dtype=np.float64)
    n_cells = coordinates.shape[0]
    result = np.full((n_cells, n_neighbors), -1, dtype=np.int64)
    groups = (
        [np.arange(n_cells)] if libraries is None else [np.flatnonzero(libraries == v) for v in np.unique(libraries)]
    )
    for members in groups:
        query = min(n_neighbors + 1, len(members))
        if query < 2:
            continue
        distances, candidates = cKDTree(coordinates[members]).query(coordinates[members], k=query)
        distances, candidates = distances.reshape(len(members), query), candidates.reshape(len(members), query)
        # Order by (distance, index) so ties are reproducible, then drop self.
        order = _rowwise_lexsort(distances, candidates)
        candidates = np.take_along_axis(candidates, order, axis=1)
        is_self = candidates == np.arange(len(members))[:, None]
        # Where self is not among the candidates (duplicate coordinates), drop the farthest one.
        is_self[~is_self.any(axis=1), -1] = True
        kept = candidates[~is_self].reshape(len(members), query - 1)
        result[members, : query - 1] = members[kept]
    return result


def _rowwise_lexsort(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Per-row order by ``primary`` then ``secondary``."""
    order = np.argsort(secondary, axis=1, kind="stable")
    by_primary = np.argsort(np.take_along_axis(primary, order, axis=1), axis=1, kind="stable")
    return np.take_along_axis(order, by_primary, axis=1)


def graph_neighbors(
    graph: sp.spmatrix | sp.sparray, coordinates: np.ndarray, n_neighbors: int, *, libraries: np.ndarray | None = None
) -> np.ndarray:
    """The ``n_neighbors`` nearest graph neighbours of each cell (e.g. a squidpy spatial graph).

    Edges of ``graph`` (any non-zero entry, in either direction it is stored) define who may be a
    neighbour; Euclidean distance on ``coordinates`` orders them, nearest first (ties by index).
    Self-loops and, with ``libraries``, edges between libraries are ignored.
    """
    graph = sp.csr_matrix(graph)
    graph.eliminate_zeros()
    n_cells = graph.shape[0]
    rows = np.repeat(np.arange(n_cells), np.diff(graph.indptr))
    cols = graph.indices.astype(np.int64)
    keep = rows != cols
    if libraries is not None:
        keep &= libraries[rows] == libraries[cols]
    rows, cols = rows[keep], cols[keep]
    distance = np.linalg.norm(coordinates[rows] - coordinates[cols], axis=1)
    order = np.lexsort((cols, distance, rows))
    rows, cols = rows[order], cols[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    kept = rank < n_neighbors
    result = np.full((n_cells, n_neighbors), -1, dtype=np.int64)
    result[rows[kept], rank[kept]] = cols[kept]
    return result
