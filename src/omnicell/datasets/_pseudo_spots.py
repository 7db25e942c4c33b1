"""Pseudo-spots: cells of a single-cell-resolution section summed on a square grid, with known proportions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["pseudo_spots"]


def pseudo_spots(
    adata: AnnData,
    *,
    spot_size: float,
    label_key: str,
    spatial_key: str = "spatial",
    min_cells: int = 2,
    layer: str | None = None,
) -> AnnData:
    """Aggregate the cells of a spatial section into square spots whose cell-type proportions are known.

    A stand-in for spot-based data (Visium) where only single-cell-resolution data are at hand: each
    spot's counts are the sum over the cells inside a ``spot_size`` x ``spot_size`` square of a grid
    anchored at the smallest coordinates, so :func:`omnicell.tl.deconvolve` can be scored against the
    truth.

    Parameters
    ----------
    adata
        Cells with counts in ``X`` (or ``layer``), labels in ``obs[label_key]`` and coordinates in
        ``obsm[spatial_key]``. Not modified.
    spot_size
        Side of a spot, in the units of the coordinates.
    label_key
        ``obs`` column of cell types whose proportions are recorded.
    spatial_key
        ``obsm`` key of the coordinates (the first two columns are used).
    min_cells
        Squares holding fewer cells are dropped.
    layer
        Layer holding the counts; None uses ``X``.

    Returns
    -------
    AnnData with one row per spot (named ``spot_<column>_<row>``): summed counts in ``X``;
    ``obsm['spatial']`` the mean position of its cells; ``obsm['proportions']`` a DataFrame with one
    column per category of ``obs[label_key]`` (rows sum to 1); ``obs['n_cells']``; ``obs[label_key]`` the
    most frequent type and, for every other categorical ``obs`` column of ``adata`` (e.g. a layer
    annotation), its most frequent value; ``uns['pseudo_spots']`` the parameters.
    """
    if spot_size <= 0:
        raise ValueError(f"spot_size must be positive, got {spot_size!r}.")
    if label_key not in adata.obs:
        raise KeyError(f"No column {label_key!r} in adata.obs; pass the cell-type column as label_key=.")
    if spatial_key not in adata.obsm:
        raise KeyError(f"No coordinates in adata.obsm[{spatial_key!r}]; pass spatial_key=.")
    counts = adata.X if layer is None else adata.layers[layer]
    coords = np.asarray(adata.obsm[spatial_key], dtype=np.float64)[:, :2]
    cells = np.floor((coords - coords.min(axis=0)) / spot_size).astype(np.int64)
    squares, spot_of_cell = np.unique(cells, axis=0, return_inverse=True)
    spot_of_cell = spot_of_cell.ravel()
    n_cells = np.bincount(spot_of_cell, minlength=len(squares))
    kept = np.flatnonzero(n_cells >= min_cells)
    if kept.size == 0:
        raise ValueError(f"No square of side {spot_size} holds {min_cells} cells or more; choose a larger spot_size.")
    # membership matrix (spots x cells): one matrix product sums counts, coordinates and labels
    member = sp.csr_matrix(
        (np.ones(adata.n_obs, dtype=np.float32), (spot_of_cell, np.arange(adata.n_obs))),
        shape=(len(squares), adata.n_obs),
    )[kept]
    labels = pd.Categorical(adata.obs[label_key])
    one_hot = sp.csr_matrix(
        (np.ones(adata.n_obs, dtype=np.float32), (np.arange(adata.n_obs), labels.codes)),
        shape=(adata.n_obs, len(labels.categories)),
    )
    type_counts = np.asarray((member @ one_hot).todense())
    names = pd.Index([f"spot_{c}_{r}" for c, r in squares[kept]])
    obs = pd.DataFrame({"n_cells": n_cells[kept]}, index=names)
    obs[label_key] = pd.Categorical.from_codes(type_counts.argmax(axis=1), categories=labels.categories)
    for key in adata.obs.columns:
        if key != label_key and isinstance(adata.obs[key].dtype, pd.CategoricalDtype):
            values = pd.Categorical(adata.obs[key])
            table = member @ sp.csr_matrix(
                (np.ones(adata.n_obs), (np.arange(adata.n_obs), values.codes.clip(0))),
                shape=(adata.n_obs, len(values.categories)),
            )
            obs[key] = pd.Categorical.from_codes(np.asarray(table.argmax(axis=1)).ravel(), values.categories)
    summed = member @ (counts if sp.issparse(counts) else sp.csr_matrix(counts))
    spots = AnnData(X=sp.csr_matrix(summed, dtype=np.float32), obs=obs, var=adata.var[[]].copy())
    spots.obsm["spatial"] = (member @ coords) / n_cells[kept, None]
    spots.obsm["proportions"] = pd.DataFrame(
        type_counts / n_cells[kept, None], index=names, columns=labels.categories.astype(str)
    )
    spots.uns["pseudo_spots"] = {"spot_size": float(spot_size), "label_key": label_key, "min_cells": int(min_cells)}
    return spots
