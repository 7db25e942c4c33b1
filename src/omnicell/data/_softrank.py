"""Soft-rank normalisation of expression values, vectorised over a batch of cells."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["soft_rank"]


def soft_rank(values: np.ndarray, *, high: float = 5.0) -> np.ndarray:
    """Soft rank of each row of ``values`` (cells x genes) into ``[0, high]``.

    A cell's distinct values, with 0 always counted as one, are sorted into ``n`` levels; level
    ``i`` maps to ``high * i / (n - 1)`` (all 0 when ``n = 1``). Ties share a level, so any
    per-cell positive scaling or monotone transform of the values gives the same result.

    Parameters
    ----------
    values
        Non-negative expression values, shape (n_cells, n_genes), dense or sparse.
    high
        Upper end of the range (5 in the released model).

    Returns
    -------
    float32 array of the same shape.
    """
    result = np.zeros(values.shape, dtype=np.float32)
    # Only non-zero entries need ranking (0 is always level 0), and expression is mostly zeros:
    # sort the non-zero entries of all cells at once by (cell, value).
    if sp.issparse(values):
        values = sp.csr_matrix(values)
        rows = np.repeat(np.arange(values.shape[0]), np.diff(values.indptr))
        cols, entries = values.indices, values.data.astype(np.float64)
        stored = entries != 0
        rows, cols, entries = rows[stored], cols[stored], entries[stored]
    else:
        values = np.asarray(values, dtype=np.float64)
        rows, cols = np.nonzero(values)
        entries = values[rows, cols]
    if len(rows) == 0:
        return result
    order = np.lexsort((entries, rows))
    rows, cols, entries = rows[order], cols[order], entries[order]
    new_level = np.ones(len(entries), dtype=bool)
    new_level[1:] = (rows[1:] != rows[:-1]) | (entries[1:] != entries[:-1])
    level_count = np.cumsum(new_level)
    counts = np.bincount(rows, minlength=values.shape[0])
    ends = np.cumsum(counts)
    level = level_count - level_count[(ends - counts)[rows]] + 1  # 1 for the smallest non-zero value
    result[rows, cols] = (high * level / level[ends[rows] - 1]).astype(np.float32)
    return result
