"""``oc.pl.expert_heatmap``: MoE expert usage per group (the paper's Figure 3G)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from omnicell._core import keys
from omnicell._core.groups import expert_zscores, group_codes
from omnicell.pl._utils import finish_figure

__all__ = ["expert_heatmap"]


def expert_heatmap(
    adata: AnnData,
    groupby: str,
    *,
    lineage_key: str | None = None,
    key: str = keys.EXPERTS,
    zscore: bool = True,
    cmap: str | None = None,
    vmax: float | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    return_fig: bool = False,
    show: bool | None = None,
    save: bool | str | None = None,
) -> dict[str, Axes] | None:
    """Heatmap of expert usage: groups as rows, routed experts as columns.

    Each cell's usage (``obsm[key]`` from :func:`omnicell.tl.expert_usage`) is averaged per group;
    with ``zscore`` each expert (column) is standardised across groups and drawn with a
    diverging colour map centred at 0 (red: a group uses the expert more than the others).

    Parameters
    ----------
    adata
        AnnData after :func:`omnicell.tl.expert_usage`.
    groupby
        ``obs`` column with the groups (rows).
    lineage_key
        ``obs`` column with a coarser grouping (e.g. lineage): rows are ordered by each group's
        most frequent lineage, which is shown in a coloured strip with a legend.
    key
        ``obsm`` key of the per-cell usage.
    zscore
        Standardise each expert across groups; False shows the mean routing probabilities.
    cmap
        Colour map; default ``'RdBu_r'`` (z-scores) or ``'Reds'`` (means).
    vmax
        Colour limit (``-vmax`` to ``vmax`` for z-scores); default the largest absolute value.
    figsize
        Figure size when a new figure is made.
    title
        Axes title.
    ax
        Axes to draw into (the lineage strip and colour bar are split off it).
    return_fig
        Return the matplotlib Figure instead of the axes (and do not show it), as scanpy's plots do.
    show
        Show the figure; None follows ``sc.settings.autoshow``.
    save
        True or a file-name suffix (``'_pbmc.png'``): save to ``sc.settings.figdir`` as
        ``expert_heatmap{save}``, as scanpy does; a path with a folder is used as is.

    Returns
    -------
    With ``show=False``, a dict of Axes: ``'heatmap'``, ``'colorbar'`` and (with ``lineage_key``)
    ``'lineage'``; else None.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize, to_rgb
    from matplotlib.patches import Patch
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    if key not in adata.obsm:
        raise KeyError(f"No adata.obsm[{key!r}]; run oc.tl.expert_usage(adata, groupby) first.")
    usage = np.asarray(adata.obsm[key], dtype=np.float64)
    codes, labels = group_codes(adata, groupby)
    mean, z = expert_zscores(usage, codes, labels, usage.shape[1])
    table = z if zscore else mean
    lineage = None
    if lineage_key is not None:
        if lineage_key not in adata.obs:
            raise KeyError(f"lineage_key {lineage_key!r} is not an obs column; available: {list(adata.obs.columns)}.")
        lineage = _majority(adata.obs[lineage_key], codes, labels)
        column = adata.obs[lineage_key]
        if isinstance(column.dtype, pd.CategoricalDtype):
            categories = [c for c in column.cat.categories if c in set(lineage)]
        else:
            categories = sorted(set(lineage), key=str)
        rank = {c: i for i, c in enumerate(categories)}
        order = sorted(range(len(labels)), key=lambda i: (rank[lineage[i]], i))
        table, lineage = table.iloc[order], [lineage[i] for i in order]

    values = table.to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    if zscore:
        limit = float(vmax) if vmax is not None else (float(np.abs(finite).max()) if finite.size else 1.0)
        limit = limit or 1.0
        norm = Normalize(-limit, limit)
        cmap = cmap or "RdBu_r"
    else:
        low = float(finite.min()) if finite.size else 0.0
        norm = Normalize(low, float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0))
        cmap = cmap or "Reds"

    if ax is None:
        n_rows, n_cols = values.shape
        label_width = 0.07 * max(len(str(s)) for s in table.index)
        size = figsize or (2.0 + 0.45 * n_cols + label_width + (1.5 if lineage else 0.0), 1.2 + 0.32 * n_rows)
        figure, ax = plt.subplots(figsize=size)
    figure = ax.figure
    divider = make_axes_locatable(ax)
    image = ax.imshow(values, aspect="auto", cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_xticks(np.arange(values.shape[1]), table.columns, rotation=90)
    ax.set_yticks(np.arange(values.shape[0]), [str(s) for s in table.index])
    ax.set_xlabel("expert")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title)
    axes: dict[str, Axes] = {"heatmap": ax}
    colorbar_ax = divider.append_axes("right", size=0.18, pad=0.1)
    bar = figure.colorbar(image, cax=colorbar_ax)
    bar.set_label("z-score" if zscore else "mean routing probability")
    axes["colorbar"] = colorbar_ax
    if lineage is not None:
        names = list(dict.fromkeys(lineage))
        palette = _palette(adata, lineage_key, names)
        strip = divider.append_axes("left", size=0.2, pad=0.05)
        strip.imshow(np.array([[to_rgb(palette[name])] for name in lineage]), aspect="auto", interpolation="nearest")
        strip.set_xticks([])
        strip.set_yticks(np.arange(len(lineage)), [str(s) for s in table.index])
        strip.tick_params(length=0)
        ax.set_yticks([])
        for spine in strip.spines.values():
            spine.set_visible(False)
        colorbar_ax.legend(
            handles=[Patch(color=palette[n], label=str(n)) for n in names], title=lineage_key,
            loc="upper left", bbox_to_anchor=(5.0, 1.0), frameon=False, fontsize="small",
        )  # fmt: skip
        axes["lineage"] = strip
    return finish_figure(figure, "expert_heatmap", axes, show=show, save=save, return_fig=return_fig)


def _majority(column: pd.Series, codes: np.ndarray, labels: pd.Index) -> list:
    """The most frequent value of ``column`` among the cells of each group."""
    values = column.to_numpy()
    result = []
    for g in range(len(labels)):
        counts = pd.Series(values[codes == g]).value_counts(sort=True)
        result.append(counts.index[0] if len(counts) else "NA")
    return result


def _palette(adata: AnnData, key: str, names: list) -> dict:
    """Colours of the lineage categories: scanpy's ``uns[key + '_colors']`` when present, else tab10/tab20."""
    import matplotlib as mpl

    column = adata.obs[key]
    stored = adata.uns.get(f"{key}_colors")
    if (
        isinstance(column.dtype, pd.CategoricalDtype)
        and stored is not None
        and len(stored) == len(column.cat.categories)
    ):
        lookup = dict(zip(column.cat.categories, stored, strict=True))
        return {name: lookup[name] for name in names}
    colours = mpl.colormaps["tab10" if len(names) <= 10 else "tab20"].colors
    return {name: colours[i % len(colours)] for i, name in enumerate(names)}
