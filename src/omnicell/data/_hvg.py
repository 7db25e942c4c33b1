"""scanpy's ``seurat_v3`` highly-variable-gene score, computed in row chunks (bounded memory)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._batches import check_values, read_csr

__all__ = ["seurat_v3_scores", "top_variable"]


def seurat_v3_scores(
    matrix,
    columns: np.ndarray,
    *,
    span: float = 0.3,
    chunk_rows: int = 4096,
    where: str = "The expression matrix",
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Normalised variance of each column, as ``sc.pp.highly_variable_genes(flavor='seurat_v3')``.

    Two passes over row chunks (means and variances; then clipped sums), so memory does not
    grow with the number of cells and backed matrices work. Values are validated on the way
    (non-negative, finite). Constant genes score 0.

    Parameters
    ----------
    matrix
        Cells x genes, dense, sparse or backed; counts expected.
    columns
        Columns to score.
    span
        Loess span of the mean-variance trend.
    chunk_rows
        Rows read at once.
    where
        How to name the matrix in error messages.
    progress
        Called with the number of rows done after each chunk of each pass.
    """
    from skmisc.loess import loess

    n_obs = matrix.shape[0]
    if n_obs < 2:
        raise ValueError("Highly variable genes need at least 2 cells; pass genes= instead.")
    chunks = [np.arange(start, min(start + chunk_rows, n_obs)) for start in range(0, n_obs, chunk_rows)]
    total = np.zeros(len(columns))
    total_squares = np.zeros(len(columns))
    for rows in chunks:
        block = read_csr(matrix, rows, columns)
        check_values(block, where=where)
        total += np.asarray(block.sum(0)).ravel()
        total_squares += np.asarray(block.multiply(block).sum(0)).ravel()
        if progress:
            progress(len(rows))
    mean = total / n_obs
    variance = (total_squares / n_obs - mean**2) * (n_obs / (n_obs - 1))
    varying = variance > 0
    fitted = np.zeros(len(columns))
    model = loess(np.log10(mean[varying]), np.log10(variance[varying]), span=span, degree=2)
    model.fit()
    fitted[varying] = model.outputs.fitted_values
    regularised_std = np.sqrt(10**fitted)
    clip = regularised_std * np.sqrt(n_obs) + mean
    clipped_sum = np.zeros(len(columns))
    clipped_squares = np.zeros(len(columns))
    for rows in chunks:
        block = read_csr(matrix, rows, columns)
        block.data = np.minimum(block.data, clip[block.indices])
        clipped_sum += np.asarray(block.sum(0)).ravel()
        clipped_squares += np.asarray(block.multiply(block).sum(0)).ravel()
        if progress:
            progress(len(rows))
    return (n_obs * mean**2 + clipped_squares - 2 * clipped_sum * mean) / ((n_obs - 1) * regularised_std**2)


def top_variable(scores: np.ndarray, n_top: int) -> np.ndarray:
    """Indices of the ``n_top`` highest scores, most variable first (scanpy's ranking and ties)."""
    ranks = np.argsort(np.argsort(-scores))
    return np.argsort(ranks)[: min(n_top, len(scores))]
