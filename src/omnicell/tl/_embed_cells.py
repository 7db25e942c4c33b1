"""``oc.tl.embed_cells``: cell (and niche) embeddings from the model."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality, update_mudata
from omnicell._core.checks import check_key_added, check_number
from omnicell._core.docs import doc_params
from omnicell._engine.embed import embed_windows, warn_empty_cells, write_embedding
from omnicell._engine.plan import Precision, plan_tokenized
from omnicell.models import OmniCellModel

__all__ = ["embed_cells"]

logger = logging.getLogger("omnicell")


@doc_params
def embed_cells(
    adata: AnnData | MuData | str | os.PathLike,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    projection: float | None = 0.9,
    key_added: str = keys.EMBEDDING,
    store_window: bool = False,
    precision: Precision = "auto",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Embed every cell with the model, as the released OmniCell code does.

    Each cell is read with the genes chosen by :func:`omnicell.pp.tokenize` (run here with its
    defaults if it was not run). The last-layer states of the cell's expressed genes are averaged,
    L2-normalised and projected onto the leading eigenvectors of the model's symmetric output
    matrix. In spatial mode every sequence is a cell followed by its neighbours, and each cell of
    that window is pooled separately. Results do not depend on ``batch_size``.

    Parameters
    ----------
    adata
        Cells x genes, as given to :func:`omnicell.pp.tokenize`. Or a TileDB-SOMA experiment (a
        ``tiledbsoma.Experiment``, its URI, ``census://...``), read lazily with the defaults of
        :func:`omnicell.data.read_soma` and returned embedded (use ``read_soma`` first to choose a
        measurement, layer, cell filter or obs columns).
    {doc_model}
    {doc_batch_size}
    {doc_device}
    projection
        Share ``tau`` of the output matrix's spectral energy to keep (0.9 in the paper: 316
        dimensions for the released weights); None stores the normalised pooled state unprojected.
    key_added
        ``obsm`` key of the embedding; spatial mode adds ``key_added + '_niche'``.
    store_window
        Spatial mode: also store the (n_obs, 1 + k, m) embeddings of every window.
    {doc_precision}
    mod
        Modality of a MuData to embed; results go to that modality, and the cell embedding is
        mirrored to ``mdata.obsm[key_added]`` (NaN for cells absent from the modality).
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True`` (the embedded cells for a SOMA experiment). Writes

    ``adata.obsm[key_added]``
        (n_obs, m) float32 cell embeddings (the focal cell's in spatial mode). A cell with no
        expressed gene among the selected ones gets a zero vector, with a warning.
    ``adata.obsm[key_added + '_niche']``
        (spatial) Mean embedding of each cell's window (the cell and its available neighbours).
    ``adata.obsm[key_added + '_window']``
        (spatial, ``store_window=True``) (n_obs, 1 + k, m) embeddings of every window, focal
        first; NaN rows for missing neighbours.
    ``adata.uns['omnicell']['embed_cells']``
        Parameters, ``n_components``, model name and checkpoint sha256.
    """
    if isinstance(adata, (str, os.PathLike)) or type(adata).__name__ == "Experiment":
        # A SOMA experiment: nothing to modify in place; embed its lazily read cells and return them.
        from omnicell.data import read_soma

        cells = read_soma(adata)
        embed_cells(
            cells, model, batch_size=batch_size, device=device, projection=projection, key_added=key_added,
            store_window=store_window, precision=precision,
        )  # fmt: skip
        return cells
    container, adata = resolve_modality(adata, mod, "embed_cells")
    projection = check_number(projection, "projection", allow_none=True)
    if projection is not None and not 0.0 < projection <= 1.0:
        raise ValueError(f"projection must lie in (0, 1] or be None, got {projection!r}.")
    check_key_added(key_added)
    # With copy=True all work, the automatic tokenisation included, happens on the copy.
    if copy:
        container, adata = copy_target(container, adata, mod)
    plan = plan_tokenized(adata, model, batch_size=batch_size, device=device, precision=precision)
    started = time.perf_counter()
    window, n_empty = embed_windows(plan, projection)
    warn_empty_cells(n_empty, len(plan.columns), stacklevel=3)

    write_embedding(
        adata, window, plan, key_added=key_added, projection=projection, store_window=store_window, n_empty=n_empty
    )
    logger.info(
        "embed_cells: %d cells in %.1fs; added .obsm[%r]%s",
        adata.n_obs, time.perf_counter() - started, key_added, " and niche embeddings" if plan.spatial else "",
    )  # fmt: skip
    if container is not None:
        _mirror_to_mudata(container, mod, key_added, window[:, 0])
    return finish(container, adata, copy=copy)


def _mirror_to_mudata(container: MuData, mod: str, key: str, embedding: np.ndarray) -> None:
    """Copy a modality's cell embedding to ``mdata.obsm[key]``, aligned to the MuData's cells."""
    update_mudata(container)
    rows = container.obs_names.get_indexer(container.mod[mod].obs_names)
    mirrored = np.full((container.n_obs, embedding.shape[1]), np.nan, dtype=np.float32)
    mirrored[rows] = embedding
    container.obsm[key] = mirrored
