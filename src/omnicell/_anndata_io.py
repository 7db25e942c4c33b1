"""The AnnData in/out of every tool: which object to work on, and what to return.

A tool starts with :func:`resolve_modality` (an AnnData, or a MuData's modality ``mod``), checks
everything, then, with ``copy=True``, switches to :func:`copy_target` before its first write; it
ends with :func:`finish`, which updates the MuData and returns the copy or None (scanpy's
convention).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anndata import AnnData

from ._validate import resolve_modality, update_mudata

if TYPE_CHECKING:
    from mudata import MuData

__all__ = ["copy_target", "finish", "resolve_modality", "update_mudata"]


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
