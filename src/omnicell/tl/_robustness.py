"""``oc.tl.dropout_robustness``: the paper's noise experiment (progressive dropout, re-embed, Leiden NMI)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, expression_source, finish, resolve_modality
from omnicell._core.checks import resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell._core.tokenize_record import TokenizeRecord
from omnicell._engine.plan import Precision, ensure_tokenized
from omnicell.data import read_csr
from omnicell.models import OmniCellModel
from omnicell.tl._cell_tasks import agreement, get_labels, knn_graph, leiden

__all__ = ["dropout_robustness", "tokenised_matrix"]

logger = logging.getLogger("omnicell")

DEFAULT_RATES = tuple(round(0.05 * i, 2) for i in range(20))
"""0.0, 0.05, ..., 0.95: the paper's grid without 1.0 (where every cell is empty)."""

_CHUNK_ROWS = 4096


def tokenised_matrix(adata: AnnData) -> tuple[sp.csr_matrix, TokenizeRecord]:
    """The cells x tokenised genes matrix that :func:`omnicell.pp.tokenize` recorded, and the record."""
    record = TokenizeRecord.read(adata)
    matrix, var, _ = expression_source(adata, layer=record.layer, use_raw=record.use_raw)
    columns = var.index.get_indexer(record.genes)
    if (columns < 0).any():
        raise ValueError(
            "Some genes chosen by tokenize are no longer in adata (subset since?). Run oc.pp.tokenize again."
        )
    blocks = [
        read_csr(matrix, np.arange(start, min(start + _CHUNK_ROWS, adata.n_obs)), columns)
        for start in range(0, adata.n_obs, _CHUNK_ROWS)
    ]
    return sp.vstack(blocks, format="csr"), record


def _noisy_anndata(adata: AnnData, values: sp.csr_matrix, record: TokenizeRecord) -> AnnData:
    """An AnnData holding only what ``embed_cells`` reads: the perturbed tokenised genes and the tokenisation."""
    noisy = AnnData(X=values, obs=adata.obs.copy(), var=pd.DataFrame(index=pd.Index(record.genes)))
    dataclasses.replace(record, use_raw=False, layer=None).write(noisy)
    if record.spatial:
        noisy.obsm[keys.OBSM_NEIGHBORS] = np.asarray(adata.obsm[keys.OBSM_NEIGHBORS])
        noisy.obsm[str(record.spatial_key)] = np.asarray(adata.obsm[str(record.spatial_key)])
    return noisy


