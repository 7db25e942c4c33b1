"""Highly variable genes of log-normalised input, chosen as they would be on the counts.

Within a cell, ``log1p(normalised counts)`` orders genes as the counts do, so the model reads the same soft
ranks either way: only the choice of genes can differ. Two ways keep it the same or close:

* recover the counts: ``counts = expm1(x) * total / target`` must come out as integers, with ``total`` the
  cell's count total (``obs['n_counts']`` or ``obs['total_counts']``) and ``target`` the normalisation's target
  sum (estimated as the median of ``total * smallest expm1(x)``: most cells hold a gene seen once); without
  totals, a cell's smallest value is taken as one count. When the recovered values are integers (to rounding),
  ``seurat_v3`` scores them as it would the counts;
* otherwise scanpy's flavour for log data, ``seurat`` (the normalised dispersion of ``expm1(x)`` in 20 bins of
  mean expression), which is what ``sc.pp.highly_variable_genes`` does on log-normalised data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from omnicell.data._matrix import read_csr

__all__ = ["LogStats", "log_stats", "recovered_block", "recovered_count_stats", "seurat_dispersion_scores"]

#: A recovered value counts as an integer within this distance ...
INTEGER_TOLERANCE = 0.05
#: ... and the counts are taken as recovered when this share of the non-zero values is.
INTEGER_SHARE = 0.999


class LogStats:
    """Per-gene sums of ``expm1(x)`` and of its squares, and each cell's smallest non-zero ``expm1(x)``."""

    def __init__(self, n_obs: int, n_columns: int) -> None:
        self.total = np.zeros(n_columns)
        self.total_squares = np.zeros(n_columns)
        self.cell_min = np.full(n_obs, np.nan)


def _expm1(block, scale: float):
    block = block.copy()
    with np.errstate(over="ignore"):
        block.data = np.expm1(block.data * scale)
    return block


def _row_min(block) -> np.ndarray:
    """Smallest stored value of each row of a CSR block (NaN for an empty row)."""
    out = np.full(block.shape[0], np.nan)
    counts = np.diff(block.indptr)
    rows = np.flatnonzero(counts)
    if len(rows):
        out[rows] = np.minimum.reduceat(block.data, block.indptr[rows])
    return out


def log_stats(matrix, columns: np.ndarray, chunks: list[np.ndarray], *, base: float | None = None) -> LogStats:
    """One pass over ``chunks`` of rows: the statistics of ``expm1(x)`` (``x`` in log base ``base``, default e)."""
    scale = 1.0 if base is None else float(np.log(base))
    stats = LogStats(matrix.shape[0], len(columns))
    for rows in chunks:
        block = read_csr(matrix, rows, columns)
        block.eliminate_zeros()
        values = _expm1(block, scale)
        stats.total += np.asarray(values.sum(0)).ravel()
        stats.total_squares += np.asarray(values.multiply(values).sum(0)).ravel()
        stats.cell_min[rows] = _row_min(values)
    return stats


def recovered_count_stats(
    matrix,
    columns: np.ndarray,
    chunks: list[np.ndarray],
    stats: LogStats,
    *,
    cell_totals: np.ndarray | None = None,
    base: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str] | None:
    """Per-cell factors that turn ``expm1(x)`` into integer counts, or None when there are none.

    Returns ``(factors, sums, sums of squares)`` of the recovered counts and how they were recovered.
    Candidates, tried in one pass: from ``cell_totals`` and the estimated target sum, then each cell's
    smallest value as one count. The first whose values are integers (``INTEGER_SHARE`` of them within
    ``INTEGER_TOLERANCE``) wins.
    """
    scale = 1.0 if base is None else float(np.log(base))
    with np.errstate(divide="ignore", invalid="ignore"):
        candidates = []
        if cell_totals is not None:
            totals = np.asarray(cell_totals, dtype=np.float64)
            usable = np.isfinite(stats.cell_min) & np.isfinite(totals) & (totals > 0)
            if usable.any():
                target = float(np.median(totals[usable] * stats.cell_min[usable]))
                candidates.append((totals / target, f"the cell totals and a target sum of {target:.4g}"))
        candidates.append((1.0 / stats.cell_min, "each cell's smallest value taken as one count"))
    factors = [np.where(np.isfinite(f), f, 0.0) for f, _ in candidates]
    integral = np.zeros(len(factors))
    n_values = 0
    sums = [np.zeros(len(columns)) for _ in factors]
    squares = [np.zeros(len(columns)) for _ in factors]
    for rows in chunks:
        block = read_csr(matrix, rows, columns)
        block.eliminate_zeros()
        values = _expm1(block, scale)
        n_values += values.nnz
        for k, factor in enumerate(factors):
            recovered = values.multiply(factor[rows][:, None]).tocsr()
            rounded = np.rint(recovered.data)
            integral[k] += np.count_nonzero((np.abs(recovered.data - rounded) <= INTEGER_TOLERANCE) & (rounded >= 1))
            recovered.data = rounded
            sums[k] += np.asarray(recovered.sum(0)).ravel()
            squares[k] += np.asarray(recovered.multiply(recovered).sum(0)).ravel()
    for k, (_, how) in enumerate(candidates):
        if n_values and integral[k] >= INTEGER_SHARE * n_values:
            return factors[k], sums[k], squares[k], how
    return None


def recovered_block(matrix, rows: np.ndarray, columns: np.ndarray, factors: np.ndarray, *, base: float | None = None):
    """The recovered counts of ``rows`` (CSR)."""
    scale = 1.0 if base is None else float(np.log(base))
    values = _expm1(read_csr(matrix, rows, columns), scale).multiply(factors[rows][:, None]).tocsr()
    values.data = np.rint(values.data)
    return values


def seurat_dispersion_scores(stats: LogStats, n_obs: int, *, n_bins: int = 20) -> np.ndarray:
    """``dispersions_norm`` of ``sc.pp.highly_variable_genes(flavor='seurat')`` (NaN scored lowest)."""
    mean = stats.total / n_obs
    variance = np.maximum((stats.total_squares / n_obs - mean**2) * (n_obs / (n_obs - 1)), 0.0)
    mean[mean == 0] = 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = variance / mean
        dispersion[dispersion == 0] = np.nan
        dispersion = np.log(dispersion)
    frame = pd.DataFrame({"mean": np.log1p(mean), "dispersion": dispersion})
    frame["bin"] = pd.cut(frame["mean"], bins=n_bins)
    grouped = frame.groupby("bin", observed=True)["dispersion"]
    bin_mean, bin_std = grouped.mean(), grouped.std(ddof=1)
    # scanpy: a bin with one gene has no spread; that gene gets dispersions_norm 1 (mean 0, std its value)
    lonely = bin_std.isnull()
    bin_std[lonely], bin_mean[lonely] = bin_mean[lonely], 0.0
    norm = (frame["dispersion"] - frame["bin"].map(bin_mean).astype(float)) / frame["bin"].map(bin_std).astype(float)
    return np.nan_to_num(norm.to_numpy(dtype=np.float64), nan=-np.inf)
