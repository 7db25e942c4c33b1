"""``oc.pl.gene_modules``: module scores on an embedding and a module x group heatmap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from omnicell._core import keys
from omnicell._core.groups import group_codes
from omnicell._core.provenance import get_record
from omnicell.pl._utils import finish_figure

__all__ = ["gene_modules"]


def gene_modules(
    adata: AnnData,
    groupby: str | None = None,
    *,
    basis: str | None = None,
    modules: Sequence[str] | None = None,
    key: str = keys.GENE_MODULE,
    zscore: bool = True,
    cmap: str = "viridis",
    heatmap_cmap: str | None = None,
    ncols: int = 4,
    panel_size: float = 3.0,
    return_fig: bool = False,
    show: bool | None = None,
    save: bool | str | None = None,
) -> dict[str, Axes | list[Axes]] | None:
    """Gene-module scores from :func:`omnicell.tl.gene_modules`: on an embedding and per group.

    One panel per module shows its score on the cells of ``basis`` (drawn by
    :func:`scanpy.pl.embedding`); with ``groupby`` a heatmap shows the mean score of every module
    (rows) in every group (columns).

    Parameters
    ----------
    adata
        AnnData after :func:`omnicell.tl.gene_modules` (module scores in ``obs``).
    groupby
        ``obs`` column for the module x group heatmap; None draws no heatmap.
    basis
        Embedding for the score panels (``obsm[basis]`` or ``obsm['X_' + basis]``, e.g. ``'umap'``,
        ``'X_omnicell'``); None uses ``'umap'`` when present, else draws no panels.
    modules
        Modules to show (labels such as ``'0'``); default all scored modules.
    key
        ``key_added`` of :func:`omnicell.tl.gene_modules`.
    zscore
        Heatmap: standardise each module's group means across groups (diverging colours);
        False shows the mean scores.
    cmap
        Colour map of the embedding panels.
    heatmap_cmap
        Colour map of the heatmap; default ``'RdBu_r'`` with ``zscore`` else ``'viridis'``.
    ncols
        Embedding panels per row.
    panel_size
        Size in inches of one embedding panel.
    return_fig
        Return the matplotlib Figure instead of the axes (and do not show it), as scanpy's plots do.
    show
        Show the figure; None follows ``sc.settings.autoshow``.
    save
        True or a file-name suffix: save to ``sc.settings.figdir`` as ``gene_modules{save}``,
        as scanpy does; a path with a folder is used as is.

    Returns
    -------
    With ``show=False``, a dict with ``'embedding'`` (list of Axes, one per module) and/or
    ``'heatmap'`` (Axes); else None.
    """
    import matplotlib.pyplot as plt
    import scanpy as sc
    from matplotlib.colors import Normalize
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    record = get_record(adata, "gene_modules", key=key)
    if key not in adata.var or record is None:
        raise KeyError(f"No gene modules in adata.var[{key!r}]; run oc.tl.gene_modules(adata) first.")
    available = [str(m) for m in record["modules"]]
    labels = available if modules is None else [str(m) for m in modules]
    unknown = [m for m in labels if m not in available]
    if unknown:
        raise ValueError(f"Unknown modules {unknown}; modules: {available}.")
    columns = [f"{key}_{m}" for m in labels]
    missing = [c for c in columns if c not in adata.obs]
    if missing:
        raise KeyError(f"No module scores {missing} in adata.obs; run oc.tl.gene_modules(adata, score=True).")
    if basis is None and ("X_umap" in adata.obsm or "umap" in adata.obsm):
        basis = "umap"
    if basis is not None and basis not in adata.obsm and f"X_{basis}" not in adata.obsm:
        raise KeyError(
            f"No embedding {basis!r} in adata.obsm ({list(adata.obsm)}); compute one, e.g. sc.tl.umap(adata)."
        )
    if basis is None and groupby is None:
        raise ValueError("Nothing to draw: pass basis= (an obsm embedding) and/or groupby= (for the heatmap).")
    table = None
    if groupby is not None:
        codes, groups = group_codes(adata, groupby)
        scores = adata.obs[columns].to_numpy(dtype=np.float64)
        table = pd.DataFrame(
            [scores[codes == g].mean(0) for g in range(len(groups))], index=groups, columns=labels
        ).T  # modules x groups
        if zscore:
            spread = table.std(axis=1, ddof=0).replace(0.0, np.nan)
            table = table.sub(table.mean(axis=1), axis=0).div(spread, axis=0).fillna(0.0)

    n_panels = len(columns) if basis is not None else 0
    ncols = max(1, min(int(ncols), n_panels)) if n_panels else 1
    n_rows_panels = -(-n_panels // ncols) if n_panels else 0
    heat_height = 0.0 if table is None else 1.2 + 0.35 * table.shape[0]
    heat_width = 0.0 if table is None else 2.5 + 0.4 * table.shape[1]
    width = max(ncols * panel_size * 1.25, heat_width)
    figure = plt.figure(figsize=(width, n_rows_panels * panel_size + heat_height + (0.8 if table is not None else 0)))
    ratios = [panel_size] * n_rows_panels + ([heat_height] if table is not None else [])
    grid = figure.add_gridspec(len(ratios), ncols, height_ratios=ratios, hspace=0.45, wspace=0.35)
    axes: dict[str, Axes | list[Axes]] = {}
    if n_panels:
        panel_axes = []
        for i, (label, column) in enumerate(zip(labels, columns, strict=True)):
            panel = figure.add_subplot(grid[i // ncols, i % ncols])
            sc.pl.embedding(adata, basis=basis, color=column, ax=panel, show=False, color_map=cmap,
                            title=f"module {label}", frameon=False)  # fmt: skip
            panel_axes.append(panel)
        axes["embedding"] = panel_axes
    if table is not None:
        heat = figure.add_subplot(grid[n_rows_panels, :])
        values = table.to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        if zscore:
            limit = float(np.abs(finite).max()) if finite.size else 1.0
            norm, colours = Normalize(-(limit or 1.0), limit or 1.0), heatmap_cmap or "RdBu_r"
        else:
            norm, colours = Normalize(float(finite.min()), float(finite.max())), heatmap_cmap or "viridis"
        image = heat.imshow(values, aspect="auto", cmap=colours, norm=norm, interpolation="nearest")
        heat.set_xticks(np.arange(values.shape[1]), [str(g) for g in table.columns], rotation=90)
        heat.set_yticks(np.arange(values.shape[0]), [f"module {m}" for m in table.index])
        heat.set_xlabel(groupby)
        heat.tick_params(length=0)
        for spine in heat.spines.values():
            spine.set_visible(False)
        bar_ax = make_axes_locatable(heat).append_axes("right", size=0.18, pad=0.1)
        figure.colorbar(image, cax=bar_ax).set_label("score z-score" if zscore else "mean score")
        axes["heatmap"] = heat
    return finish_figure(figure, "gene_modules", axes, show=show, save=save, return_fig=return_fig)
