"""``oc.pp.tokenize``: choose the genes and neighbourhoods the model will read."""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._provenance import write_record
from .._validate import (
    check_adata,
    check_coordinates,
    check_matrix_values,
    check_unique_var_names,
    describe_var_names,
    get_matrix,
)
from ..data import spatial_knn
from ..models import OmniCellModel, resolve_model

__all__ = ["tokenize"]

logger = logging.getLogger("omnicell")


def tokenize(
    adata: AnnData,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    genes: list[str] | np.ndarray | pd.Index | None = None,
    n_genes: int = 2000,
    layer: str | None = None,
    spatial: bool = False,
    n_neighbors: int = 9,
    spatial_key: str = _keys.SPATIAL,
    copy: bool = False,
) -> AnnData | None:
    """Choose the genes each cell is read with and, in spatial mode, each cell's neighbours.

    This follows the released OmniCell code: every cell is read with the same ordered gene list,
    unexpressed genes included. Token arrays themselves are built per batch by
    :func:`omnicell.tl.embed_cells`.

    Parameters
    ----------
    adata
        Cells x genes with human Ensembl gene ids as var names and non-negative expression
        (counts, or any per-cell monotone normalisation: the model sees soft ranks).
    model
        Model whose vocabulary is used: an :class:`~omnicell.models.OmniCellModel`, a registry name
        or a folder; None uses ``oc.settings.default_model``.
    genes
        Ordered gene list to use. Genes in the vocabulary and in ``var_names`` are kept in this
        order (others are dropped with a warning). None selects the ``n_genes`` most highly
        variable vocabulary genes (scanpy's ``seurat_v3`` flavour on ``layer``), in var order.
    n_genes
        Number of highly variable genes when ``genes`` is None.
    layer
        Layer with the expression values; None uses ``.X``. ``seurat_v3`` expects counts here.
    spatial
        Also record each cell's ``n_neighbors`` nearest other cells from ``obsm[spatial_key]``.
    n_neighbors
        Neighbours per cell in spatial mode (the released model used 9).
    spatial_key
        ``obsm`` key of the raw (x, y) coordinates.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.var['omnicell_token']``
        Token id of each gene, -1 outside the vocabulary.
    ``adata.var['omnicell_selected']``
        Whether the gene is in the gene list.
    ``adata.uns['omnicell']['tokenize']``
        The ordered gene list (``genes``), their ``token_ids``, the parameters and the model identity.
    ``adata.obsm['omnicell_neighbors']``
        (spatial) (n_obs, n_neighbors) indices of the nearest other cells, nearest first.
    """
    check_adata(adata, "tokenize")
    check_unique_var_names(adata)
    if not isinstance(spatial, bool):
        raise TypeError("spatial must be True or False.")
    if genes is None and int(n_genes) < 1:
        raise ValueError(f"n_genes must be a positive integer, got {n_genes!r}.")
    matrix = get_matrix(adata, layer)
    coordinates = check_coordinates(adata, spatial_key) if spatial else None
    loaded = resolve_model(model)

    token_ids = loaded.vocab.token_ids(adata.var_names.astype(str))
    in_vocab = np.flatnonzero(token_ids >= 0)
    if len(in_vocab) == 0:
        raise ValueError(
            f"None of the {adata.n_vars} var names is in the vocabulary of model {loaded.name!r} "
            f"(human Ensembl gene ids such as ENSG00000139618). {describe_var_names(adata)}"
        )
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    if genes is not None:
        columns = _columns_of_gene_list(adata, genes, token_ids)
        strategy = "genes"
        check_matrix_values(matrix, columns, where=where)
    else:
        check_matrix_values(matrix, in_vocab, where=where)
        columns = _highly_variable_columns(matrix, in_vocab, int(n_genes))
        strategy = "hvg"
    neighbors = spatial_knn(coordinates, int(n_neighbors)) if spatial else None

    # Everything is validated: write.
    adata = adata.copy() if copy else adata
    selected = np.zeros(adata.n_vars, dtype=bool)
    selected[columns] = True
    adata.var[_keys.VAR_TOKEN] = token_ids
    adata.var[_keys.VAR_SELECTED] = selected
    if neighbors is not None:
        adata.obsm[_keys.OBSM_NEIGHBORS] = neighbors
    else:
        adata.obsm.pop(_keys.OBSM_NEIGHBORS, None)
    write_record(
        adata,
        "tokenize",
        {
            "genes": np.asarray(adata.var_names[columns], dtype=str),
            "token_ids": token_ids[columns],
            "strategy": strategy,
            "n_genes": int(n_genes) if genes is None else len(columns),
            "layer": layer,
            "spatial": spatial,
            "n_neighbors": int(n_neighbors) if spatial else None,
            "spatial_key": spatial_key if spatial else None,
            "n_vocabulary_genes": len(in_vocab),
            "vocab_sha256": loaded.vocab.sha256(),
            **loaded.identity(),
        },
    )
    logger.info(
        "tokenize: %d of %d genes in the vocabulary, %d selected (%s); added .var[%r], .var[%r], .uns[%r][%r]%s",
        len(in_vocab), adata.n_vars, len(columns), strategy, _keys.VAR_TOKEN, _keys.VAR_SELECTED, _keys.UNS,
        "tokenize", f", .obsm[{_keys.OBSM_NEIGHBORS!r}]" if spatial else "",
    )  # fmt: skip
    return adata if copy else None


def _columns_of_gene_list(adata: AnnData, genes, token_ids: np.ndarray) -> np.ndarray:
    requested = pd.Index(np.asarray(genes, dtype=str)).drop_duplicates()
    positions = adata.var_names.get_indexer(requested)
    present = positions >= 0
    usable = present.copy()
    usable[present] = token_ids[positions[present]] >= 0
    if not usable.any():
        raise ValueError(
            f"None of the {len(requested)} requested genes is both in adata.var_names and in the model "
            f"vocabulary (requested e.g. {', '.join(requested[:3])}). {describe_var_names(adata)}"
        )
    dropped = requested[~usable]
    if len(dropped):
        warnings.warn(
            f"{len(dropped)} of {len(requested)} requested genes are not in adata.var_names or not in the "
            f"vocabulary and are left out (e.g. {', '.join(dropped[:5])}).",
            UserWarning,
            stacklevel=3,
        )
    return positions[usable]


def _highly_variable_columns(matrix, in_vocab: np.ndarray, n_genes: int) -> np.ndarray:
    """Columns of the ``n_genes`` most variable vocabulary genes (seurat_v3), in var order."""
    if len(in_vocab) <= n_genes:
        return in_vocab
    import scanpy as sc

    subset = AnnData(X=matrix[:, in_vocab])
    with warnings.catch_warnings():
        # seurat_v3 warns on non-integer data; soft ranks do not need counts, so this is advisory only.
        warnings.filterwarnings("ignore", message=".*expects raw count data.*")
        table = sc.pp.highly_variable_genes(subset, flavor="seurat_v3", n_top_genes=n_genes, inplace=False)
    return in_vocab[np.flatnonzero(table["highly_variable"].to_numpy())]
