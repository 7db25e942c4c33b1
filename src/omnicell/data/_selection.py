"""The paper's per-cell gene choice: expressed genes first, then highly variable zero genes.

The order of a cell's expressed genes comes from one row-wise ``np.sort`` of integer keys (numpy's
vectorised sort); the passes before and after it (building the keys, soft ranks, zero fill) are
per-cell loops compiled with numba (a dependency of scanpy), which touch each entry once.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from omnicell.data._softrank import SOFT_RANK_HIGH

__all__ = ["expressed_first"]


def expressed_first(
    block: sp.csr_matrix,
    n_fill: int,
    n_genes: int,
    *,
    high: float = SOFT_RANK_HIGH,
    priority: np.ndarray | None = None,
    labels: np.ndarray | None = None,
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
    labels
        If given, ``labels[k]`` (an integer, e.g. the token id of candidate ``k``) is returned
        in place of the candidate index ``k``.

    Returns
    -------
    Candidate indices (or their ``labels``), (n_cells, L), with -1 where a cell has fewer than
    ``L`` genes to show (always at the end), and their soft ranks (0 there); ``L = min(n_genes, C)``.
    """
    block = sp.csr_matrix(block)
    n_cells, n_candidates = block.shape
    if priority is None:
        priority = np.arange(n_candidates, dtype=np.int32)
    else:
        priority = np.asarray(priority)
        n_candidates = int(priority.max()) + 1 if len(priority) else 0
    length, candidate_bits = min(n_genes, n_candidates), max(n_candidates.bit_length(), 1)
    keys, counts = _sorted_keys(block, priority, candidate_bits=candidate_bits)
    if labels is None:
        labels = np.arange(n_candidates, dtype=np.int32)
    columns = np.empty((n_cells, length), dtype=labels.dtype)
    soft = np.empty((n_cells, length), dtype=np.float32)
    _choose(keys, counts, candidate_bits, min(n_fill, n_candidates), high, labels, columns, soft)
    return columns, soft


def _sorted_keys(block: sp.csr_matrix, priority: np.ndarray, *, candidate_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's positive candidate entries as integer keys, sorted: descending value, then candidate.

    A key is ``code << candidate_bits | candidate`` where the code orders like the values,
    descending, and is equal for equal values: counts (integers below 2**16, tried first) are
    read as they are, other float32 values by their bit pattern (non-negative floats order as
    their bits), anything else by its rank among the distinct values. Returns the (n_cells,
    width) keys, padded after each cell's entries with the largest key, and each cell's count.
    """
    data = block.data

    def write(raw: np.ndarray, top: int, code_bits: int, *, counts_only: bool) -> tuple[np.ndarray, np.ndarray, bool]:
        key_type = np.int32 if code_bits + candidate_bits <= 31 else np.int64  # signed: numba mixes no signs
        # Wide enough for every stored entry of a row; zeros and non-candidates just leave more padding.
        keys = np.empty((block.shape[0], int(np.diff(block.indptr).max(initial=0))), dtype=key_type)
        counts, exact = _write_keys(block.indptr, block.indices, data, raw, top, priority, candidate_bits,
                                    counts_only, keys)  # fmt: skip
        return keys, counts, exact

    keys, counts, exact = write(data, (1 << 16) - 1, 16, counts_only=True)  # checked while written
    if not exact:  # not counts
        as_float32 = data.astype(np.float32)
        if (as_float32 == data).all():
            keys, counts, _ = write(as_float32.view(np.uint32), 0x7FFFFFFF, 31, counts_only=False)
        else:
            distinct, inverse = np.unique(data, return_inverse=True)
            code_bits = max(len(distinct).bit_length(), 1)
            keys, counts, _ = write(inverse.astype(np.int64), len(distinct) - 1, code_bits, counts_only=False)
    keys.sort(axis=1)
    return keys, counts


@numba.njit(cache=True)
def _write_keys(
    indptr, indices, data, raw, top, priority, candidate_bits, counts_only, keys
):  # pragma: no cover - compiled
    """``keys[row]``: ``(top - raw) << candidate_bits | candidate`` of each positive candidate entry, then padding.

    Returns the count of each row, and False if ``counts_only`` and a value is not a count.
    """
    padding = np.iinfo(keys.dtype).max
    counts = np.zeros(len(indptr) - 1, dtype=np.int64)
    for row in range(len(indptr) - 1):
        slot = 0
        for j in range(indptr[row], indptr[row + 1]):
            candidate = priority[indices[j]]
            if data[j] > 0 and candidate >= 0:
                if counts_only and (data[j] >= 65536 or data[j] != np.floor(data[j])):
                    return counts, False
                keys[row, slot] = ((top - np.int64(raw[j])) << candidate_bits) | candidate
                slot += 1
        keys[row, slot:] = padding
        counts[row] = slot
    return counts, True


@numba.njit(cache=True)
def _choose(keys, counts, candidate_bits, n_fill, high, labels, columns, soft):  # pragma: no cover - compiled
    """From each cell's sorted keys: its expressed genes and their soft ranks, then its zero fill genes.

    ``columns`` receives the ``labels`` of the chosen candidates, -1 after the last.
    """
    length = columns.shape[1]
    mask = (1 << candidate_bits) - 1
    expressed_fill = np.zeros(n_fill, dtype=np.bool_)
    for row in range(keys.shape[0]):
        n_expressed = min(counts[row], length)
        # Soft rank: distinct values in descending order, 0 as the lowest level.
        n_levels = 0
        for j in range(n_expressed):
            if j == 0 or (keys[row, j] >> candidate_bits) != (keys[row, j - 1] >> candidate_bits):
                n_levels += 1
        level = 0  # 0 for the largest value
        for j in range(n_expressed):
            if j > 0 and (keys[row, j] >> candidate_bits) != (keys[row, j - 1] >> candidate_bits):
                level += 1
            columns[row, j] = labels[keys[row, j] & mask]
            soft[row, j] = high * (n_levels - level) / n_levels
        columns[row, n_expressed:] = -1  # no gene (until filled below)
        soft[row, n_expressed:] = 0.0
        if n_expressed == length or n_fill == 0:
            continue
        # Zero genes: the fill genes the cell does not express (truncated expressed genes included).
        for j in range(counts[row]):
            candidate = keys[row, j] & mask
            if candidate < n_fill:
                expressed_fill[candidate] = True
        slot = n_expressed
        for gene in range(n_fill):
            if slot == length:
                break
            if not expressed_fill[gene]:
                columns[row, slot] = labels[gene]
                slot += 1
        for j in range(counts[row]):
            candidate = keys[row, j] & mask
            if candidate < n_fill:
                expressed_fill[candidate] = False
