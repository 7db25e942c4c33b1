"""``oc.tl.embed_genes``: gene embeddings at the cell level (per group, or on disk) and the dataset level."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.checks import resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell._engine.plan import InferencePlan, Precision, plan_tokenized, restore_on_error
from omnicell.models import OmniCellModel
from omnicell.tl._gene_states import (
    DEFAULT_MAX_MEMORY,
    WRITE_BUFFER,
    CellGeneEmbeddings,
    GeneIndex,
    collect_cell_gene_embeddings,
    expression_columns,
    gene_index,
    group_codes,
    token_genes,
)
from omnicell.tl._gpr_gnn import gcn_propagation, knn_kernel_graph, train_gene_embeddings

__all__ = ["embed_genes"]

logger = logging.getLogger("omnicell")


@doc_params
def embed_genes(
    adata: AnnData | MuData,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    level: Literal["dataset", "cell"] = "dataset",
    groupby: str | None = None,
    store: str | os.PathLike | None = None,
    genes: Sequence[str] | None = None,
    projection: float | None = 0.9,
    use_rep: str | None = None,
    n_neighbors: int = 15,
    n_steps: int = 10,
    alpha: float = 0.1,
    hidden_dim: int = 128,
    n_epochs: int = 10,
    learning_rate: float = 1e-3,
    dropout: float = 0.1,
    gene_batch: int = 20,
    random_state: int | None = None,
    max_memory: float = DEFAULT_MAX_MEMORY / 1024**3,
    key_added: str | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "auto",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Gene embeddings from the model, per cell (summarised per group or streamed to disk) or per dataset.

    The **cell-level** embedding of a gene in a cell is the last-layer state of its token in that
    cell, projected onto the spectral basis (the released code). For ``n`` cells, ``G`` genes and
    ``m`` dimensions it takes ``n * G * m * 4`` bytes (10,000 cells x 2,000 genes x 316 dimensions:
    25 GB), so it is never held whole: it is averaged per ``groupby`` group while the model runs,
    and/or written to the zarr store ``store`` in chunks.

    The **dataset-level** embedding (the paper's) propagates each gene's per-cell embeddings over
    a kNN graph of the cells with a GPR-GNN trained to reconstruct the gene's expression across
    cells, and averages over cells. As in the released code: k = 15 neighbours on the cell
    embeddings with adaptive kernel weights, GCN normalisation, MLP ``m -> 128 -> m``, K = 10
    propagation steps with learnable coefficients started at ``alpha (1 - alpha)^k``, a linear
    read-out to the expression of every cell, MSE, Adam (1e-3), 10 epochs of 20-gene batches.
    The graph is sparse (O(n * k) memory; no dense n x n matrix). Since only the mean over cells
    of the propagated features is used, the K propagation steps are applied to the averaging
    vector instead (``sum_k gamma_k (P^T)^k 1 / n``, exactly the same result) and the MLP runs on
    chunks of cells, so training memory is O(n * 20 genes * m). The per-cell embeddings are kept in
    memory up to ``max_memory`` GB, else in a temporary file (or the zarr ``store``) read 20 genes
    at a time; the result does not depend on where they are kept, nor on ``batch_size``, and is
    reproducible for a given ``random_state``. A gene absent from a cell's sequence
    (``strategy='expressed'``) enters the GNN as a zero vector in that cell.

    Parameters
    ----------
    adata
        Cells x genes, as given to :func:`omnicell.pp.tokenize` (run with its defaults if not yet).
    {doc_model}
    level
        ``"dataset"`` (one embedding per gene) or ``"cell"`` (per-group summaries and/or a store).
    groupby
        ``level="cell"``: ``obs`` column; the mean cell-level embedding of each gene in each group
        is written to ``varm``.
    store
        Path of a zarr store (replaced if present) to write the full (n_obs, n_genes, m)
        cell-level embeddings to (array ``embeddings``; attributes ``genes``, ``obs_names``), e.g. for
        :func:`omnicell.tl.marker_genes`. With ``level="dataset"`` the per-cell embeddings the
        GNN reads go there instead of a temporary store.
    genes
        Restrict to these tokenised genes (var names); default all tokenised genes.
    projection
        Spectral share ``tau`` of the projection (0.9 in the paper); None keeps raw states.
    use_rep
        ``obsm`` key of the cell embeddings the kNN graph is built on; None uses the cell
        embeddings of this same model pass (those of :func:`omnicell.tl.embed_cells`).
    n_neighbors
        Neighbours per cell in the graph.
    n_steps
        Propagation steps K.
    alpha
        Restart probability of the initial PageRank coefficients.
    hidden_dim
        Hidden width of the GNN's MLP.
    n_epochs
        Training epochs.
    learning_rate
        Adam learning rate.
    dropout
        Dropout in the MLP during training.
    gene_batch
        Genes per training step.
    random_state
        Random seed of the GNN's initialisation, dropout and gene order; None uses ``oc.settings.seed``.
    max_memory
        GB of per-cell gene embeddings held in memory; more spill to a temporary file on disk.
    key_added
        ``varm`` key; default ``'omnicell'`` (dataset level) or ``'omnicell_cell'`` (cell level).
    {doc_batch_size}
    {doc_device}
    {doc_precision}
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.varm[key_added]``
        ``level="dataset"``: (n_vars, m) float32 gene embeddings, NaN rows for genes that were
        not tokenised. ``level="cell"`` with ``groupby``: (n_vars, n_groups, m) mean cell-level
        embedding of each gene in each group (groups in the record), NaN where none.
    ``adata.uns['omnicell']['embed_genes']``
        Parameters, the training loss per epoch (dataset level), groups and store path (cell
        level), model name and checkpoint sha256.
    ``store``
        (when given) the zarr store described above.
    """
    container, adata = resolve_modality(adata, mod, "embed_genes")
    if level not in ("dataset", "cell"):
        raise ValueError(f"level must be 'dataset' or 'cell', got {level!r}.")
    if level == "cell" and groupby is None and store is None:
        raise ValueError(
            "embed_genes(level='cell') needs groupby= (per-group means in varm) and/or store= (a zarr path for "
            "the full cells x genes x dims array, which is too large to keep in memory)."
        )
    if level == "dataset" and groupby is not None:
        raise ValueError("groupby applies to level='cell'; the dataset level gives one embedding per gene.")
    if projection is not None and not 0.0 < float(projection) <= 1.0:
        raise ValueError(f"projection must lie in (0, 1] or be None, got {projection!r}.")
    for name, value in (("n_neighbors", n_neighbors), ("n_epochs", n_epochs), ("gene_batch", gene_batch),
                        ("hidden_dim", hidden_dim)):  # fmt: skip
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if int(n_steps) < 0 or not 0.0 <= float(alpha) <= 1.0 or not 0.0 <= float(dropout) < 1.0:
        raise ValueError("n_steps must be >= 0, alpha in [0, 1] and dropout in [0, 1).")
    if float(max_memory) <= 0:
        raise ValueError(f"max_memory must be a positive number of GB, got {max_memory!r}.")
    if groupby is not None:
        group_codes(adata, groupby)  # validates the column
    if use_rep is not None and (use_rep not in adata.obsm or np.asarray(adata.obsm[use_rep]).ndim != 2):
        raise KeyError(f"use_rep {use_rep!r} is not a 2-d obsm entry; available: {list(adata.obsm)}.")
    if store is not None and os.path.exists(store) and not os.path.isdir(store):
        raise FileExistsError(f"store {store} exists and is not a zarr folder.")
    seed = resolve_random_state(random_state, "embed_genes")
    key = key_added or (keys.GENE_EMBEDDING if level == "dataset" else keys.CELL_GENE_EMBEDDING)
    if genes is not None:
        genes = [str(gene) for gene in ([genes] if isinstance(genes, str) else genes)]
        absent = [gene for gene in genes if gene not in adata.var_names]
        if absent or not genes:
            raise ValueError(
                f"genes: {len(absent)} of the {len(genes)} requested genes are not in adata.var_names "
                f"(e.g. {', '.join(absent[:5]) or 'none given'}); pass var names that oc.pp.tokenize selects."
            )
    if copy:
        container, adata = copy_target(container, adata, mod)
    with restore_on_error(adata):
        plan = plan_tokenized(adata, model, batch_size=batch_size, device=device, precision=precision)
        index = gene_index(adata, plan)
        chosen = _chosen_genes(index, genes)
    basis = plan.model.spectral_basis(float(projection)).to(plan.device) if projection is not None else None
    started = time.perf_counter()
    record: dict = {
        "level": level,
        "key_added": key,
        "projection": projection,
        "n_genes": len(chosen),
        "genes_given": genes is not None,
        "batch_size": plan.batch_size,
        "device": str(plan.device),
        "precision": plan.precision,
    }
    if level == "cell":
        result = _cell_level(adata, plan, index, chosen, basis, groupby=groupby, store=store)
        if groupby is not None:
            adata.varm[key] = result[0]
            record.update(groupby=groupby, groups=np.asarray(result[1], dtype=str), n_cells=result[2])
        record["store"] = None if store is None else str(store)
    else:
        embedding, losses = _dataset_level(
            adata, plan, index, chosen, basis,
            store=store, use_rep=use_rep, max_memory=int(float(max_memory) * 1024**3),
            n_neighbors=int(n_neighbors), n_steps=int(n_steps), alpha=float(alpha), hidden=int(hidden_dim),
            n_epochs=int(n_epochs), learning_rate=float(learning_rate), dropout=float(dropout),
            gene_batch=int(gene_batch), seed=seed,
        )  # fmt: skip
        adata.varm[key] = embedding
        record.update(
            use_rep=use_rep, n_neighbors=int(n_neighbors), n_steps=int(n_steps), alpha=float(alpha),
            hidden_dim=int(hidden_dim), n_epochs=int(n_epochs), learning_rate=float(learning_rate),
            dropout=float(dropout), gene_batch=int(gene_batch), seed=seed, loss=losses,
            store=None if store is None else str(store),
        )  # fmt: skip
    record["n_genes_in_var"] = int((index.var_rows[chosen] >= 0).sum())
    write_record(adata, "embed_genes", {**record, **plan.model.identity()})
    logger.info(
        "embed_genes(level=%r): %d genes, %d cells in %.1fs; added .varm[%r]%s",
        level, len(chosen), adata.n_obs, time.perf_counter() - started, key,
        f" and the store {store}" if store is not None else "",
    )  # fmt: skip
    return finish(container, adata, copy=copy)


