"""``oc.tl.embed_cells``: cell (and niche) embeddings from the model."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from typing import Literal

import numpy as np
import torch
from anndata import AnnData
from tqdm.auto import tqdm

from .. import _keys
from .._provenance import get_record, write_record
from .._settings import settings
from .._validate import check_adata, check_coordinates, get_matrix
from ..data import iter_token_batches
from ..model import pool_cells
from ..models import OmniCellModel, resolve_device, resolve_model

__all__ = ["embed_cells"]

logger = logging.getLogger("omnicell")

Precision = Literal["auto", "float32", "bfloat16", "float16"]


def embed_cells(
    adata: AnnData,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    projection: float | None = 0.9,
    key_added: str = _keys.EMBEDDING,
    store_window: bool = False,
    precision: Precision = "auto",
    copy: bool = False,
) -> AnnData | None:
    """Embed every cell with the model, as the released OmniCell code does.

    Each cell is read with the genes chosen by :func:`omnicell.pp.tokenize` (run here with its
    defaults if it was not run). The last-layer states of the cell's expressed genes are averaged,
    L2-normalised and projected onto the leading eigenvectors of the model's symmetric output
    matrix. In spatial mode every sequence is a cell followed by its neighbours, and each cell of
    that window is pooled separately. Results do not depend on ``batch_size``.

    Parameters
    ----------
    adata
        Cells x genes, as given to :func:`omnicell.pp.tokenize`.
    model
        Model object, registry name or folder; None uses ``oc.settings.default_model``.
        It must have the vocabulary ``tokenize`` used.
    batch_size
        Cells (focal cells in spatial mode) per forward pass; None uses ``oc.settings.batch_size``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``; None uses ``oc.settings.device``.
    projection
        Share ``tau`` of the output matrix's spectral energy to keep (0.9 in the paper: 316
        dimensions for the released weights); None stores the normalised pooled state unprojected.
    key_added
        ``obsm`` key of the embedding; spatial mode adds ``key_added + '_niche'``.
    store_window
        Spatial mode: also store the (n_obs, 1 + k, m) embeddings of every window.
    precision
        ``"auto"`` runs bfloat16 autocast on CUDA and float32 elsewhere; pooling and projection
        are always float32.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.obsm[key_added]``
        (n_obs, m) float32 cell embeddings (the focal cell's in spatial mode). A cell with no
        expressed gene among the selected ones gets a zero vector, with a warning.
    ``adata.obsm[key_added + '_niche']``
        (spatial) Mean embedding of each cell's window (the cell and its neighbours).
    ``adata.obsm[key_added + '_window']``
        (spatial, ``store_window=True``) (n_obs, 1 + k, m) embeddings of every window, focal first.
    ``adata.uns['omnicell']['embed_cells']``
        Parameters, ``n_components``, model name and checkpoint sha256.
    """
    check_adata(adata, "embed_cells")
    batch_size = int(batch_size if batch_size is not None else settings.batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
    if projection is not None and not 0.0 < float(projection) <= 1.0:
        raise ValueError(f"projection must lie in (0, 1] or be None, got {projection!r}.")
    if precision not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"precision must be 'auto', 'float32', 'bfloat16' or 'float16', got {precision!r}.")
    loaded = resolve_model(model)
    # With copy=True all work, the automatic tokenisation included, happens on the copy.
    adata = adata.copy() if copy else adata
    record = get_record(adata, "tokenize")
    if record is None:
        from ..pp import tokenize

        tokenize(adata, loaded)
        record = get_record(adata, "tokenize")
    if record["vocab_sha256"] != loaded.vocab.sha256():
        raise ValueError(
            f"adata was tokenised with model {record['model']!r}, whose vocabulary differs from that of "
            f"{loaded.name!r}. Run oc.pp.tokenize(adata, model) with the model you embed with."
        )
    columns = adata.var_names.get_indexer(np.asarray(record["genes"], dtype=str))
    if (columns < 0).any():
        raise ValueError(
            "Some genes chosen by tokenize are no longer in adata.var_names (subset or renamed since?). "
            "Run oc.pp.tokenize again."
        )
    spatial = bool(record["spatial"])
    neighbors = coordinates = None
    if spatial:
        if _keys.OBSM_NEIGHBORS not in adata.obsm:
            raise KeyError(f"Spatial tokenisation left no obsm[{_keys.OBSM_NEIGHBORS!r}]; run oc.pp.tokenize again.")
        neighbors = np.asarray(adata.obsm[_keys.OBSM_NEIGHBORS], dtype=np.int64)
        if neighbors.shape[0] != adata.n_obs or neighbors.min() < 0 or neighbors.max() >= adata.n_obs:
            raise ValueError(f"obsm[{_keys.OBSM_NEIGHBORS!r}] does not fit the cells (subset since?); run oc.pp.tokenize again.")
        coordinates = check_coordinates(adata, str(record["spatial_key"]))
    layer = record.get("layer")
    matrix = get_matrix(adata, layer)
    torch_device = resolve_device(device)

    started = time.perf_counter()
    window, n_empty = _embed(
        loaded,
        matrix,
        columns=columns,
        gene_tokens=np.asarray(record["token_ids"], dtype=np.int64),
        neighbors=neighbors,
        coordinates=coordinates,
        batch_size=batch_size,
        device=torch_device,
        precision=precision,
        projection=projection,
        where=f"adata.layers[{layer!r}]" if layer else "adata.X",
    )
    if n_empty:
        warnings.warn(
            f"{n_empty} cells express none of the {len(columns)} selected genes; their embeddings are zero "
            "vectors (as in the released code). Consider filtering them (sc.pp.filter_cells).",
            UserWarning,
            stacklevel=2,
        )

    adata.obsm[key_added] = window[:, 0]
    for suffix in (_keys.NICHE_SUFFIX, _keys.WINDOW_SUFFIX):
        adata.obsm.pop(key_added + suffix, None)
    if spatial:
        adata.obsm[key_added + _keys.NICHE_SUFFIX] = window.mean(1)
        if store_window:
            adata.obsm[key_added + _keys.WINDOW_SUFFIX] = window
    write_record(
        adata,
        "embed_cells",
        {
            "key_added": key_added,
            "projection": projection,
            "n_components": window.shape[-1],
            "spatial": spatial,
            "store_window": store_window,
            "batch_size": batch_size,
            "device": str(torch_device),
            "precision": _autocast_dtype_name(precision, torch_device),
            "attention_backend": loaded.network.attention_backend,
            "n_empty_cells": n_empty,
            **loaded.identity(),
        },
    )
    logger.info(
        "embed_cells: %d cells in %.1fs; added .obsm[%r]%s",
        adata.n_obs, time.perf_counter() - started, key_added, " and niche embeddings" if spatial else "",
    )  # fmt: skip
    return adata if copy else None


def _autocast_dtype_name(precision: Precision, device: torch.device) -> str:
    if precision == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return precision


def _embed(
    loaded: OmniCellModel,
    matrix,
    *,
    columns: np.ndarray,
    gene_tokens: np.ndarray,
    neighbors: np.ndarray | None,
    coordinates: np.ndarray | None,
    batch_size: int,
    device: torch.device,
    precision: Precision,
    projection: float | None,
    where: str,
) -> tuple[np.ndarray, int]:
    """(n_obs, 1 + k, m) embeddings of every window and the number of cells with no expressed gene."""
    network = loaded.network
    network.to(device).eval()
    basis = loaded.spectral_basis(float(projection)).to(device) if projection is not None else None
    autocast_name = _autocast_dtype_name(precision, device)
    autocast = (
        torch.autocast(device.type, dtype=getattr(torch, autocast_name))
        if autocast_name != "float32"
        else contextlib.nullcontext()
    )
    n_obs = matrix.shape[0]
    width = basis.shape[1] if basis is not None else network.config.d_model
    n_blocks = 1 if neighbors is None else 1 + neighbors.shape[1]
    window = np.empty((n_obs, n_blocks, width), dtype=np.float32)
    n_empty = 0
    batches = iter_token_batches(
        matrix,
        columns,
        gene_tokens,
        rna_start=loaded.vocab.rna_start,
        rna_end=loaded.vocab.rna_end,
        batch_size=batch_size,
        neighbors=neighbors,
        coordinates=coordinates,
        where=where,
    )
    progress = tqdm(total=n_obs, unit="cell", desc="embed_cells", disable=not settings.progress_bar)
    with torch.inference_mode(), progress:
        for focal, batch in batches:
            tensors = batch.to_torch(device)
            with autocast:
                output = network(tensors["tokens"], tensors["values"], tensors["positions"])
            pooled = pool_cells(output.hidden, tensors["cell_index"], tensors["expressed"], batch.n_blocks)
            if basis is not None:
                pooled = pooled @ basis
            window[focal] = pooled.cpu().numpy()
            focal_block = batch.cell_index == 0
            n_empty += int((~(batch.expressed & focal_block).any(1)).sum())
            progress.update(len(focal))
    return window, n_empty
