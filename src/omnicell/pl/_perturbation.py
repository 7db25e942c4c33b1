"""``oc.pl.perturbation``: the per-gene effects of an in-silico perturbation, or its shift in space."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from omnicell._core import keys
from omnicell._engine.perturb import ranked_effects
from omnicell.pl._utils import finish_figure

__all__ = ["perturbation"]

UP, DOWN = "#b2182b", "#2166ac"


def perturbation(
    adata: AnnData,
    *,
    key: str = keys.PERTURB,
    groups: Sequence[str] | None = None,
    n_genes: int = 10,
    kind: Literal["effects", "spatial"] = "effects",
    include_perturbed: bool = False,
    spatial_key: str = keys.SPATIAL,
    ncols: int = 4,
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    return_fig: bool = False,
    show: bool | None = None,
    save: bool | str | None = None,
    **kwds,
) -> list[Axes] | Axes | None:
    """Show the result of :func:`omnicell.tl.perturb_genes` or :func:`omnicell.tl.perturb_niche`.

    ``kind="effects"``: one panel per group, the ``n_genes`` genes the perturbation raises most and the
    ``n_genes`` it lowers most against the null (effect minus null mean), as horizontal bars of their effect
    (mean change of the decoded value, with its standard error) with the null mean as a black tick and the
    q-value in the gene's label. ``kind="spatial"`` (spatial data): the cells in space coloured by their
    embedding shift and, after :func:`omnicell.tl.perturb_niche` with spatial domains, a second panel of
    the cells whose nearest domain changes (``before -> after``), drawn by :func:`squidpy.pl.spatial_scatter`.

    Parameters
    ----------
    adata
        AnnData after :func:`omnicell.tl.perturb_genes` or :func:`omnicell.tl.perturb_niche`.
    key
        ``key_added`` of the perturbation: ``"omnicell_perturb"`` (the default of
        :func:`omnicell.tl.perturb_genes`) or ``"omnicell_niche_perturb"`` (that of
        :func:`omnicell.tl.perturb_niche`).
    groups
        Groups to show (``effects``; default all).
    n_genes
        Genes shown per group and direction, as markers of the perturbation: the ``n_genes`` most raised
        and the ``n_genes`` most lowered.
    kind
        ``"effects"`` or ``"spatial"``.
    include_perturbed
        Also rank the perturbed genes themselves (their change is the intervention).
    spatial_key
        ``obsm`` key of the coordinates (``spatial``).
    ncols
        Panels per row.
    figsize
        Figure size.
    ax
        Axes to draw one group's effects into (``effects`` with a single group).
    return_fig
        Return the matplotlib Figure instead of the axes (and do not show it), as scanpy's plots do.
    show
        Show the figure; None follows ``sc.settings.autoshow``.
    save
        True or a file-name suffix: save to ``sc.settings.figdir`` as ``perturbation{save}``, as scanpy
        does; a path with a folder is used as is.
    **kwds
        Passed to :func:`squidpy.pl.spatial_scatter` (``spatial``).

    Returns
    -------
    With ``show=False``: the list of panel Axes (one Axes when ``ax`` is given); else None.
    """
    if kind not in ("effects", "spatial"):
        raise ValueError(f"kind must be 'effects' or 'spatial', got {kind!r}.")
    if isinstance(n_genes, bool) or not isinstance(n_genes, int | np.integer) or n_genes < 1:
        raise ValueError(f"n_genes must be a positive integer, got {n_genes!r}.")
    table = ranked_effects(adata, groups, key=key, include_perturbed=include_perturbed)
    if kind == "spatial":
        return _spatial(adata, key, spatial_key=spatial_key, figsize=figsize, show=show, save=save,
                        return_fig=return_fig, **kwds)  # fmt: skip
    return _effects(table, int(n_genes), ncols=ncols, figsize=figsize, ax=ax, show=show, save=save,
                    return_fig=return_fig)  # fmt: skip


def top_changes(table: pd.DataFrame, n_genes: int) -> pd.DataFrame:
    """One group's genes raised most and lowered most against the null, ordered from most raised to most lowered."""
    excess = table["effect"] - table["null_mean"]
    up = table[excess > 0].assign(_excess=excess).nlargest(n_genes, "_excess")
    down = table[excess < 0].assign(_excess=excess).nsmallest(n_genes, "_excess")
    return pd.concat([up, down.iloc[::-1]]).drop(columns="_excess")


