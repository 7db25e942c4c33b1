"""The paper's per-cell gene choice: expressed genes first, then highly variable zero genes."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["expressed_first"]


def expressed_first(
    block: sp.csr_matrix, n_fill: int, n_genes: int, *, high: float = 5.0, priority: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
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
    priority
        If given, ``block`` holds the matrix's own columns and ``priority[c]`` is the candidate
        index of column ``c`` (-1: not a candidate), so the columns need not be reordered first.

    Returns
    -------
    Candidate indices (n_cells, L) with -1 where a cell has fewer than ``L`` genes to show (always
    at the end), and their soft ranks (0 there); ``L = min(n_genes, C)``.
    """
    block = sp.csr_matrix(block)
    n_cells, n_candidates = block.shape
    if priority is not None:
        n_candidates = int(priority.max()) + 1 if len(priority) else 0
    length = min(n_genes, n_candidates)
    rows, cols, vals = _sorted_entries(block, priority)
    all_rows, all_cols = rows, cols  # every expressed candidate, before truncation
    counts = np.bincount(rows, minlength=n_cells)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(rows)) - starts[rows]
    if counts.max(initial=0) > length:  # some cells express more genes than fit: keep their top ones
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
    flat = rows * length + rank
    columns.reshape(-1)[flat] = cols
    levels = n_levels[rows]
    soft.reshape(-1)[flat] = high * (levels - descending_level) / levels

    # Zero genes: the fill genes a cell does not express (truncated expressed genes included).
    n_fill = min(n_fill, n_candidates)
    if (n_expressed >= length).all():  # every cell is full with expressed genes
        return columns, soft
    expressed_fill = np.zeros((n_cells, n_fill), dtype=bool)
    in_fill = all_cols < n_fill
    expressed_fill[all_rows[in_fill], all_cols[in_fill]] = True
    available = ~expressed_fill
    position = np.cumsum(available, axis=1, dtype=np.int32) - 1 + n_expressed[:, None].astype(np.int32)
    take = available & (position < length)
    fill_rows, fill_genes = np.nonzero(take)
    columns[fill_rows, position[fill_rows, fill_genes]] = fill_genes
    return columns, soft


def _sorted_entries(block: sp.csr_matrix, priority: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, candidate, value) of the positive entries, by cell, descending value, then candidate order.

    Non-negative float32 values order as their bit patterns, so where the values are float32 (counts
    and most matrices) one integer key ``row | ~value | candidate`` holds all three and a single
    ``np.sort`` of it (no argsort, no gathers) gives the order; the fields are read back from the
    sorted keys. Other values, or keys that do not fit 64 bits, take a ``lexsort``.
    """
    n_cells = block.shape[0]
    rows = np.repeat(np.arange(n_cells, dtype=np.int64), np.diff(block.indptr))
    cols, vals = block.indices.astype(np.int64), block.data
    keep = vals > 0
    if priority is not None:
        cols = priority[cols]
        keep &= cols >= 0
    if not keep.all():
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    as_float32 = vals.astype(np.float32)
    col_bits = max(int(cols.max(initial=0)).bit_length(), 1)
    row_bits = max(int(n_cells - 1).bit_length(), 1)
    if col_bits + row_bits + 31 <= 64 and (as_float32 == vals).all():
        inverted = np.uint64(0x7FFFFFFF) - as_float32.view(np.uint32).astype(np.uint64)  # descending value
        key = (rows.astype(np.uint64) << np.uint64(31 + col_bits)) | (inverted << np.uint64(col_bits))
        key |= cols.astype(np.uint64)
        key.sort()
        rows = (key >> np.uint64(31 + col_bits)).astype(np.int64)
        inverted = (key >> np.uint64(col_bits)) & np.uint64(0x7FFFFFFF)
        values = (np.uint64(0x7FFFFFFF) - inverted).astype(np.uint32).view(np.float32)  # exact: they were float32
        return rows, (key & np.uint64((1 << col_bits) - 1)).astype(np.int64), values
    order = np.lexsort((cols, -vals, rows))
    return rows[order], cols[order], vals[order]
