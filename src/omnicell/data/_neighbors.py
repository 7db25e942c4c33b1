"""Spatial neighbourhoods: each cell's k nearest other cells."""

from __future__ import annotations

import numpy as np

__all__ = ["spatial_knn"]


def spatial_knn(coordinates: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Indices (n_cells, k) of each cell's ``n_neighbors`` nearest other cells, nearest first.

    Euclidean distance on the raw coordinates. A cell is never its own neighbour, also when
    several cells share its coordinates.
    """
    from scipy.spatial import cKDTree

    coordinates = np.asarray(coordinates, dtype=np.float64)
    n_cells = coordinates.shape[0]
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be at least 1, got {n_neighbors}.")
    if n_cells <= n_neighbors:
        raise ValueError(
            f"Spatial mode needs more cells than n_neighbors: {n_cells} cells, n_neighbors={n_neighbors}. "
            "Lower n_neighbors."
        )
    _, candidates = cKDTree(coordinates).query(coordinates, k=n_neighbors + 1)
    is_self = candidates == np.arange(n_cells)[:, None]
    # Where self is not among the candidates (duplicate coordinates), drop the farthest candidate.
    is_self[~is_self.any(axis=1), -1] = True
    return candidates[~is_self].reshape(n_cells, n_neighbors).astype(np.int64)