def _effects(table: pd.DataFrame, n_genes: int, *, ncols, figsize, ax, show, save, return_fig):
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(table["group"].astype(str)))
    if ax is not None and len(groups) != 1:
        raise ValueError(f"ax= draws one group; the table has {len(groups)} groups: pass groups=[one of {groups}].")
    if ax is not None:
        figure, axes = ax.figure, [ax]
    else:
        ncols = max(1, min(int(ncols), len(groups)))
        nrows = int(np.ceil(len(groups) / ncols))
        height = 0.25 * 2 * n_genes + 1.2
        figure, grid = plt.subplots(nrows, ncols, figsize=figsize or (4.2 * ncols, height * nrows), squeeze=False,
                                    layout="constrained")  # fmt: skip
        axes = list(grid.ravel())
        for panel in axes[len(groups) :]:
            panel.set_visible(False)
        axes = axes[: len(groups)]
    for panel, group in zip(axes, groups, strict=True):
        shown = top_changes(table[table["group"].astype(str) == group], n_genes)
        positions = np.arange(len(shown))[::-1]
        effect = shown["effect"].to_numpy(dtype=np.float64)
        colours = [UP if e > n else DOWN for e, n in zip(effect, shown["null_mean"], strict=True)]
        panel.barh(positions, effect, xerr=shown["se"].to_numpy(dtype=np.float64), color=colours, height=0.7)
        panel.scatter(shown["null_mean"], positions, marker="|", color="black", s=80, zorder=3, label="null mean")
        labels = [
            f"{gene} (q={q:.2g})" if np.isfinite(q) else f"{gene} (perturbed)"
            for gene, q in zip(shown["gene"], shown["qval"], strict=True)
        ]
        panel.set_yticks(positions, labels, fontsize="small")
        panel.axvline(0.0, color="grey", linewidth=0.8)
        panel.set_title(group)
        panel.set_xlabel("change of decoded value")
    return finish_figure(figure, "perturbation", axes[0] if ax is not None else axes, show=show, save=save,
                         return_fig=return_fig)  # fmt: skip


def _spatial(adata: AnnData, key: str, *, spatial_key, figsize, show, save, return_fig, **kwds):
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=SyntaxWarning)  # docrep, on squidpy's import
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import squidpy as sq

    if spatial_key not in adata.obsm:
        raise KeyError(f"No coordinates in adata.obsm[{spatial_key!r}]; kind='spatial' needs spatial data.")
    shift = key + keys.SHIFT_SUFFIX
    if shift not in adata.obs:
        raise KeyError(f"No adata.obs[{shift!r}]; run oc.tl.perturb_genes or oc.tl.perturb_niche first.")
    holder = AnnData(obs=pd.DataFrame({"shift": adata.obs[shift].to_numpy()}, index=adata.obs_names))
    holder.obsm[spatial_key] = np.asarray(adata.obsm[spatial_key])[:, :2]
    columns = ["shift"]
    before, after = key + "_domain_before", key + "_domain_after"
    if before in adata.obs and after in adata.obs:
        was, now = adata.obs[before].astype(object).to_numpy(), adata.obs[after].astype(object).to_numpy()
        selected = pd.notna(was)
        change = np.where(was == now, "unchanged", np.char.add(np.char.add(was.astype(str), " -> "), now.astype(str)))
        holder.obs["domain change"] = pd.Categorical(np.where(selected, change, None))
        columns.append("domain change")
    kwds.setdefault("library_id", ["perturbation"])  # one section, no image
    figure, grid = plt.subplots(1, len(columns), figsize=figsize or (4.6 * len(columns), 4.0), squeeze=False,
                                layout="constrained")  # fmt: skip
    axes = list(grid.ravel())
    for panel, column in zip(axes, columns, strict=True):
        sq.pl.spatial_scatter(holder, shape=None, color=column, spatial_key=spatial_key, ax=panel, title=column,
                              **kwds)  # fmt: skip
    return finish_figure(figure, "perturbation", axes, show=show, save=save, return_fig=return_fig)
