"""``oc.pl.mapping``: confidence, label sets and unknown calls of ``oc.tl.map_query``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from omnicell.pl._utils import finish_figure

__all__ = ["mapping"]

#: Colour of the cells called unknown on the label panel: grey, so the called labels stand out.
UNKNOWN_COLOUR = "#c8c8c8"


def mapping(
    adata: AnnData,
    *,
    key: str = "omnicell",
    basis: str | None = None,
    cmap: str = "viridis",
    panel_size: float = 4.0,
    size: float | None = None,
    return_fig: bool = False,
    show: bool | None = None,
    save: bool | str | None = None,
) -> dict[str, Axes] | None:
    """Show what :func:`omnicell.tl.map_query` called: confidence, labels with the unknown cells, set sizes.

    On an embedding (drawn by :func:`scanpy.pl.embedding`): each cell coloured by its calibrated
    confidence, and by its label with the cells called unknown in grey. Beside them: the number of
    cells per label-set size (0 is an empty set) and the confidence of the cells called and of those
    called unknown. The titles give the level ``1 - alpha``, the coverage on the calibration cells
    and, when the query's labels were given, the coverage reached on the query.

    Parameters
    ----------
    adata
        AnnData after :func:`omnicell.tl.map_query`.
    key
        The ``key_added`` of :func:`omnicell.tl.map_query`.
    basis
        Embedding for the cell panels (``obsm[basis]`` or ``obsm['X_' + basis]``, e.g. ``'umap'``);
        None uses ``'umap'`` when present, else draws only the summary panels.
    cmap
        Colour map of the confidence panel.
    panel_size
        Size in inches of one panel.
    size
        Point size of the embedding panels (scanpy's ``size``).
    return_fig
        Return the matplotlib Figure instead of the axes (and do not show it), as scanpy's plots do.
    show
        Show the figure; None follows ``sc.settings.autoshow``.
    save
        True or a file-name suffix: save to ``sc.settings.figdir`` as ``mapping{save}``, as scanpy
        does; a path with a folder is used as is.

    Returns
    -------
    With ``show=False``: a dict of Axes, ``'confidence'`` and ``'label'`` (with an embedding),
    ``'set_size'`` and ``'confidence_histogram'``; else None.
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    columns = {name: f"{key}_{name}" for name in ("label", "confidence", "label_set", "unknown")}
    missing = [column for column in columns.values() if column not in adata.obs]
    if missing:
        raise KeyError(
            f"No mapping results {missing} in adata.obs; run oc.tl.map_query(adata, reference, label_key, "
            f"key_added={key!r}) first, or pass key= its key_added."
        )
    if basis is None and ("X_umap" in adata.obsm or "umap" in adata.obsm):
        basis = "umap"
    if basis is not None and basis not in adata.obsm and f"X_{basis}" not in adata.obsm:
        raise KeyError(
            f"No embedding {basis!r} in adata.obsm ({list(adata.obsm)}); compute one, e.g. sc.tl.umap(adata), "
            "or pass basis=None for the summary panels only."
        )
    record = adata.uns.get("omnicell", {}).get("map_query", {})
    if str(record.get("key_added", key)) != key:
        record = adata.uns.get("omnicell", {}).get("by_key", {}).get("map_query", {}).get(key, {})
    unknown = adata.obs[columns["unknown"]].to_numpy(dtype=bool)
    confidence = adata.obs[columns["confidence"]].to_numpy(dtype=np.float64)
    set_sizes = np.array([0 if not s else str(s).count("|") + 1 for s in adata.obs[columns["label_set"]]])

    n_cells_panels = 2 if basis is not None else 0
    n_panels = n_cells_panels + 2
    figure, grid = plt.subplots(1, n_panels, figsize=(panel_size * 1.3 * n_panels, panel_size), squeeze=False)
    panels = list(grid.ravel())
    axes: dict[str, Axes] = {}
    if basis is not None:
        label = adata.obs[columns["label"]]
        categories = list(label.cat.categories) if isinstance(label.dtype, pd.CategoricalDtype) else sorted(set(label))
        colours = _palette([c for c in categories if c != "unknown"])
        palette = {**colours, "unknown": UNKNOWN_COLOUR}
        sc.pl.embedding(adata, basis=basis, color=columns["confidence"], ax=panels[0], show=False, color_map=cmap,
                        vmin=0.0, vmax=1.0, size=size, frameon=False, title="calibrated confidence")  # fmt: skip
        sc.pl.embedding(adata, basis=basis, color=columns["label"], ax=panels[1], show=False, palette=palette,
                        size=size, frameon=False, title=f"label ({int(unknown.sum())} unknown)")  # fmt: skip
        axes["confidence"], axes["label"] = panels[0], panels[1]
    bars = panels[n_cells_panels]
    counts = np.bincount(set_sizes, minlength=2)
    bars.bar(np.arange(len(counts)), counts, color="#4c72b0")
    bars.set_xticks(np.arange(len(counts)))
    bars.set_xlabel("labels in the set (0: empty)")
    bars.set_ylabel("cells")
    bars.set_title(_coverage_title(record, set_sizes))
    axes["set_size"] = bars
    histogram = panels[n_cells_panels + 1]
    edges = np.linspace(0.0, 1.0, 21)
    histogram.hist([confidence[~unknown], confidence[unknown]], bins=edges, stacked=True,
                   color=["#4c72b0", UNKNOWN_COLOUR], label=["called", "unknown"])  # fmt: skip
    histogram.set_xlabel("calibrated confidence")
    histogram.set_ylabel("cells")
    histogram.legend(frameon=False)
    histogram.set_title(f"{int((~unknown).sum())} called, {int(unknown.sum())} unknown")
    axes["confidence_histogram"] = histogram
    figure.tight_layout()
    return finish_figure(figure, "mapping", axes, show=show, save=save, return_fig=return_fig)


def _palette(categories: list[str]) -> dict[str, str]:
    import matplotlib as mpl
    from matplotlib.colors import to_hex

    colours = mpl.colormaps["tab20" if len(categories) > 10 else "tab10"].colors
    return {category: to_hex(colours[i % len(colours)]) for i, category in enumerate(categories)}


def _coverage_title(record: dict, set_sizes: np.ndarray) -> str:
    """Level, coverage on the calibration cells (and on the query's labels) and mean set size."""
    parts = []
    if "alpha" in record:
        parts.append(f"level {1 - float(record['alpha']):.2f}")
    if "coverage" in record:
        parts.append(f"coverage {float(record['coverage']):.3f} (reference)")
    if "query_coverage" in record:
        parts.append(f"{float(record['query_coverage']):.3f} (query)")
    parts.append(f"mean set size {set_sizes.mean():.2f}")
    return ", ".join(parts[:2]) + ("\n" + ", ".join(parts[2:]) if len(parts) > 2 else "")
