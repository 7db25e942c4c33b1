"""``oc.tl.marker_genes``: marker genes from cell-level gene embeddings, in scanpy's schema."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell._core.tokenize_record import TokenizeRecord
from omnicell._engine.plan import Precision, plan_tokenized
from omnicell.models import OmniCellModel
from omnicell.tl._gene_states import (
    DEFAULT_MAX_MEMORY,
    CellGeneEmbeddings,
    collect_cell_gene_embeddings,
    expression_columns,
    gene_index,
    group_codes,
    iter_gene_blocks,
)

__all__ = ["marker_genes", "wasserstein_one_vs_rest"]

logger = logging.getLogger("omnicell")

METHOD = "omnicell_wasserstein"


def wasserstein_one_vs_rest(values: torch.Tensor, codes: torch.Tensor, n_groups: int) -> torch.Tensor:
    """1-D Wasserstein distance between each group and the other cells, for many features at once.

    Uses ``W1 = integral |F_group(x) - F_rest(x)| dx`` over the pooled sorted values (the
    sorted-quantile form of the distance): one sort per feature, then cumulative counts per group.

    Parameters
    ----------
    values
        (n_cells, n_features) values; NaN marks a cell without a value for that feature.
    codes
        (n_cells,) group code of each cell, -1 for cells in no group (they count as "rest").
    n_groups
        Number of groups.

    Returns
    -------
    (n_groups, n_features) float64 distances; NaN where a group or its rest has no value.
    """
    values = values.to(torch.float64)
    ordered, order = torch.sort(values, dim=0)  # NaN sorts last
    finite = torch.isfinite(ordered)
    gaps = torch.nan_to_num(ordered[1:] - ordered[:-1], nan=0.0)
    gaps = torch.where(finite[1:], gaps, torch.zeros_like(gaps))
    labels = codes[order]  # (n, F)
    total = finite.sum(0).to(torch.float64)
    result = torch.empty((n_groups, values.shape[1]), dtype=torch.float64, device=values.device)
    for group in range(n_groups):
        member = (labels == group) & finite
        n_in = member.sum(0).to(torch.float64)
        n_out = total - n_in
        below_in = torch.cumsum(member, 0, dtype=torch.float64)[:-1]
        below_all = torch.cumsum(finite, 0, dtype=torch.float64)[:-1]
        cdf_in = below_in / n_in.clamp_min(1)
        cdf_out = (below_all - below_in) / n_out.clamp_min(1)
        distance = ((cdf_in - cdf_out).abs() * gaps).sum(0)
        result[group] = torch.where((n_in > 0) & (n_out > 0), distance, torch.full_like(distance, float("nan")))
    return result


@doc_params
def marker_genes(
    adata: AnnData | MuData,
    groupby: str,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    groups: Sequence[str] | None = None,
    n_genes: int = 100,
    store: str | os.PathLike | None = None,
    projection: float | None = 0.9,
    pts: bool = False,
    key_added: str = keys.RANK_GENES,
    max_memory: float = DEFAULT_MAX_MEMORY / 1024**3,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "auto",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Marker genes of each group from cell-level gene embeddings (one group versus the rest).

    For every tokenised gene and every embedding dimension, the 1-D Wasserstein distance between
    the gene's embedding values in the group's cells and in all other cells is computed; a gene's
    score is the mean over dimensions, as in the paper. Genes are ranked by score and kept only if
    their mean expression is higher in the group than in the rest (the released code's filter).
    The distances are computed for all genes and dimensions at once from sorted values (no
    per-gene SciPy call); the cell-level embeddings are streamed a few genes at a time.

    Parameters
    ----------
    adata
        Cells x genes, as given to :func:`omnicell.pp.tokenize` (run with its defaults if not yet).
    groupby
        ``obs`` column with the groups (e.g. cell types).
    {doc_model}
    groups
        Groups to find markers for (default all); the rest is always every other cell.
    n_genes
        Genes listed per group. A group with fewer genes passing the expression filter is
        completed with the best-scoring remaining genes (their ``logfoldchanges`` are <= 0, so
        ``sc.get.rank_genes_groups_df(..., log2fc_min=0)`` leaves them out), with one warning for
        the call (not one per group) and the counts recorded as ``n_higher``.
    store
        Zarr store written by ``oc.tl.embed_genes(adata, level='cell', store=...)``: read the
        cell-level embeddings from it instead of running the model.
    projection
        Spectral share ``tau`` for the projection (ignored with ``store``); None keeps raw states.
    pts
        Also write the fraction of cells expressing each gene in the group (``pts``) and the rest
        (``pts_rest``).
    key_added
        ``uns`` key of the result.
    max_memory
        GB of cell-level gene embeddings held in memory; more spill to a temporary file on disk.
    {doc_batch_size}
    {doc_device}
    {doc_precision}
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.uns[key_added]``
        scanpy's ``rank_genes_groups`` schema: ``params`` (``groupby``, ``reference='rest'``,
        ``method='omnicell_wasserstein'``, ``use_raw``, ``layer``, ``corr_method``), and record
        arrays with one field per group and ``n_genes`` rows: ``names``, ``scores`` (mean
        Wasserstein distance), ``logfoldchanges`` (log2 ratio of mean expression in the group
        and the rest, on the matrix ``tokenize`` read), ``pvals`` and ``pvals_adj`` (NaN: there
        is no test); with ``pts``, the DataFrames ``pts`` and ``pts_rest``. Read it with
        ``sc.get.rank_genes_groups_df(adata, None, key=key_added)`` or plot it with
        :func:`omnicell.pl.marker_genes`.
    ``adata.uns['omnicell']['marker_genes']``
        Parameters, ``n_higher`` (per group, the number of genes more expressed in the group than in
        the rest: list entries beyond it have ``logfoldchanges <= 0``) and the model identity.
    """
    container, adata = resolve_modality(adata, mod, "marker_genes")
    if int(n_genes) < 1:
        raise ValueError(f"n_genes must be a positive integer, got {n_genes!r}.")
    if projection is not None and not 0.0 < float(projection) <= 1.0:
        raise ValueError(f"projection must lie in (0, 1] or be None, got {projection!r}.")
    if float(max_memory) <= 0:
        raise ValueError(f"max_memory must be a positive number of GB, got {max_memory!r}.")
    codes, labels = group_codes(adata, groupby, groups)
    sizes = np.bincount(codes[codes >= 0], minlength=len(labels))
    if len(labels) == 0:
        raise ValueError(f"obs[{groupby!r}] has no cells in the requested groups.")
    if (sizes == adata.n_obs).any():
        raise ValueError(f"obs[{groupby!r}] has a single group; markers need at least two groups of cells.")
    if store is not None and not os.path.isdir(store):
        raise FileNotFoundError(
            f"No zarr store at {store}; write one with oc.tl.embed_genes(adata, level='cell', store=...)."
        )
    if copy:
        container, adata = copy_target(container, adata, mod)
    plan = plan_tokenized(adata, model, batch_size=batch_size, device=device, precision=precision)
    index = gene_index(adata, plan)
    started = time.perf_counter()
    if store is not None:
        source = _open_store(store, adata, index)
    else:
        basis = plan.model.spectral_basis(float(projection)).to(plan.device) if projection is not None else None
        source, _ = collect_cell_gene_embeddings(
            plan, index, basis, max_memory=int(float(max_memory) * 1024**3), description="marker_genes"
        )
    with source:
        scores = _scores(source, codes, len(labels), budget=int(float(max_memory) * 1024**3))
    genes = source.genes
    expression = expression_columns(plan, genes)
    mean_in, mean_out, frac_in, frac_out = _group_expression(expression, codes, len(labels))
    logfc = np.log2((mean_in + 1e-9) / (mean_out + 1e-9)).astype(np.float32)
    names = index.names[genes]

    n_rows = min(int(n_genes), len(genes))
    columns: dict[str, dict[str, np.ndarray]] = {
        f: {} for f in ("names", "scores", "logfoldchanges", "pvals", "pvals_adj")
    }
    n_higher = {}
    for g, label in enumerate(labels):
        higher = (mean_in[g] > mean_out[g]) & np.isfinite(scores[g])
        score = np.where(np.isfinite(scores[g]), scores[g], -np.inf)
        # Passing genes by score first, then (only if too few pass) the others by score.
        order = np.lexsort((-score, ~higher))[:n_rows]
        n_higher[str(label)] = int(higher.sum())
        columns["names"][label] = names[order].astype(object)
        columns["scores"][label] = scores[g][order].astype(np.float32)
        columns["logfoldchanges"][label] = logfc[g][order]
        columns["pvals"][label] = np.full(n_rows, np.nan)
        columns["pvals_adj"][label] = np.full(n_rows, np.nan)
    short = {label: count for label, count in n_higher.items() if count < n_rows}
    if short:
        # One warning for the call, whatever the number of groups; the counts per group are in the record.
        fewest = min(short, key=short.get)
        warnings.warn(
            f"n_genes={n_rows} exceeds the genes more expressed than in the rest in {len(short)} of {len(labels)} "
            f"groups (fewest: {fewest!r}, {short[fewest]}): their lists are completed with the best remaining "
            f"genes (logfoldchanges <= 0). The count of each group is in adata.uns['omnicell']['marker_genes']"
            "['n_higher'].",
            UserWarning,
            stacklevel=2,
        )
    record = get_tokenize_source(adata)
    result: dict = {
        "params": {
            "groupby": groupby,
            "reference": "rest",
            "method": METHOD,
            "use_raw": record["use_raw"],
            "layer": record["layer"],
            "corr_method": "none",
        }
    }
    for field, per_group in columns.items():
        result[field] = pd.DataFrame(per_group).to_records(index=False)
    if pts:
        result["pts"] = pd.DataFrame(frac_in.T, index=names, columns=list(labels))
        result["pts_rest"] = pd.DataFrame(frac_out.T, index=names, columns=list(labels))
    adata.uns[key_added] = result
    write_record(
        adata,
        "marker_genes",
        {
            "groupby": groupby,
            "groups": np.asarray(labels, dtype=str),
            "n_genes": n_rows,
            "key_added": key_added,
            "projection": projection if store is None else None,
            "store": None if store is None else str(store),
            "n_candidate_genes": len(genes),
            "n_higher": n_higher,
            "batch_size": plan.batch_size,
            "device": str(plan.device),
            "precision": plan.precision,
            **plan.model.identity(),
        },
    )
    logger.info(
        "marker_genes: %d groups, %d genes in %.1fs; added .uns[%r]",
        len(labels), len(genes), time.perf_counter() - started, key_added,
    )  # fmt: skip
    return finish(container, adata, copy=copy)


