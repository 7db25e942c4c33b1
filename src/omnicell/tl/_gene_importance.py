"""``oc.tl.gene_importance``: attention-derived gene-cell importance, and its ROC evaluation."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
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
from omnicell._core.checks import check_key_added
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell._engine.plan import Precision, plan_tokenized
from omnicell.models import OmniCellModel, resolve_model
from omnicell.nn import OmniCell
from omnicell.tl._gene_states import gene_index, group_codes, token_genes

__all__ = ["gene_importance", "importance_roc"]

logger = logging.getLogger("omnicell")


@contextlib.contextmanager
def received_attention(network: OmniCell) -> Iterator[None]:
    """While active, each layer reports the attention every token receives instead of the full map.

    With ``return_attention=True`` the network returns one (B, H, T, T) map per layer; a forward
    hook on each attention module replaces it, as soon as it is computed, by the (B, T) mean
    over heads and over real query tokens of the weight each key token gets, so only one
    layer's map exists at a time.
    """

    def reduce(module, args, kwargs, output):
        attended, weights = output
        if weights is None:
            return None
        padding_mask = kwargs.get("padding_mask", args[2] if len(args) > 2 else None)
        weights = weights.float().mean(1)  # (B, T_query, T_key), mean over heads
        if padding_mask is None:
            received = weights.mean(1)
        else:
            queries = padding_mask.to(weights.dtype)
            received = (weights * queries[:, :, None]).sum(1) / queries.sum(1, keepdim=True).clamp_min(1)
        return attended, received

    handles = [layer.self_attn.register_forward_hook(reduce, with_kwargs=True) for layer in network.layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@doc_params
def gene_importance(
    adata: AnnData | MuData,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    groupby: str | None = None,
    layers: Sequence[int] | None = None,
    store_cells: bool = True,
    key_added: str = keys.IMPORTANCE,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "auto",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Gene-cell importance from the model's attention: how much attention each gene's token receives.

    For every cell, the attention weights of each layer are averaged over heads and over the
    query tokens of the sequence; a gene's importance in the cell is the weight its token
    receives, averaged over the chosen layers (the paper pools gene-gene attention over all
    layers). Only one layer's attention map exists at a time, but that is
    ``batch_size x heads x T^2 x 4`` bytes (T = genes per cell + 2; about 128 MB per cell for
    2,000 genes and 8 heads), so the default batch is at most 8 cells. The eager attention
    kernel is used.

    Parameters
    ----------
    adata
        Cells x genes, as given to :func:`omnicell.pp.tokenize` (run with its defaults if not yet).
    {doc_model}
    groupby
        Also write the mean importance of each gene in each group of this ``obs`` column.
    layers
        Layer indices to pool (default all).
    store_cells
        Write the per-cell importance as a sparse layer (needed by :func:`importance_roc`).
    key_added
        Key of the ``layers`` and ``varm`` results.
    batch_size
        Cells per forward pass; None uses ``min(oc.settings.batch_size, 8)``.
    {doc_device}
    {doc_precision}
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.layers[key_added]``
        (``store_cells``) (n_obs, n_vars) sparse CSR float32 importance; entries only for the
        genes in each cell's sequence.
    ``adata.varm[key_added]``
        (``groupby``) (n_vars, n_groups) mean importance of each gene over the cells of each
        group whose sequence holds it (groups in the record's ``groups``); NaN for genes never
        tokenised.
    ``adata.uns['omnicell']['gene_importance']``
        Parameters and the model identity.
    """
    container, adata = resolve_modality(adata, mod, "gene_importance")
    if not store_cells and groupby is None:
        raise ValueError("Nothing to write: pass groupby= for per-group importance or keep store_cells=True.")
    codes, labels = group_codes(adata, groupby) if groupby is not None else (None, None)
    model = resolve_model(model)
    n_layers = model.config.num_layers
    chosen_layers = list(range(n_layers)) if layers is None else list(layers)
    if not chosen_layers or any(
        isinstance(i, bool) or not isinstance(i, int | np.integer) or not -n_layers <= i < n_layers
        for i in chosen_layers
    ):
        raise ValueError(
            f"layers must be indices into the model's {n_layers} layers (0 to {n_layers - 1}, or negative), "
            f"got {layers!r}."
        )
    chosen_layers = [int(i) for i in chosen_layers]
    check_key_added(key_added)
    if copy:
        container, adata = copy_target(container, adata, mod)
    if batch_size is None:
        from omnicell._core.settings import settings

        batch_size = min(settings.batch_size, 8)
    plan = plan_tokenized(adata, model, batch_size=batch_size, device=device, precision=precision)
    index = gene_index(adata, plan)
    started = time.perf_counter()
    rows_all, cols_all, values_all = [], [], []
    with received_attention(plan.model.network):
        for focal, batch, _tensors, output in plan.batches(return_attention=True, description="gene_importance"):
            received = torch.stack([output.attentions[i] for i in chosen_layers]).mean(0).cpu().numpy()  # (B, T)
            candidate = token_genes(index, batch.tokens, batch.cell_index)
            b, t = np.nonzero(candidate >= 0)
            rows_all.append(focal[b])
            cols_all.append(candidate[b, t])
            values_all.append(received[b, t].astype(np.float32))
    rows = np.concatenate(rows_all)
    genes = np.concatenate(cols_all)
    values = np.concatenate(values_all)
    var_rows = index.var_rows[genes]
    in_var = var_rows >= 0
    matrix = sp.csr_matrix((values[in_var], (rows[in_var], var_rows[in_var])), shape=(adata.n_obs, adata.n_vars))
    matrix.sum_duplicates()
    if store_cells:
        adata.layers[key_added] = matrix.astype(np.float32)
    if groupby is not None:
        present = matrix.copy()
        present.data = np.ones_like(present.data)
        indicator = sp.csr_matrix(
            (np.ones(int((codes >= 0).sum())), (codes[codes >= 0], np.flatnonzero(codes >= 0))),
            shape=(len(labels), adata.n_obs),
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.asarray((indicator @ matrix).todense()) / np.asarray((indicator @ present).todense())
        # An array (groups named in the record): group labels as h5ad keys would break on "/".
        adata.varm[key_added] = means.T.astype(np.float32)
    write_record(
        adata,
        "gene_importance",
        {
            "groupby": groupby,
            "groups": None if labels is None else np.asarray(labels, dtype=str),
            "layers": np.asarray(chosen_layers),
            "store_cells": store_cells,
            "key_added": key_added,
            "batch_size": plan.batch_size,
            "device": str(plan.device),
            "precision": plan.precision,
            **plan.model.identity(),
        },
    )
    written = ([f".layers[{key_added!r}]"] if store_cells else []) + ([f".varm[{key_added!r}]"] if groupby else [])
    logger.info(
        "gene_importance: %d cells in %.1fs; added %s",
        adata.n_obs, time.perf_counter() - started, " and ".join(written),
    )  # fmt: skip
    return finish(container, adata, copy=copy)


def importance_roc(
    adata: AnnData,
    groupby: str,
    *,
    key: str = keys.IMPORTANCE,
    exclude_self: bool = False,
) -> pd.DataFrame:
    """The paper's multiclass ROC evaluation of gene-cell importance: per-group AUC.

    Each group's prototype is the mean importance vector of its cells; every cell is scored
    against every prototype by cosine similarity, and the AUC of the one-vs-rest ROC of each
    group's score is reported.

    Parameters
    ----------
    adata
        AnnData with ``layers[key]`` from :func:`gene_importance`.
    groupby
        ``obs`` column with the true groups.
    key
        Layer with the per-cell importance.
    exclude_self
        Leave each cell out of its own group's prototype (the paper includes it).

    Returns
    -------
    DataFrame indexed by group with ``auc`` and ``n_cells``; ``attrs['macro_auc']`` is their mean.
    Nothing is written to ``adata``.
    """
    from sklearn.metrics import roc_auc_score

    if key not in adata.layers:
        raise KeyError(f"No layers[{key!r}]; run oc.tl.gene_importance(adata, store_cells=True) first.")
    codes, labels = group_codes(adata, groupby)
    if len(labels) < 2:
        raise ValueError(f"obs[{groupby!r}] needs at least two groups for a ROC analysis.")
    matrix = sp.csr_matrix(adata.layers[key], dtype=np.float64)
    keep = codes >= 0
    matrix, codes = matrix[keep], codes[keep]
    columns = np.flatnonzero(np.asarray(abs(matrix).sum(0)).ravel() > 0)
    dense = matrix[:, columns].toarray()
    sizes = np.bincount(codes, minlength=len(labels)).astype(np.float64)
    sums = np.zeros((len(labels), dense.shape[1]))
    np.add.at(sums, codes, dense)
    unit = dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
    if exclude_self:
        scores = np.empty((len(codes), len(labels)))
        for g in range(len(labels)):
            prototypes = np.broadcast_to(sums[g], dense.shape).copy()
            own = codes == g
            prototypes[own] -= dense[own]
            prototypes /= np.maximum(np.where(own, sizes[g] - 1, sizes[g]), 1)[:, None]
            norms = np.maximum(np.linalg.norm(prototypes, axis=1), 1e-12)
            scores[:, g] = (unit * prototypes).sum(1) / norms
    else:
        prototypes = sums / sizes[:, None]
        prototypes /= np.maximum(np.linalg.norm(prototypes, axis=1, keepdims=True), 1e-12)
        scores = unit @ prototypes.T
    auc = [roc_auc_score(codes == g, scores[:, g]) for g in range(len(labels))]
    table = pd.DataFrame({"auc": auc, "n_cells": sizes.astype(int)}, index=pd.Index(labels, name=groupby))
    table.attrs["macro_auc"] = float(np.mean(auc))
    return table
