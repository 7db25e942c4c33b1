"""``oc.pl.proportions``: cell-type proportions of spots from ``oc.tl.deconvolve``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from omnicell._core import keys
from omnicell.pl._utils import finish_figure

__all__ = ["proportions"]


def proportions(
    adata: AnnData,
    *,
    key: str = keys.PROPORTIONS,
    types: Sequence[str] | None = None,
    groupby: str | None = None,
    spatial_key: str = keys.SPATIAL,
    cmap: str = "viridis",
    vmax: float | str | None = "auto",
    ncols: int = 4,
    size: float | None = None,
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    return_fig: bool = False,
    show: bool | None = None,
    save: bool | str | None = None,
    **kwds,
) -> list[Axes] | Axes | None:
    """Show the cell-type proportions of :func:`omnicell.tl.deconvolve`.

    Without ``groupby``: one spatial panel per type, spots coloured by the type's proportion
    (drawn by :func:`squidpy.pl.spatial_scatter`; each panel on its own colour scale from 0 to the
    type's largest proportion, so that rare types are readable, the maximum shown in the title). With
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
    vmax
        Top of the colour scale: ``"auto"`` per panel, the type's largest proportion (its title
        says ``max 0.07``); a number for one scale shared by every panel (e.g. 1.0).
    ncols
        Panels per row.
    size
        Spot size of the spatial panels (squidpy's ``size``).
    figsize
        Figure size.
    ax
        Axes for the stacked bars (``groupby``); the spatial panels make their own figure.
    return_fig
        Return the matplotlib Figure instead of the axes (and do not show it), as scanpy's plots do.
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
        return _stacked_bars(adata, table, groupby, figsize=figsize, ax=ax, show=show, save=save, return_fig=return_fig)
    if not (vmax == "auto" or vmax is None or (isinstance(vmax, int | float) and vmax > 0)):
        raise ValueError(f"vmax must be 'auto' or a positive number, got {vmax!r}.")
    return _spatial_panels(
        adata, table, spatial_key=spatial_key, cmap=cmap, vmax=vmax, ncols=ncols, size=size, figsize=figsize,
        show=show, save=save, return_fig=return_fig, **kwds,
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
    adata: AnnData,
    table: pd.DataFrame,
    *,
    spatial_key,
    cmap,
    vmax,
    ncols,
    size,
    figsize,
    show,
    save,
    return_fig,
    **kwds,
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
    kwds.setdefault("library_id", ["proportions"])  # one section, no image: spares squidpy's library notice
    columns = list(table.columns)
    given_norm = kwds.pop("norm", None)
    ncols = max(1, min(int(ncols), len(columns)))
    nrows = int(np.ceil(len(columns) / ncols))
    figure, grid = plt.subplots(
        nrows, ncols, figsize=figsize or (4.2 * ncols, 4.0 * nrows), squeeze=False, layout="constrained"
    )
    axes = list(grid.ravel())
    for panel, column in zip(axes, columns, strict=False):
        # One colour scale per panel: a type at 5% everywhere would be one flat dark colour on 0..1.
        values = table[column].to_numpy(dtype=np.float64)
        top = float(np.nanmax(values)) if vmax in ("auto", None) and np.isfinite(values).any() else vmax
        top = float(top) if top not in (None, "auto") and float(top) > 0 else 1.0
        sq.pl.spatial_scatter(
            holder, shape=None, color=column, spatial_key=spatial_key, cmap=cmap, size=size, ax=panel,
            norm=given_norm or Normalize(0.0, top), title=column, **kwds,
        )  # fmt: skip
        panel.set_title(f"{column} (max {top:.2g})" if vmax in ("auto", None) else column)
    for panel in axes[len(columns) :]:
        panel.set_visible(False)
    axes = axes[: len(columns)]
    return finish_figure(figure, "proportions", axes, show=show, save=save, return_fig=return_fig)


def _stacked_bars(adata: AnnData, table: pd.DataFrame, groupby: str, *, figsize, ax, show, save, return_fig):
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
    return finish_figure(ax.figure, "proportions", ax, show=show, save=save, return_fig=return_fig)