def _chosen_genes(index: GeneIndex, genes: Sequence[str] | None) -> np.ndarray:
    if genes is None:
        return np.arange(len(index))
    requested = pd.Index([str(g) for g in genes]).drop_duplicates()
    positions = pd.Index(index.names).get_indexer(requested)
    missing = requested[positions < 0]
    if len(missing):
        raise ValueError(
            f"{len(missing)} requested genes are not among the tokenised genes (e.g. {', '.join(missing[:5])}); "
            "pass genes that oc.pp.tokenize selected (var['omnicell_selected'])."
        )
    return np.sort(positions)


def _cell_level(
    adata: AnnData,
    plan: InferencePlan,
    index: GeneIndex,
    chosen: np.ndarray,
    basis: torch.Tensor | None,
    *,
    groupby: str | None,
    store: str | os.PathLike | None,
) -> tuple[np.ndarray, pd.Index, np.ndarray] | tuple[None, None, None]:
    """Stream cell-level embeddings into per-group means and/or a zarr store."""
    if store is not None:
        source, _ = collect_cell_gene_embeddings(
            plan, index, basis, genes=chosen, store=store, obs_names=adata.obs_names, description="embed_genes"
        )
        if groupby is None:
            return None, None, None
        codes, labels = group_codes(adata, groupby)
        means = _group_means_from_store(source, codes, len(labels))
        return _to_var(adata, index, chosen, means), labels, np.bincount(codes[codes >= 0], minlength=len(labels))
    codes, labels = group_codes(adata, groupby)
    width = basis.shape[1] if basis is not None else plan.model.config.d_model
    column_of = np.full(len(index), -1, dtype=np.int64)
    column_of[chosen] = np.arange(len(chosen))
    sums = torch.zeros((len(labels), len(chosen), width), dtype=torch.float64)
    counts = torch.zeros((len(labels), len(chosen)), dtype=torch.float64)
    for focal, batch, _tensors, output in plan.batches(description="embed_genes"):
        candidate = token_genes(index, batch.tokens, batch.cell_index)
        column = np.where(candidate >= 0, column_of[np.maximum(candidate, 0)], -1)
        group = codes[focal][:, None].repeat(column.shape[1], 1)
        b, t = np.nonzero((column >= 0) & (group >= 0))
        hidden = output.hidden.float()
        states = hidden[torch.from_numpy(b).to(hidden.device), torch.from_numpy(t).to(hidden.device)]
        states = (states @ basis if basis is not None else states).cpu().double()
        flat = torch.from_numpy(group[b, t] * len(chosen) + column[b, t])
        sums.view(-1, width).index_add_(0, flat, states)
        counts.view(-1).index_add_(0, flat, torch.ones(len(flat), dtype=torch.float64))
    means = (sums / counts.unsqueeze(-1)).to(torch.float32).numpy()  # NaN where a gene is absent from a group
    return (
        _to_var(adata, index, chosen, means.transpose(1, 0, 2)),
        labels,
        np.bincount(codes[codes >= 0], minlength=len(labels)),
    )


