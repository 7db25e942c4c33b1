"""``oc.pl.proportions``: cell-type proportions of spots from ``oc.tl.deconvolve``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from .. import _keys
from ._utils import savefig_or_show

__all__ = ["proportions"]


def proportions(
    adata: AnnData,
    *,
    key: str = _keys.PROPORTIONS,
    types: Sequence[str] | None = None,
    groupby: str | None = None,
    spatial_key: str = _keys.SPATIAL,
    cmap: str = "viridis",
    ncols: int = 4,
    size: float | None = None,
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: bool | str | None = None,
    **kwds,
) -> list[Axes] | Axes | None:
    """Show the cell-type proportions of :func:`omnicell.tl.deconvolve`.

    Without ``groupby``: one spatial panel per type, spots coloured by the type's proportion
    (drawn by :func:`squidpy.pl.spatial_scatter`, on a colour scale from 0 to 1). With
    ``groupby``: a stacked bar per group (e.g. region, domain) of the mean proportions of its spots.

    Parameters
    ----------
    adata
        AnnData after :func:`omnicell.tl.deconvolve`.
    key
        ``obsm`` key of the proportions (a DataFrame with one column per type).
    types
        Types to show (default all).
    groupby
        ``obs`` column: draw mean proportions per group as stacked bars instead of spatial panels.
    spatial_key
        ``obsm`` key of the coordinates (spatial panels).
    cmap
        Colour map of the spatial panels.
    ncols
        Panels per row.
    size
        Spot size of the spatial panels (squidpy's ``size``).
    figsize
        Figure size.
    ax
        Axes for the stacked bars (``groupby``); the spatial panels make their own figure.
    show
        Show the figure; None follows ``sc.settings.autoshow``.
    save
        True or a file-name suffix: save to ``sc.settings.figdir`` as ``proportions{save}``, as
        scanpy does; a path with a folder is used as is.
    **kwds
        Passed to :func:`squidpy.pl.spatial_scatter` (spatial panels).

    Returns
    -------
    With ``show=False``: the list of panel Axes (spatial) or the bar Axes (``groupby``); else None.
    """
    table = _proportion_table(adata, key)
    if types is not None:
        missing = [t for t in types if t not in table.columns]
        if missing:
            raise KeyError(f"Types {missing} are not columns of obsm[{key!r}]; available: {list(table.columns)}.")
        table = table[list(types)]
    if groupby is not None:
        return _stacked_bars(adata, table, groupby, figsize=figsize, ax=ax, show=show, save=save)
    return _spatial_panels(
        adata, table, spatial_key=spatial_key, cmap=cmap, ncols=ncols, size=size, figsize=figsize, show=show, save=save,
        **kwds,
    )  # fmt: skip


def _proportion_table(adata: AnnData, key: str) -> pd.DataFrame:
    if key not in adata.obsm:
        raise KeyError(
            f"No proportions in adata.obsm[{key!r}]; run oc.tl.deconvolve(adata, reference, label_key) first."
        )
    table = adata.obsm[key]
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"adata.obsm[{key!r}] must be a DataFrame with one column per cell type, as deconvolve writes.")
    table = table.copy()
    table.columns = [str(c) for c in table.columns]
    return table


def _spatial_panels(
    adata: AnnData, table: pd.DataFrame, *, spatial_key, cmap, ncols, size, figsize, show, save, **kwds
):
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SyntaxWarning)  # docrep, on squidpy's import
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import squidpy as sq

    if spatial_key not in adata.obsm:
        raise KeyError(f"No coordinates in adata.obsm[{spatial_key!r}]; pass spatial_key= or groupby= for bars.")
    holder = AnnData(obs=table.set_axis(adata.obs_names, axis=0))
    holder.obsm[spatial_key] = np.asarray(adata.obsm[spatial_key])[:, :2]
    kwds.setdefault("norm", Normalize(0.0, 1.0))
    kwds.setdefault("library_id", ["proportions"])  # one section, no image: spares squidpy's library notice
    axes = sq.pl.spatial_scatter(
        holder, shape=None, color=list(table.columns), spatial_key=spatial_key, cmap=cmap, ncols=ncols, size=size,
        figsize=figsize, return_ax=True, **kwds,
    )  # fmt: skip
    axes = list(np.ravel(axes)) if isinstance(axes, (list, tuple, np.ndarray)) else [axes]
    figure = axes[0].figure if axes else plt.gcf()
    shown = savefig_or_show(figure, "proportions", show=show, save=save)
    return None if shown else axes


def _stacked_bars(adata: AnnData, table: pd.DataFrame, groupby: str, *, figsize, ax, show, save):
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    if groupby not in adata.obs:
        raise KeyError(f"groupby {groupby!r} is not an obs column; available: {list(adata.obs.columns)}.")
    groups = adata.obs[groupby].to_numpy()
    means = table.set_axis(adata.obs_names, axis=0).groupby(groups, observed=True, sort=True).mean()
    if isinstance(adata.obs[groupby].dtype, pd.CategoricalDtype):
        means = means.reindex([c for c in adata.obs[groupby].cat.categories if c in means.index])
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (1.5 + 0.5 * len(means), 4.0))
    colours = mpl.colormaps["tab20" if table.shape[1] > 10 else "tab10"].colors
    bottom = np.zeros(len(means))
    positions = np.arange(len(means))
    for j, column in enumerate(means.columns):
        values = means[column].to_numpy()
        ax.bar(positions, values, bottom=bottom, color=colours[j % len(colours)], label=column, width=0.8)
        bottom += values
    ax.set_xticks(positions, [str(g) for g in means.index], rotation=90)
    ax.set_ylabel("mean proportion")
    ax.set_xlabel(groupby)
    ax.set_ylim(0, max(1.0, float(bottom.max()) if len(bottom) else 1.0))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small")
    shown = savefig_or_show(ax.figure, "proportions", show=show, save=save)
    return None if shown else ax