@doc_params
def dropout_robustness(
    adata: AnnData | MuData,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    label_key: str,
    rates: Sequence[float] | None = None,
    resolution: float = 0.1,
    n_neighbors: int = 15,
    embed: Callable[[AnnData], np.ndarray] | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "auto",
    random_state: int | None = None,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """How well clusters survive dropout: drop expressed values progressively, re-embed, score Leiden.

    The paper's noise experiment: starting from the matrix :func:`omnicell.pp.tokenize` chose
    (its genes; tokenised here with its defaults if it was not run), every non-zero value is set
    to zero with probability ``rate``. The draws are nested: a value dropped at one rate is also
    dropped at every higher rate. At each rate the cells are embedded again
    (:func:`omnicell.tl.embed_cells`, its focal-cell embedding), clustered with Leiden at a
    fixed resolution (0.1 in the paper) on a kNN graph, and the clusters are compared with
    ``obs[label_key]`` by NMI (the paper's metric) and ARI.

    Parameters
    ----------
    adata
        Cells x genes with labels in ``obs[label_key]``.
    {doc_model}
    label_key
        ``obs`` column with the reference labels.
    rates
        Dropout probabilities; default 0.0, 0.05, ..., 0.95.
    resolution
        Leiden resolution used at every rate.
    n_neighbors
        Neighbours of the kNN graph.
    embed
        Instead of the model, a function mapping the perturbed cells (an AnnData of the
        tokenised genes, perturbed values in ``.X``, ``obs`` copied) to an (n_obs, d) embedding,
        e.g. a PCA baseline on the same genes. ``model`` is then only used to tokenise when
        ``adata`` is not tokenised yet.
    {doc_batch_size}
    {doc_device}
    {doc_precision}
    random_state
        Random seed of the dropout draws, the graphs and Leiden; None uses ``oc.settings.seed``.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.uns['omnicell']['dropout_robustness']``
        Parameters and ``table``: a DataFrame with one row per rate (``rate``, ``nmi``, ``ari``,
        ``n_clusters``, ``n_empty_cells`` (cells left with no expressed selected gene),
        ``fraction_kept`` (share of the non-zero values kept)).
    """
    from omnicell._core.checks import check_adata
    from omnicell.tl._embed_cells import embed_cells

    container, adata = resolve_modality(adata, mod, "dropout_robustness")
    labels = get_labels(adata, label_key, "dropout_robustness")
    rates = [float(r) for r in (DEFAULT_RATES if rates is None else rates)]
    if not rates or any(not 0.0 <= r <= 1.0 for r in rates):
        raise ValueError(f"rates must be a non-empty list of probabilities in [0, 1], got {rates!r}.")
    if float(resolution) <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}.")
    if embed is not None and not callable(embed):
        raise TypeError("embed must be a function mapping an AnnData to an (n_obs, d) array, or None.")
    if not 2 <= int(n_neighbors) < adata.n_obs:
        raise ValueError(f"n_neighbors must lie in [2, n_obs - 1 = {adata.n_obs - 1}], got {n_neighbors}.")
    seed = resolve_random_state(random_state, "dropout_robustness")
    if copy:
        container, adata = copy_target(container, adata, mod)
    loaded = ensure_tokenized(adata, model) if embed is None or TokenizeRecord.read(adata) is None else None
    check_adata(adata, "dropout_robustness")
    values, record = tokenised_matrix(adata)
    draws = np.random.default_rng(seed).random(values.nnz)

    started = time.perf_counter()
    rows = []
    for rate in rates:
        kept = values.copy()
        kept.data = np.where(draws >= rate, kept.data, 0.0)
        kept.eliminate_zeros()
        noisy = _noisy_anndata(adata, kept, record)
        n_empty = int((np.diff(kept.indptr) == 0).sum())
        if embed is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*express none of the", category=UserWarning)
                embed_cells(noisy, loaded, batch_size=batch_size, device=device, precision=precision)
            embedding = noisy.obsm[keys.EMBEDDING]
        else:
            embedding = np.asarray(embed(noisy), dtype=np.float32)
            if embedding.ndim != 2 or embedding.shape[0] != adata.n_obs:
                raise ValueError(f"embed returned shape {embedding.shape}; expected ({adata.n_obs}, d).")
        connectivities = knn_graph(embedding, n_neighbors=int(n_neighbors), metric="euclidean", seed=seed)
        codes = leiden(connectivities, resolution=float(resolution), seed=seed)
        ari, nmi = agreement(labels, codes)
        rows.append(
            {
                "rate": rate, "nmi": nmi, "ari": ari, "n_clusters": int(codes.max()) + 1, "n_empty_cells": n_empty,
                "fraction_kept": kept.nnz / max(values.nnz, 1),
            }
        )  # fmt: skip
        logger.info("dropout_robustness: rate %.2f, NMI %.3f", rate, nmi)
    table = pd.DataFrame(rows)
    table.index = table.index.astype(str)
    identity = (
        loaded.identity() if loaded is not None and embed is None else {"embed": getattr(embed, "__name__", "custom")}
    )
    write_record(
        adata,
        "dropout_robustness",
        {
            "label_key": label_key,
            "rates": rates,
            "resolution": float(resolution),
            "n_neighbors": int(n_neighbors),
            "seed": seed,
            "table": table,
            **identity,
        },
    )
    logger.info("dropout_robustness: %d rates in %.1fs", len(rates), time.perf_counter() - started)
    return finish(container, adata, copy=copy)
