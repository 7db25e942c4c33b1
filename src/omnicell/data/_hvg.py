"""scanpy's ``seurat_v3`` highly-variable-gene score, computed in row chunks (bounded memory)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from omnicell.data._matrix import check_values, read_csr
from omnicell.data._normalised import log_stats, recovered_block, recovered_count_stats, seurat_dispersion_scores

__all__ = ["MIN_LOESS_GENES", "highly_variable_scores", "seurat_v3_scores", "top_variable"]


#: Fewer varying genes than this and the loess trend is not fitted (skmisc crashes the interpreter
#: below 4 points and fails on a few more); genes are ranked by variance instead.
MIN_LOESS_GENES = 10
#: Non-integer values up to this are taken as log-normalised (log1p of any count normalisation stays far below).
LOG_MAX = 30.0


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
    cell_totals: np.ndarray | None = None,
    log1p: dict | None = None,
) -> tuple[np.ndarray, str]:
    """Normalised variance of each column, as ``sc.pp.highly_variable_genes(flavor='seurat_v3')``.

    Two passes over row chunks (means and variances; then clipped sums), so memory does not
    grow with the number of cells and backed matrices work. Values are validated on the way
    (non-negative, finite). Constant genes score 0.

    ``seurat_v3`` models counts. Values that are not integers are handled as in
    :mod:`omnicell.data._normalised`, each with a warning saying what differs from counts:

    * log-normalised values (``log1p`` given, or all values up to ``LOG_MAX``) whose counts can be
      recovered (``cell_totals``, or each cell's smallest value as one count): ``seurat_v3`` on the
      recovered counts (method ``"seurat_v3_recovered_counts"``), the genes of a run on the counts;
    * other log-normalised values: scanpy's flavour for log data (method ``"seurat"``);
    * other non-integer values: the variance of the values (method ``"variance"``).

    Fewer than ``MIN_LOESS_GENES`` varying genes, or a loess fit of the mean-variance trend that
    fails (a small panel, a handful of cells), also rank genes by variance (the trend cannot be estimated).

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
        Called with the number of rows done after each chunk of the two passes on counts.
    cell_totals
        Each cell's count total (``obs['n_counts']``), to recover counts from log-normalised values.
    log1p
        ``uns['log1p']`` of log-normalised data (its ``base``), None when not recorded.

    Returns
    -------
    The scores (higher is more variable) and the method used: ``"seurat_v3"``,
    ``"seurat_v3_recovered_counts"``, ``"seurat"`` or ``"variance"``.

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
    maximum = 0.0
    for rows in chunks:
        block = read_csr(matrix, rows, columns)
        check_values(block, where=where)
        integers = integers and bool(np.all(block.data == np.floor(block.data)))
        maximum = max(maximum, float(block.data.max()) if block.nnz else 0.0)
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
        return _normalised_scores(
            matrix, columns, chunks, variance, maximum, span=span, where=where, cell_totals=cell_totals, log1p=log1p
        )
    read = lambda rows: read_csr(matrix, rows, columns)  # noqa: E731
    scores = _clipped_scores(read, chunks, mean, variance, span=span, progress=progress)
    if scores is None:
        warnings.warn(
            f"Only {n_varying} of the {len(columns)} candidate genes vary across the {n_obs} cells of {where}: "
            "too few to fit seurat_v3's mean-variance trend, so genes are ranked by variance instead. "
            "Use more cells, or pass genes= to choose the genes yourself.",
            UserWarning,
            stacklevel=3,
        )
        return variance, "variance"
    return scores, "seurat_v3"


def _clipped_scores(read, chunks, mean, variance, *, span, progress=None) -> np.ndarray | None:
    """seurat_v3's second pass: variance of the values clipped at the loess trend (None: no trend)."""
    n_obs = int(sum(len(rows) for rows in chunks))
    varying = variance > 0
    fitted = _loess_trend(np.log10(mean[varying]), np.log10(variance[varying]), span=span)
    if fitted is None:
        return None
    trend = np.zeros(len(mean))
    trend[varying] = fitted
    regularised_std = np.sqrt(10**trend)
    clip = regularised_std * np.sqrt(n_obs) + mean
    clipped_sum = np.zeros(len(mean))
    clipped_squares = np.zeros(len(mean))
    for rows in chunks:
        block = read(rows)
        block.data = np.minimum(block.data, clip[block.indices])
        clipped_sum += np.asarray(block.sum(0)).ravel()
        clipped_squares += np.asarray(block.multiply(block).sum(0)).ravel()
        if progress:
            progress(len(rows))
    return (n_obs * mean**2 + clipped_squares - 2 * clipped_sum * mean) / ((n_obs - 1) * regularised_std**2)


def _normalised_scores(
    matrix, columns, chunks, variance, maximum, *, span, where, cell_totals, log1p
) -> tuple[np.ndarray, str]:
    """Scores of non-integer values: seurat_v3 on recovered counts, else scanpy's ``seurat``, else the variance.

    ``log1p`` is ``uns['log1p']`` (None: not recorded; the values are still tried as log1p of normalised
    counts when they are below ``LOG_MAX``, as any log-normalised matrix is).
    """
    n_obs = matrix.shape[0]
    base = (log1p or {}).get("base")
    if log1p is None and maximum > LOG_MAX:
        warnings.warn(
            f"{where} holds non-integer values that are not log-normalised (values up to {maximum:.4g}), but "
            "seurat_v3 highly variable genes expect counts: genes are ranked by the variance of the values instead, "
            "so the genes read differ from a run on counts. Pass layer= naming a layer of raw counts to use seurat_v3.",
            UserWarning,
            stacklevel=4,
        )
        return variance, "variance"
    stats = log_stats(matrix, columns, chunks, base=base)
    recovered = recovered_count_stats(matrix, columns, chunks, stats, cell_totals=cell_totals, base=base)
    if recovered is not None:
        factors, total, total_squares, how = recovered
        mean = total / n_obs
        counts_variance = np.maximum((total_squares / n_obs - mean**2) * (n_obs / (n_obs - 1)), 0.0)
        read = lambda rows: recovered_block(matrix, rows, columns, factors, base=base)  # noqa: E731
        scores = _clipped_scores(read, chunks, mean, counts_variance, span=span)
        if scores is not None:
            warnings.warn(
                f"{where} holds log-normalised values: the counts were recovered from them ({how}) to choose the "
                "genes with seurat_v3 as on counts. Within a cell log1p(normalised counts) orders genes as the counts "
                "do, so the cells are read as from the counts.",
                UserWarning,
                stacklevel=4,
            )
            return scores, "seurat_v3_recovered_counts"
    warnings.warn(
        f"{where} holds log-normalised values and no counts could be recovered from them (keep obs['n_counts'] "
        "or obs['total_counts'] beside them, or pass layer= naming a layer of raw counts): genes are chosen by "
        "scanpy's 'seurat' flavour for log data (normalised dispersion) instead of seurat_v3 on counts. Within a "
        "cell the genes are ordered as on counts, but the genes chosen differ, and so may the embedding.",
        UserWarning,
        stacklevel=4,
    )
    return seurat_dispersion_scores(stats, n_obs), "seurat"


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
