"""Soft-rank normalisation of expression values, vectorised over a batch of cells."""

from __future__ import annotations

import numpy as np

__all__ = ["soft_rank"]


def soft_rank(values: np.ndarray, *, high: float = 5.0) -> np.ndarray:
    """Soft rank of each row of ``values`` (cells x genes) into ``[0, high]``.

    A cell's distinct values, with 0 always counted as one, are sorted into ``n`` levels; level
    ``i`` maps to ``high * i / (n - 1)`` (all 0 when ``n = 1``). Ties share a level, so any
    per-cell positive scaling or monotone transform of the values gives the same result.

    Parameters
    ----------
    values
        Non-negative expression values, shape (n_cells, n_genes).
    high
        Upper end of the range (5 in the released model).

    Returns
    -------
    float32 array of the same shape.
    """
    values = np.asarray(values, dtype=np.float64)
    n_cells, n_genes = values.shape
    with_zero = np.concatenate([np.zeros((n_cells, 1)), values], axis=1)
    order = np.argsort(with_zero, axis=1, kind="stable")
    ordered = np.take_along_axis(with_zero, order, axis=1)
    starts_level = np.ones_like(ordered, dtype=bool)
    starts_level[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    sorted_levels = np.cumsum(starts_level, axis=1) - 1
    levels = np.empty_like(sorted_levels)
    np.put_along_axis(levels, order, sorted_levels, axis=1)
    top_level = np.maximum(sorted_levels[:, -1:], 1)
    return (high * levels[:, 1:] / top_level).astype(np.float32)
