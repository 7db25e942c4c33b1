"""``oc.tl.expert_usage``: routing of the MoE value embedder per gene, per cell and per group."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.docs import doc_params
from omnicell._core.groups import expert_zscores
from omnicell._core.progress import progress
from omnicell._core.provenance import write_record
from omnicell._engine.plan import plan_tokenized
from omnicell.models import OmniCellModel
from omnicell.tl._gene_states import gene_index, group_codes, token_genes

__all__ = ["expert_usage", "gene_routing"]

logger = logging.getLogger("omnicell")


def gene_routing(model: OmniCellModel, token_ids: np.ndarray, *, weights: str = "probability") -> np.ndarray:
    """(len(token_ids), R) routing of each gene token: softmax probabilities or the top-k weights used.

    The router sees only the gene embedding, so this is what the model routes for the gene in
    every cell (the same as ``ForwardOutput.routing`` at the gene's tokens).
    """
    embedder = model.network.embedder
    with torch.inference_mode():
        table = embedder.gene_embedding.weight[torch.as_tensor(token_ids, device=model.device)]
        probabilities, top = embedder.value_embedding.routing(table)
        if weights == "topk":
            probabilities = torch.zeros_like(probabilities).scatter(-1, top, probabilities.gather(-1, top))
    return probabilities.float().cpu().numpy()


@doc_params
def expert_usage(
    adata: AnnData | MuData,
    groupby: str,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    weights: Literal["probability", "topk"] = "probability",
    key_added: str = keys.EXPERTS,
    batch_size: int | None = None,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """How the MoE value embedder routes each gene, and how much each cell and group uses each expert.

    The router of the value embedder sees only the gene's identity embedding, so a gene's
    routing probabilities over the R routed experts are the same in every cell. A cell's usage is
    the mean routing of the genes it expresses among those in its sequence (the tokens the
    model embeds with a non-zero value); a group's usage is the mean over its cells, and the
    z-score standardises each expert across groups (the paper's Figure 3G; plot it with
    :func:`omnicell.pl.expert_heatmap`). No forward pass is needed: only the sequences are built.

    Parameters
    ----------
    adata
        Cells x genes, as given to :func:`omnicell.pp.tokenize` (run with its defaults if not yet).
    groupby
        ``obs`` column with the groups (e.g. cell types).
    {doc_model}
    weights
        ``"probability"``: the router's softmax over all routed experts; ``"topk"``: the weights
        the model actually applies (probabilities of the top-k experts, others 0).
    key_added
        Key of the per-cell (``obsm``) and per-gene (``varm``) results.
    batch_size
        Cells per batch of sequences; None uses ``oc.settings.batch_size``.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.varm[key_added]``
        (n_vars, R) routing of each tokenised gene; NaN rows for other genes.
    ``adata.obsm[key_added]``
        (n_obs, R) mean routing over each cell's expressed genes; NaN for a cell with none.
    ``adata.uns['omnicell']['expert_usage']``
        ``groupby``, ``mean`` (groups x experts DataFrame of mean usage), ``zscore`` (the same,
        standardised per expert across groups), ``n_cells`` per group, parameters and the model
        identity.
    """
    container, adata = resolve_modality(adata, mod, "expert_usage")
    if weights not in ("probability", "topk"):
        raise ValueError(f"weights must be 'probability' or 'topk', got {weights!r}.")
    codes, labels = group_codes(adata, groupby)
    if copy:
        container, adata = copy_target(container, adata, mod)
    plan = plan_tokenized(adata, model, batch_size=batch_size, device="cpu", precision="float32")
    index = gene_index(adata, plan)
    started = time.perf_counter()
    routing = gene_routing(plan.model, index.token_ids, weights=weights)  # (G, R)
    n_experts = routing.shape[1]
    sums = np.zeros((adata.n_obs, n_experts))
    counts = np.zeros(adata.n_obs)
    bar = progress(total=plan.n_obs, unit="cells", desc="expert_usage")
    with bar:
        for start in range(0, plan.n_obs, plan.batch_size):
            focal = np.arange(start, min(start + plan.batch_size, plan.n_obs))
            batch = plan.token_batch(focal)
            candidate = token_genes(index, batch.tokens, batch.cell_index)
            b, t = np.nonzero((candidate >= 0) & batch.expressed)
            np.add.at(sums, focal[b], routing[candidate[b, t]])
            np.add.at(counts, focal[b], 1)
            bar.update(len(focal))
    with np.errstate(invalid="ignore", divide="ignore"):
        usage = (sums / counts[:, None]).astype(np.float32)
    mean, zscore = expert_zscores(usage, codes, labels, n_experts)

    per_gene = np.full((adata.n_vars, n_experts), np.nan, dtype=np.float32)
    rows = index.var_rows
    per_gene[rows[rows >= 0]] = routing[rows >= 0]
    adata.varm[key_added] = per_gene
    adata.obsm[key_added] = usage
    write_record(
        adata,
        "expert_usage",
        {
            "groupby": groupby,
            "weights": weights,
            "key_added": key_added,
            "mean": mean,
            "zscore": zscore,
            "n_cells": np.bincount(codes[(codes >= 0) & (counts > 0)], minlength=len(labels)),
            "n_empty_cells": int((counts == 0).sum()),
            "n_experts": n_experts,
            **plan.model.identity(),
        },
    )
    logger.info(
        "expert_usage: %d cells, %d groups in %.1fs; added .obsm[%r], .varm[%r], .uns['omnicell']['expert_usage']",
        adata.n_obs, len(labels), time.perf_counter() - started, key_added, key_added,
    )  # fmt: skip
    return finish(container, adata, copy=copy)
