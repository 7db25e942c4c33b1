"""Soft-rank normalisation of expression values, vectorised over a batch of cells."""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["MASK_VALUE", "SOFT_RANK_HIGH", "soft_rank", "soft_rank_selected"]

SOFT_RANK_HIGH = 5.0
"""A cell's highest soft rank (its most expressed genes); 0 is "not expressed". The released model's range."""

MASK_VALUE = -1.0
"""The input value of a masked gene token: the model predicts that gene's soft rank from the others."""


def soft_rank(values: np.ndarray, *, high: float = SOFT_RANK_HIGH) -> np.ndarray:
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


def soft_rank_selected(
    block: sp.csr_matrix, lookup: np.ndarray, n_selected: int, *, high: float = SOFT_RANK_HIGH
) -> np.ndarray:
    """:func:`soft_rank` of selected columns of ``block``, without selecting them first.

    Column ``c`` of ``block`` is output column ``lookup[c]`` (-1: not selected); the result is
    ``soft_rank(block[:, columns])`` (float32, (n_cells, n_selected)) for the ``columns`` that
    ``lookup`` selects. Counts (integers below 2**16) are ranked by a compiled per-cell pass over
    the values present; other values go through :func:`soft_rank`.
    """
    block = sp.csr_matrix(block)
    result = np.empty((block.shape[0], n_selected), dtype=np.float32)
    if _soft_rank_counts(block.indptr, block.indices, block.data, lookup, high, result):
        return result
    columns = np.empty(n_selected, dtype=np.int64)
    selected = np.flatnonzero(lookup >= 0)
    columns[lookup[selected]] = selected
    return soft_rank(block[:, columns], high=high)


@numba.njit(cache=True)
def _soft_rank_counts(indptr, indices, data, lookup, high, result):  # pragma: no cover - compiled
    """``result[row, lookup[c]]``: soft rank of each selected count; False if a value is not a count.

    A cell's distinct counts are marked in a table indexed by the count, numbered in increasing
    order (1 for the smallest, 0 stays level 0) and read back: no sort.
    """
    level_of = np.zeros(1 << 16, dtype=np.int64)
    widest = 0
    for row in range(len(indptr) - 1):
        widest = max(widest, indptr[row + 1] - indptr[row])
    columns = np.empty(widest, dtype=np.int64)  # the selected entries of the current row
    counts = np.empty(widest, dtype=np.int64)
    for row in range(len(indptr) - 1):
        result[row, :] = 0.0
        n_selected, largest = 0, 0
        for j in range(indptr[row], indptr[row + 1]):
            column, value = lookup[indices[j]], data[j]
            if column >= 0 and value > 0:
                if value >= 65536 or value != np.floor(value):
                    return False
                columns[n_selected], counts[n_selected] = column, int(value)
                level_of[int(value)] = 1
                largest = max(largest, int(value))
                n_selected += 1
        n_levels = 0
        for value in range(1, largest + 1):
            if level_of[value]:
                n_levels += 1
                level_of[value] = n_levels
        for k in range(n_selected):
            result[row, columns[k]] = high * level_of[counts[k]] / n_levels
        level_of[: largest + 1] = 0
    return True