def _group_means_from_store(source: CellGeneEmbeddings, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_genes, n_groups, m) mean embedding of each gene in each group, read back from the store."""
    with source:
        n_obs, n_genes, width = source.shape
        means = np.full((n_genes, n_groups, width), np.nan, dtype=np.float32)
        step = max(1, WRITE_BUFFER // max(1, n_obs * width * 4))
        for start in range(0, n_genes, step):
            values = source.read(start, min(start + step, n_genes))
            for group in range(n_groups):
                members = values[codes == group]
                present = np.isfinite(members).sum(0)
                summed = np.nansum(members, 0)
                means[start : start + values.shape[1], group] = np.where(
                    present > 0, summed / np.maximum(present, 1), np.nan
                )
    return means


def _to_var(adata: AnnData, index: GeneIndex, chosen: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (one per chosen gene) placed at their ``adata.var`` rows, NaN elsewhere."""
    out = np.full((adata.n_vars, *values.shape[1:]), np.nan, dtype=np.float32)
    rows = index.var_rows[chosen]
    out[rows[rows >= 0]] = values[rows >= 0]
    return out


def _dataset_level(
    adata: AnnData,
    plan: InferencePlan,
    index: GeneIndex,
    chosen: np.ndarray,
    basis: torch.Tensor | None,
    *,
    store: str | os.PathLike | None,
    use_rep: str | None,
    max_memory: int,
    n_neighbors: int,
    n_steps: int,
    alpha: float,
    hidden: int,
    n_epochs: int,
    learning_rate: float,
    dropout: float,
    gene_batch: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    source, cells = collect_cell_gene_embeddings(
        plan, index, basis, genes=chosen, store=store, max_memory=max_memory,
        obs_names=adata.obs_names, cell_embeddings=use_rep is None, description="embed_genes",
    )  # fmt: skip
    with source:
        representation = np.asarray(adata.obsm[use_rep], dtype=np.float32) if use_rep is not None else cells
        graph = knn_kernel_graph(representation, n_neighbors)
        propagation = gcn_propagation(graph, plan.device)
        expression = expression_columns(plan, chosen)
        embeddings, losses = train_gene_embeddings(
            source.take, lambda genes: expression[:, genes].toarray().T, propagation,
            n_genes=len(chosen), dim=source.shape[2], hidden=hidden, n_steps=n_steps, alpha=alpha,
            dropout=dropout, n_epochs=n_epochs, learning_rate=learning_rate, gene_batch=gene_batch,
            seed=seed, device=plan.device,
        )  # fmt: skip
    return _to_var(adata, index, chosen, embeddings), losses