def get_tokenize_source(adata: AnnData) -> dict:
    """``use_raw`` and ``layer`` of the matrix the tokenisation read."""
    record = TokenizeRecord.read(adata)
    if record is None:
        return {"use_raw": False, "layer": None}
    return {"use_raw": record.use_raw, "layer": record.layer}


def _scores(source: CellGeneEmbeddings, codes: np.ndarray, n_groups: int, *, budget: int) -> np.ndarray:
    """(n_groups, n_genes) mean over dimensions of the one-vs-rest Wasserstein distance."""
    n_obs, n_genes, width = source.shape
    # The sort and the cumulative counts need about 40 bytes per value.
    block = max(1, budget // max(1, 40 * n_obs * width))
    codes_t = torch.from_numpy(codes)
    scores = np.empty((n_groups, n_genes), dtype=np.float64)
    for start, stop, values in iter_gene_blocks(source, block):
        flat = torch.from_numpy(values.reshape(n_obs, -1))
        distances = wasserstein_one_vs_rest(flat, codes_t, n_groups).reshape(n_groups, stop - start, width)
        scores[:, start:stop] = distances.mean(-1).numpy()
    return scores


def _group_expression(expression: sp.csc_matrix, codes: np.ndarray, n_groups: int):
    """Mean expression and expressing fraction of each gene in each group and in its rest."""
    n_obs = expression.shape[0]
    keep = codes >= 0
    indicator = sp.csr_matrix((np.ones(int(keep.sum())), (codes[keep], np.flatnonzero(keep))), shape=(n_groups, n_obs))
    sizes = np.asarray(indicator.sum(1)).ravel()
    rest = n_obs - sizes
    expression = expression.tocsr()
    total = np.asarray(expression.sum(0)).ravel()
    nonzero = expression.copy()
    nonzero.data = (nonzero.data != 0).astype(np.float64)
    total_nz = np.asarray(nonzero.sum(0)).ravel()
    summed = np.asarray((indicator @ expression).todense())
    summed_nz = np.asarray((indicator @ nonzero).todense())
    # Expression is non-negative; the clip removes rounding error of the subtraction.
    mean_in = summed / sizes[:, None]
    mean_out = np.maximum(total[None] - summed, 0.0) / np.maximum(rest, 1)[:, None]
    frac_in = summed_nz / sizes[:, None]
    frac_out = np.maximum(total_nz[None] - summed_nz, 0.0) / np.maximum(rest, 1)[:, None]
    return mean_in, mean_out, frac_in, frac_out


def _open_store(store: str | os.PathLike, adata: AnnData, index) -> CellGeneEmbeddings:
    """The cell-level embeddings of a zarr store written by ``embed_genes``, checked against ``adata``."""
    import zarr

    group = zarr.open_group(str(store), mode="r")
    array = group["embeddings"]
    genes = pd.Index(list(group.attrs["genes"]))
    if array.shape[0] != adata.n_obs or list(group.attrs.get("obs_names", adata.obs_names)) != list(adata.obs_names):
        raise ValueError(f"The store {store} was written for other cells than adata's; run oc.tl.embed_genes again.")
    candidates = pd.Index(index.names).get_indexer(genes)
    if (candidates < 0).any():
        raise ValueError(
            f"The store {store} holds genes that adata's tokenisation does not; run oc.tl.embed_genes again."
        )
    return CellGeneEmbeddings(array, candidates)
