"""scanpy's ``seurat_v3`` highly-variable-gene score, computed in row chunks (bounded memory)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from omnicell.data._matrix import check_values, read_csr

__all__ = ["MIN_LOESS_GENES", "highly_variable_scores", "seurat_v3_scores", "top_variable"]


#: Fewer varying genes than this and the loess trend is not fitted (skmisc crashes the interpreter
#: below 4 points and fails on a few more); genes are ranked by variance instead.
MIN_LOESS_GENES = 10


def seurat_v3_scores(
    matrix,
    columns: np.ndarray,
    *,
    span: float = 0.3,
    chunk_rows: int = 4096,
    where: str = "The expression matrix",
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Scores of :func:`highly_variable_scores` (the method it used is warned about, not returned)."""
    return highly_variable_scores(matrix, columns, span=span, chunk_rows=chunk_rows, where=where, progress=progress)[0]


def highly_variable_scores(
    matrix,
    columns: np.ndarray,
    *,
    span: float = 0.3,
    chunk_rows: int = 4096,
    where: str = "The expression matrix",
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, str]:
    """Normalised variance of each column, as ``sc.pp.highly_variable_genes(flavor='seurat_v3')``.

    Two passes over row chunks (means and variances; then clipped sums), so memory does not
    grow with the number of cells and backed matrices work. Values are validated on the way
    (non-negative, finite). Constant genes score 0.

    ``seurat_v3`` models counts. Two documented fallbacks rank genes by the variance of their
    values instead (returned method ``"variance"``, with a warning saying why):

    * the values are not integers (log-normalised or scaled data): pass a layer of counts to get
      ``seurat_v3``;
    * fewer than ``MIN_LOESS_GENES`` genes vary, or the loess fit of the mean-variance trend fails
      (a small panel, a handful of cells): the trend cannot be estimated.

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

    Returns
    -------
    The scores (higher is more variable) and the method used: ``"seurat_v3"`` or ``"variance"``.

    Raises
    ------
    ValueError
        Fewer than 2 cells, or no column varies (an all-zero or constant matrix).
    """
    n_obs = matrix.shape[0]
    if n_obs < 2:
        raise ValueError(
            f"Highly variable genes need at least 2 cells, {where} has {n_obs}; pass genes= (the genes to read)."
        )
    chunks = [np.arange(start, min(start + chunk_rows, n_obs)) for start in range(0, n_obs, chunk_rows)]
    total = np.zeros(len(columns))
    total_squares = np.zeros(len(columns))
    integers = True
    for rows in chunks:
        block = read_csr(matrix, rows, columns)
        check_values(block, where=where)
        integers = integers and bool(np.all(block.data == np.floor(block.data)))
        total += np.asarray(block.sum(0)).ravel()
        total_squares += np.asarray(block.multiply(block).sum(0)).ravel()
        if progress:
            progress(len(rows))
    mean = total / n_obs
    variance = np.maximum((total_squares / n_obs - mean**2) * (n_obs / (n_obs - 1)), 0.0)
    varying = variance > 0
    n_varying = int(varying.sum())
    if n_varying == 0:
        raise ValueError(
            f"No gene varies across the {n_obs} cells of {where} (an all-zero or constant matrix?), so highly "
            "variable genes cannot be chosen. Check that the layer holds expression values, or pass genes=."
        )
    if not integers:
        warnings.warn(
            f"{where} holds non-integer values (log-normalised?), but seurat_v3 highly variable genes expect "
            "counts: genes are ranked by the variance of the values instead. Pass layer= naming a layer of raw "
            "counts to use seurat_v3.",
            UserWarning,
            stacklevel=3,
        )
        return variance, "variance"
    fitted = _loess_trend(np.log10(mean[varying]), np.log10(variance[varying]), span=span)
    if fitted is None:
        warnings.warn(
            f"Only {n_varying} of the {len(columns)} candidate genes vary across the {n_obs} cells of {where}: "
            "too few to fit seurat_v3's mean-variance trend, so genes are ranked by variance instead. "
            "Use more cells, or pass genes= to choose the genes yourself.",
            UserWarning,
            stacklevel=3,
        )
        return variance, "variance"
    trend = np.zeros(len(columns))
    trend[varying] = fitted
    regularised_std = np.sqrt(10**trend)
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
    scores = (n_obs * mean**2 + clipped_squares - 2 * clipped_sum * mean) / ((n_obs - 1) * regularised_std**2)
    return scores, "seurat_v3"


def _loess_trend(x: np.ndarray, y: np.ndarray, *, span: float) -> np.ndarray | None:
    """Loess fit of ``y`` on ``x`` (degree 2), or None where it cannot be fitted.

    skmisc's C code dies (segmentation fault) with fewer than 4 points, and raises on degenerate
    neighbourhoods ("There are other near singularities", "svddc failed"): never call it there.
    """
    from skmisc.loess import loess

    if len(x) < MIN_LOESS_GENES or len(np.unique(x)) < MIN_LOESS_GENES:
        return None
    try:
        model = loess(x, y, span=span, degree=2)
        model.fit()
    except ValueError:
        return None
    fitted = np.asarray(model.outputs.fitted_values, dtype=np.float64)
    return fitted if np.isfinite(fitted).all() else None


def top_variable(scores: np.ndarray, n_top: int) -> np.ndarray:
    """Indices of the ``n_top`` highest scores, most variable first (scanpy's ranking and ties)."""
    ranks = np.argsort(np.argsort(-scores))
    return np.argsort(ranks)[: min(n_top, len(scores))]
