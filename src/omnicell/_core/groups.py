"""Cells grouped by an ``obs`` column, and per-group summaries: shared by ``tl`` and ``pl``.

Pure functions of ``obs`` and arrays (no model): ``pl`` recomputes a summary for any grouping from
what ``tl`` stored, without importing ``tl``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

__all__ = ["expert_zscores", "group_codes"]


def group_codes(adata: AnnData, groupby: str, groups: Sequence[str] | None = None) -> tuple[np.ndarray, pd.Index]:
    """Integer code of each cell's group (-1 for cells outside ``groups`` or NaN) and the group labels."""
    if groupby not in adata.obs:
        raise KeyError(f"groupby {groupby!r} is not an obs column; available: {list(adata.obs.columns)}.")
    column = adata.obs[groupby]
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(str).astype("category") if column.notna().all() else column.astype("category")
    labels = pd.Index(column.cat.categories.astype(str))
    codes = column.cat.codes.to_numpy().astype(np.int64)
    present = np.bincount(codes[codes >= 0], minlength=len(labels)) > 0
    keep = present.copy()
    if groups is not None:
        wanted = pd.Index([str(g) for g in groups])
        missing = wanted.difference(labels)
        if len(missing):
            raise ValueError(
                f"groups {list(missing)} are not categories of obs[{groupby!r}]; categories: {list(labels)}."
            )
        keep &= labels.isin(wanted)
    remap = np.full(len(labels), -1, dtype=np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return codes, labels[keep]


def expert_zscores(
    usage: np.ndarray, codes: np.ndarray, labels: pd.Index, n_experts: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean usage of each expert per group (cells with a usage only) and its z-score across groups."""
    valid = (codes >= 0) & np.isfinite(usage).all(1)
    sums = np.zeros((len(labels), n_experts))
    np.add.at(sums, codes[valid], usage[valid])
    counts = np.bincount(codes[valid], minlength=len(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    experts = [f"Expert_{i}" for i in range(n_experts)]
    mean = pd.DataFrame(means, index=pd.Index(labels, name="group"), columns=experts)
    populated = mean.dropna()
    spread = populated.std(axis=0, ddof=0).replace(0.0, np.nan)
    zscore = ((mean - populated.mean(axis=0)) / spread).fillna(0.0).where(mean.notna())
    return mean, zscore
