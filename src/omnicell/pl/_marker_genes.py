"""``oc.pl.marker_genes``: dot plot of the marker genes found by ``oc.tl.marker_genes``."""

from __future__ import annotations

from collections.abc import Sequence

from anndata import AnnData

from omnicell._core import keys
from omnicell.pl._utils import savefig_or_show

__all__ = ["marker_genes"]


def marker_genes(
    adata: AnnData,
    groupby: str | None = None,
    *,
    key: str = keys.RANK_GENES,
    n_genes: int = 5,
    groups: Sequence[str] | None = None,
    use_raw: bool | None = None,
    ax=None,
    return_fig: bool = False,
    show: bool | None = None,
    save: bool | str | None = None,
    **kwds,
):
    """Dot plot of the marker genes of :func:`omnicell.tl.marker_genes` (scanpy's dot plot).

    A thin wrapper over :func:`scanpy.pl.rank_genes_groups_dotplot`: dot size is the fraction of
    cells expressing the gene, colour its mean expression, genes grouped by the group they mark.
    The expression shown is by default the matrix the model read (``.raw`` when
    :func:`omnicell.pp.tokenize` used it).

    Parameters
    ----------
    adata
        AnnData after :func:`omnicell.tl.marker_genes`.
    groupby
        ``obs`` column of the dot plot's rows; default the one the markers were computed for.
    key
        ``key_added`` of :func:`omnicell.tl.marker_genes`.
    n_genes
        Markers per group.
    groups
        Groups whose markers are shown (default all).
    use_raw
        Plot ``adata.raw``; None follows the markers' ``params['use_raw']``.
    ax
        Axes to draw into (scanpy's ``ax``).
    return_fig
        Return scanpy's ``DotPlot`` object instead of drawing it.
    show
        Show the figure; None follows ``sc.settings.autoshow``.
    save
        True or a file-name suffix: save to ``sc.settings.figdir`` as ``dotplot_{save}``, as
        scanpy does; a path with a folder is used as is.
    **kwds
        Passed to :func:`scanpy.pl.rank_genes_groups_dotplot` (e.g. ``values_to_plot``,
        ``standard_scale``, ``dendrogram``, ``return_fig``).

    Returns
    -------
    What :func:`scanpy.pl.rank_genes_groups_dotplot` returns: a dict of Axes with ``show=False``,
    a ``DotPlot`` with ``return_fig=True``, else None.
    """
    import scanpy as sc

    if key not in adata.uns or "names" not in adata.uns[key]:
        raise KeyError(f"No marker genes in adata.uns[{key!r}]; run oc.tl.marker_genes(adata, groupby) first.")
    params = adata.uns[key].get("params", {})
    if use_raw is None:
        use_raw = bool(params.get("use_raw", False)) and adata.raw is not None
    layer = params.get("layer") if not use_raw else None
    if layer is not None and "layer" not in kwds and layer in adata.layers:
        kwds["layer"] = layer
    kwds.setdefault("dendrogram", False)
    plot = sc.pl.rank_genes_groups_dotplot(
        adata, groups=groups, n_genes=n_genes, groupby=groupby, key=key, use_raw=use_raw, show=False, return_fig=True,
        ax=ax, **kwds,
    )  # fmt: skip
    if return_fig:
        return plot  # scanpy's DotPlot, as sc.pl.rank_genes_groups_dotplot(return_fig=True)
    plot.make_figure()
    shown = savefig_or_show(plot.fig, "dotplot_", show=show, save=save)
    return None if shown else plot.get_axes()
