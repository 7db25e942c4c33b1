"""``oc.pl.benchmark``: the scib-metrics result table of ``oc.tl.benchmark``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from omnicell._core.provenance import get_record
from omnicell.pl._utils import finish_figure

__all__ = ["benchmark"]

AGGREGATE = "Aggregate score"


def benchmark_table(adata: AnnData) -> tuple[pd.DataFrame, list[str]]:
    """The stored result table and the type of each column, with a clear error when absent."""
    record = get_record(adata, "benchmark")
    if record is None or "results" not in record:
        raise KeyError(
            "No benchmark results in adata.uns['omnicell']['benchmark']; run oc.tl.benchmark(adata, ...) first."
        )
    results = pd.DataFrame(record["results"]).astype(np.float64)
    types = [str(t) for t in np.asarray(record["metric_types"])]
    if len(types) != results.shape[1]:
        raise ValueError("The stored benchmark results and metric types do not match; run oc.tl.benchmark again.")
    return results, types


def benchmark(
    adata: AnnData,
    *,
    min_max_scale: bool = False,
    sort_by: str | None = None,
    cmap: str = "PRGn",
    bar_cmap: str = "YlGnBu",
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    return_fig: bool = False,
    show: bool | None = None,
    save: bool | str | None = None,
) -> Axes | None:
    """Table of the scib-metrics scores of :func:`omnicell.tl.benchmark`, in scib-metrics' layout.

    One row per embedding (best first), one column per metric grouped by type (circles coloured
    by how the embedding ranks on that metric, with the value written in), then the aggregate
    scores as bars.

    Parameters
    ----------
    adata
        AnnData after :func:`omnicell.tl.benchmark`.
    min_max_scale
        Scale each metric to [0, 1] across the embeddings before showing it (aggregate scores
        are recomputed from the scaled metrics, as scib-metrics does).
    sort_by
        Column to order the rows by (descending); default ``'Total'`` or the only aggregate.
    cmap
        Colour map of the metric circles.
    bar_cmap
        Colour map of the aggregate bars.
    figsize
        Figure size when a new figure is made.
    title
        Axes title.
    ax
        Axes to draw into.
    return_fig
        Return the matplotlib Figure instead of the axes (and do not show it), as scanpy's plots do.
    show
        Show the figure; None follows ``sc.settings.autoshow``.
    save
        True or a file-name suffix: save to ``sc.settings.figdir`` as ``benchmark{save}``, as
        scanpy does; a path with a folder is used as is.

    Returns
    -------
    The Axes with ``show=False``, else None.
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    results, types = benchmark_table(adata)
    metrics = [c for c, t in zip(results.columns, types, strict=True) if t != AGGREGATE]
    aggregates = [c for c, t in zip(results.columns, types, strict=True) if t == AGGREGATE]
    kind = dict(zip(results.columns, types, strict=True))
    if min_max_scale:
        results = _min_max_scaled(results, metrics, aggregates, kind)
    if sort_by is None:
        sort_by = "Total" if "Total" in results.columns else (aggregates[0] if aggregates else results.columns[0])
    if sort_by not in results.columns:
        raise KeyError(f"sort_by {sort_by!r} is not a column of the benchmark; choose from {list(results.columns)}.")
    results = results.sort_values(sort_by, ascending=False, kind="stable")
    metrics = sorted(metrics, key=lambda c: [kind[m] for m in metrics].index(kind[c]))  # group by type, stable
    columns = metrics + aggregates
    n_rows, n_cols = results.shape[0], len(columns)

    if ax is None:
        label_width = 0.09 * max(len(str(i)) for i in results.index)
        _, ax = plt.subplots(figsize=figsize or (1.5 + label_width + 1.05 * n_cols, 1.6 + 0.55 * n_rows))
    colour_map, bar_colours = mpl.colormaps[cmap], mpl.colormaps[bar_cmap]
    for j, column in enumerate(columns):
        values = results[column].to_numpy(dtype=np.float64)
        if column in aggregates:
            for i, value in enumerate(values):
                width = 0.9 * float(np.clip(value, 0.0, 1.0)) if np.isfinite(value) else 0.0
                ax.barh(i, width, left=j - 0.45, height=0.6, color=bar_colours(0.25 + 0.7 * np.clip(value, 0, 1)))
                ax.text(j - 0.4, i, _format(value), ha="left", va="center", fontsize=9)
        else:
            finite = values[np.isfinite(values)]
            low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
            shade = (values - low) / (high - low) if high > low else np.full_like(values, 0.5)
            for i, value in enumerate(values):
                colour = colour_map(0.15 + 0.7 * shade[i]) if np.isfinite(value) else "lightgrey"
                ax.scatter(j, i, s=900, color=colour, edgecolors="none", zorder=2)
                luminance = np.dot(mpl.colors.to_rgb(colour), (0.299, 0.587, 0.114))
                ax.text(j, i, _format(value), ha="center", va="center", fontsize=8, zorder=3,
                        color="white" if luminance < 0.5 else "black")  # fmt: skip
    ax.set_xlim(-0.6, n_cols - 0.4)
    ax.set_ylim(n_rows - 0.5, -1.4)
    ax.set_yticks(np.arange(n_rows), [str(i) for i in results.index], fontweight="bold")
    ax.set_xticks(np.arange(n_cols), [c.replace(" ", "\n", 1) for c in columns], fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    start = 0
    for group in dict.fromkeys(kind[c] for c in columns):
        width = sum(kind[c] == group for c in columns)
        ax.text(start + (width - 1) / 2, -1.15, group, ha="center", va="center", fontsize=9, fontweight="bold")
        if start:
            ax.axvline(start - 0.5, color="black", linewidth=0.8)
        start += width
    for i in range(n_rows - 1):
        ax.axhline(i + 0.5, color="grey", linewidth=0.5, linestyle=(0, (1, 5)))
    if title is not None:
        ax.set_title(title, pad=40)
    return finish_figure(ax.figure, "benchmark", ax, show=show, save=save, return_fig=return_fig)


def _format(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "NA"


def _min_max_scaled(results: pd.DataFrame, metrics: list[str], aggregates: list[str], kind: dict) -> pd.DataFrame:
    scaled = results.copy()
    for column in metrics:
        values = results[column]
        span = values.max() - values.min()
        scaled[column] = (values - values.min()) / span if span > 0 else 0.0
    groups = {kind[c] for c in metrics}
    for group in groups:
        if group in scaled.columns:
            scaled[group] = scaled[[c for c in metrics if kind[c] == group]].mean(axis=1)
    if "Total" in aggregates and {"Bio conservation", "Batch correction"} <= set(scaled.columns):
        scaled["Total"] = 0.6 * scaled["Bio conservation"] + 0.4 * scaled["Batch correction"]
    return scaled
