"""The paper's per-cell gene choice: expressed genes first, then highly variable zero genes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["expressed_first"]


def expressed_first(block: sp.csr_matrix, n_fill: int, n_genes: int, *, high: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's per-cell gene choice with soft ranks, vectorised over the cells of ``block``.

    The candidate genes (columns of ``block``) must be in priority order: the first ``n_fill``
    are the genes that may fill a cell as zeros (most highly variable first), and column order
    breaks ties between equal values. Each cell takes its expressed genes first, by descending
    value, then its unexpressed fill genes in order, up to ``n_genes`` genes. The soft rank of
    the chosen genes is computed on the way (the expressed genes are already sorted).

    Parameters
    ----------
    block
        (n_cells, C) non-negative values of the candidate genes.
    n_fill
        The first ``n_fill`` candidates may fill a cell as zeros.
    n_genes
        Sequence length per cell.
    high
        Soft-rank range, as in :func:`omnicell.data.soft_rank`.

    Returns
    -------
    Candidate indices (n_cells, L) with -1 where a cell has fewer than ``L`` genes to show (always
    at the end), and their soft ranks (0 there); ``L = min(n_genes, C)``.
    """
    block = sp.csr_matrix(block)
    n_cells, n_candidates = block.shape
    length = min(n_genes, n_candidates)
    rows = np.repeat(np.arange(n_cells), np.diff(block.indptr))
    positive = block.data > 0
    rows, cols, vals = rows[positive], block.indices[positive], block.data[positive]
    # Entries are grouped by cell and, within a cell, in column (priority) order; a stable sort
    # by (cell, -value) therefore keeps priority order among equal values.
    order = np.lexsort((-vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = np.bincount(rows, minlength=n_cells)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(rows)) - starts[rows]
    kept = rank < length
    rows, cols, vals, rank = rows[kept], cols[kept], vals[kept], rank[kept]
    n_expressed = np.minimum(counts, length)

    # Soft rank of the kept values: distinct values in descending order, 0 as the lowest level.
    new_level = np.ones(len(vals), dtype=bool)
    new_level[1:] = (rows[1:] != rows[:-1]) | (vals[1:] != vals[:-1])
    descending_level = np.cumsum(new_level)
    kept_starts = np.cumsum(n_expressed) - n_expressed
    descending_level = descending_level - descending_level[kept_starts[rows]]  # 0 for the largest value
    n_levels = np.zeros(n_cells, dtype=np.int64)  # distinct non-zero values per cell
    last = kept_starts + n_expressed - 1
    has_any = n_expressed > 0
    n_levels[has_any] = descending_level[last[has_any]] + 1
    columns = np.full((n_cells, length), -1, dtype=np.int64)
    soft = np.zeros((n_cells, length), dtype=np.float32)
    columns[rows, rank] = cols
    soft[rows, rank] = high * (n_levels[rows] - descending_level) / n_levels[rows]

    # Zero genes: the fill genes a cell does not express (truncated expressed genes included).
    n_fill = min(n_fill, n_candidates)
    expressed_fill = np.zeros((n_cells, n_fill), dtype=bool)
    block_rows = np.repeat(np.arange(n_cells), np.diff(block.indptr))
    in_fill = positive & (block.indices < n_fill)
    expressed_fill[block_rows[in_fill], block.indices[in_fill]] = True
    available = ~expressed_fill
    position = np.cumsum(available, axis=1) - 1 + n_expressed[:, None]
    take = available & (position < length)
    fill_rows, fill_genes = np.nonzero(take)
    columns[fill_rows, position[fill_rows, fill_genes]] = fill_genes
    return columns, soft
