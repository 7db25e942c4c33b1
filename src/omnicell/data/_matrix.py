"""Reading rows of any expression matrix (dense, sparse, backed, dask) and checking its values.

Every reader of expression goes through :func:`read_rows`, so each kind of matrix is handled in one place;
the value checks refuse what the model cannot read (negative or non-finite values) before anything is written.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["check_matrix_values", "check_selected", "check_values", "read_csr", "read_rows"]


def read_csr(matrix, rows: np.ndarray, columns: np.ndarray) -> sp.csr_matrix:
    """``matrix[rows][:, columns]`` as a float64 CSR matrix, reading only the requested rows."""
    return read_rows(matrix, rows)[:, columns].astype(np.float64)


def _compute(block):
    """A dask block (lazy AnnData, a SOMA experiment) read now: only the chunks holding its rows."""
    return block.compute(scheduler="synchronous") if hasattr(block, "compute") else block


def read_rows(matrix, rows: np.ndarray) -> sp.csr_matrix:
    """``matrix[rows]`` as a CSR matrix with all its columns, reading only the requested rows."""
    unique_rows, inverse = np.unique(rows, return_inverse=True)
    block = _compute(matrix[unique_rows])
    if sp.issparse(block):
        block = block.tocsr()
    else:
        block = np.asarray(block)
        if block.dtype == np.float16:  # scipy's sparse matrices refuse float16
            block = block.astype(np.float32)
        block = sp.csr_matrix(block)
    if len(unique_rows) == len(rows) and (unique_rows == rows).all():
        return block
    return block[inverse]


def check_selected(block: sp.csr_matrix, lookup: np.ndarray, *, where: str) -> None:
    """:func:`check_values` on the entries of the columns ``lookup`` selects (only those are read)."""
    if not (np.isfinite(block.data).all() and (block.data >= 0).all()):
        check_values(block.data[lookup[block.indices] >= 0], where=where)


def check_values(block: np.ndarray, *, where: str) -> None:
    """Raise a ValueError if ``block`` holds negative or non-finite values."""
    if sp.issparse(block):
        block = block.data
    if not np.isfinite(block).all():
        raise ValueError(
            f"{where} contains NaN or infinite values; OmniCell needs finite non-negative expression. "
            "Fill or remove them (e.g. adata.X = np.nan_to_num(adata.X)) and try again."
        )
    if (block < 0).any():
        raise ValueError(
            f"{where} contains negative values (scaled or centred data?). OmniCell ranks non-negative "
            "expression within each cell: use raw counts or normalised values (layer=...)."
        )


def check_matrix_values(matrix, columns: np.ndarray, *, where: str, chunk_rows: int = 2048) -> None:
    """Refuse negative or non-finite values in the given columns, or columns that are all zero.

    Reads the matrix in row chunks.
    """
    nonzero = False
    if sp.issparse(matrix):
        values = matrix[:, columns].data
        check_values(values, where=where)
        nonzero = bool((values != 0).any())
    else:
        for start in range(0, matrix.shape[0], chunk_rows):
            rows = np.arange(start, min(start + chunk_rows, matrix.shape[0]))
            block = read_csr(matrix, rows, columns)
            check_values(block, where=where)
            nonzero = nonzero or bool((block.data != 0).any())
    if not nonzero:
        raise ValueError(
            f"{where} is all zero in the {len(columns)} genes to read: there is no expression to embed. "
            "Check that it holds expression values (or pass layer= naming the layer that does)."
        )
