"""Cell embeddings from a planned pass: pooled, projected, streamed batch by batch, written to AnnData.

The in-memory tool (:func:`omnicell.tl.embed_cells`), the streamed file embedding and ``torchrun``
(``omnicell embed``) and ``omnicell embed --shard`` all embed through :func:`embedding_batches`
over a share of the cells (:func:`omnicell._engine.split.shard_slice`): batches follow the full
pass's grid, so a cell's embedding is the same whichever way the work is split.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from anndata import AnnData

from omnicell._core import keys
from omnicell._core.provenance import write_record
from omnicell._engine.plan import InferencePlan
from omnicell.nn import pool_cells

__all__ = [
    "embed_windows",
    "embedding_batches",
    "embedding_record",
    "embedding_width",
    "warn_empty_cells",
    "write_embedding",
]


def embed_windows(plan: InferencePlan, projection: float | None, cells: slice | None = None) -> tuple[np.ndarray, int]:
    """(n, 1 + k, m) embeddings of every window of ``cells`` (default all) and the number of empty cells.

    Cells with no expressed gene are counted. A shard (``cells`` a range) gets the same values as in a full pass.
    """
    first, stop, _ = (cells or slice(None)).indices(plan.n_obs)
    window = np.empty((max(stop - first, 0), plan.n_blocks, embedding_width(plan, projection)), dtype=np.float32)
    n_empty = 0
    for rows, block, empty in embedding_batches(plan, projection, cells=slice(first, stop)):
        window[rows - first] = block
        n_empty += empty
    return window, n_empty


def warn_empty_cells(n_empty: int, n_selected: int, *, stacklevel: int = 2) -> None:
    """Warn that ``n_empty`` cells express none of the selected genes (zero embeddings)."""
    if n_empty:
        warnings.warn(
            f"{n_empty} cells express none of the {n_selected} selected genes; their embeddings are zero "
            "vectors (as in the released code). Consider filtering them (sc.pp.filter_cells).",
            UserWarning,
            stacklevel=stacklevel,
        )


def embedding_width(plan: InferencePlan, projection: float | None) -> int:
    """Dimensions of the embedding: the projection's components, or ``d_model`` unprojected."""
    if projection is None:
        return plan.model.config.d_model
    return int(plan.model.spectral_basis(float(projection)).shape[1])


def embedding_batches(
    plan: InferencePlan, projection: float | None, *, cells: slice | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Per batch: its cells within ``cells``, their (b, 1 + k, m) window embeddings, how many express no gene.

    Streams, so a caller can write each batch out and keep memory independent of the number of
    cells; batches follow the full pass's grid (a shard's values equal the full pass's). Missing
    neighbours are NaN rows.
    """
    first, stop, _ = (cells or slice(None)).indices(plan.n_obs)
    basis = plan.model.spectral_basis(float(projection)).to(plan.device) if projection is not None else None
    for focal, batch, tensors, output in plan.batches(description="embed_cells", cells=slice(first, stop)):
        pooled = pool_cells(output.hidden, tensors["cell_index"], tensors["expressed"], batch.n_blocks)
        keep = (focal >= first) & (focal < stop)  # a shard's edge batches reach beyond it
        block = (pooled @ basis if basis is not None else pooled).cpu().numpy()[keep].astype(np.float32, copy=False)
        focal = focal[keep]
        if plan.neighbors is not None:
            cell, slot = np.nonzero(plan.neighbors[focal] < 0)  # missing neighbours
            block[cell, 1 + slot] = np.nan
        yield focal, block, int((~(batch.expressed & (batch.cell_index == 0)).any(1))[keep].sum())


def embedding_record(
    plan: InferencePlan,
    *,
    key_added: str,
    projection: float | None,
    n_components: int,
    store_window: bool,
    n_empty: int,
) -> dict:
    """The ``uns['omnicell']['embed_cells']`` record."""
    return {
        "key_added": key_added,
        "projection": projection,
        "n_components": n_components,
        "spatial": plan.spatial,
        "store_window": store_window,
        "batch_size": plan.batch_size,
        "device": str(plan.device),
        "precision": plan.precision,
        "attention_backend": plan.model.network.attention_backend,
        "n_empty_cells": n_empty,
        **plan.model.identity(),
    }


def write_embedding(
    adata: AnnData,
    window: np.ndarray,
    plan: InferencePlan,
    *,
    key_added: str,
    projection: float | None,
    store_window: bool,
    n_empty: int,
) -> None:
    """Write the embeddings of ``window`` (one row per cell of ``adata``) and the provenance record.

    Shared by :func:`embed_cells` and the shards of ``omnicell embed --shard``, so both write the same slots.
    """
    adata.obsm[key_added] = window[:, 0]
    for suffix in (keys.NICHE_SUFFIX, keys.WINDOW_SUFFIX):
        adata.obsm.pop(key_added + suffix, None)
    if plan.spatial:
        adata.obsm[key_added + keys.NICHE_SUFFIX] = np.nanmean(window, axis=1)
        if store_window:
            adata.obsm[key_added + keys.WINDOW_SUFFIX] = window
    record = embedding_record(
        plan, key_added=key_added, projection=projection, n_components=window.shape[-1], store_window=store_window,
        n_empty=n_empty,
    )  # fmt: skip
    write_record(adata, "embed_cells", record)
