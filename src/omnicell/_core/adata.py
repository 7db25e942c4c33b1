"""AnnData and MuData access for every tool: which object to work on, which matrix to read, what to return.

A tool starts with :func:`resolve_modality` (an AnnData, or a MuData's modality ``mod``), checks
everything, then, with ``copy=True``, switches to :func:`copy_target` before its first write; it
ends with :func:`finish`, which updates the MuData and returns the copy or None (scanpy's
convention).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
from anndata import AnnData

from omnicell._core.checks import check_adata, check_dtype

if TYPE_CHECKING:
    from mudata import MuData

__all__ = ["copy_target", "expression_source", "finish", "get_matrix", "resolve_modality", "update_mudata"]


def copy_target(container: MuData | None, adata: AnnData, mod: str) -> tuple[MuData | None, AnnData]:
    """``(container, adata)`` of a copy to write into: the whole MuData is copied when there is one."""
    if container is not None:
        container = container.copy()
        return container, container.mod[mod]
    return None, adata.copy()


def finish(container: MuData | None, adata: AnnData, *, copy: bool) -> AnnData | MuData | None:
    """What a tool returns after writing: the (copied) AnnData or MuData with ``copy=True``, else None.

    A MuData is updated first, so its global ``obs``/``var`` see the modality's new columns.
    """
    update_mudata(container)
    if not copy:
        return None
    return container if container is not None else adata


def get_matrix(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error when absent."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer= naming the layer with expression values.")
        return adata.X
    if not isinstance(layer, str) or layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} not found (layer=): available layers: {list(adata.layers) or 'none'}. "
            "Pass one of those, or layer=None for adata.X."
        )
    return adata.layers[layer]


def resolve_modality(data: object, mod: str, function: str, *, genes: bool = True) -> tuple[MuData | None, AnnData]:
    """``(MuData or None, the AnnData to work on)`` for an AnnData or a MuData's modality ``mod``.

    ``genes=False`` accepts an AnnData without genes (a tool that reads only embeddings).
    """
    container = None
    if type(data).__name__ == "MuData":
        if mod not in data.mod:
            raise KeyError(f"{function}: the MuData has no modality {mod!r}; modalities: {list(data.mod)}. Pass mod=.")
        container, data = data, data.mod[mod]
    return container, check_adata(data, function, genes=genes)


def update_mudata(container: MuData | None) -> None:
    """``mdata.update()`` after a modality changed, without mudata's notice about its future default."""
    if container is None:
        return
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="mudata")
        container.update()


def expression_source(adata: AnnData, *, layer: str | None, use_raw: bool) -> tuple[object, pd.DataFrame, str]:
    """The matrix to read, its var table and how to name it in messages."""
    if use_raw:
        if adata.raw is None:
            raise ValueError("use_raw=True but adata.raw is empty; use layer= or .X instead.")
        if layer is not None:
            raise ValueError("Pass either use_raw=True or layer=, not both.")
        check_dtype(adata.raw.X, "adata.raw.X")
        return adata.raw.X, adata.raw.var, "adata.raw.X"
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    matrix = get_matrix(adata, layer)
    check_dtype(matrix, where)
    return matrix, adata.var, where
