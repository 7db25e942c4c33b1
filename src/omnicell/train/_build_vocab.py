"""A vocabulary for a new model: the human Ensembl ids of the genes in its training files."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from omnicell.data import SPECIAL_TOKENS, Vocabulary, human_gene_ids

__all__ = ["build_vocabulary"]

logger = logging.getLogger("omnicell")


def expressing_cells(matrix, *, chunk_size: int = 4096) -> np.ndarray:
    """Number of cells with a positive value, per column; reads ``matrix`` (backed or not) in row chunks."""
    n_obs, n_vars = matrix.shape
    counts = np.zeros(n_vars, dtype=np.int64)
    for start in range(0, n_obs, chunk_size):
        block = matrix[start : min(start + chunk_size, n_obs)]
        if hasattr(block, "compute"):  # dask (a SOMA experiment read lazily)
            block = block.compute(scheduler="synchronous")
        if sp.issparse(block) or hasattr(block, "tocsr"):
            block = sp.csr_matrix(block)
            counts += np.bincount(block.indices[block.data > 0], minlength=n_vars)
        else:
            counts += (np.asarray(block) > 0).sum(0)
    return counts


def build_vocabulary(
    files: Sequence,
    *,
    min_cells: int = 1,
    species: str = "auto",
) -> Vocabulary:
    """Vocabulary of the genes present in training files, as human Ensembl ids.

    Gene names of each file (Ensembl ids, human symbols or mouse genes) are mapped with
    :func:`omnicell.data.map_gene_names` against all human Ensembl ids; a gene enters the
    vocabulary when at least ``min_cells`` cells, summed over the files, express it. Gene tokens are
    numbered in sorted id order, followed by the special tokens.

    Parameters
    ----------
    files
        Paths or :class:`~omnicell.train.DataFileSpec` (their ``layer``, ``use_raw``, ``gene_key``
        and ``species`` are honoured).
    min_cells
        Minimum number of expressing cells.
    species
        Default species of the gene names where a file does not say (``"auto"`` detects it).
    """
    from omnicell._core.adata import expression_source
    from omnicell.data import map_gene_names
    from omnicell.train._recipe import DataFileSpec
    from omnicell.train._stream import close_training_cells, open_training_cells

    universe = human_gene_ids()
    totals: dict[str, int] = {}
    for item in files:
        spec = item if isinstance(item, DataFileSpec) else DataFileSpec(path=os.fspath(item))
        adata = open_training_cells(spec)
        try:
            matrix, var, _ = expression_source(adata, layer=spec.layer, use_raw=spec.use_raw)
            names = var.index if spec.gene_key is None else var[spec.gene_key]
            file_species = spec.species if spec.species != "auto" else species
            mapping = map_gene_names(np.asarray(names, dtype=str), universe, species=file_species)
            counts = expressing_cells(matrix)
        finally:
            close_training_cells(adata)
        matched = mapping.matched
        for gene_id, count in zip(mapping.ids[matched], counts[matched], strict=True):
            totals[gene_id] = totals.get(gene_id, 0) + int(count)
        logger.info("vocabulary: %s: %d of %d genes mapped", spec.path, int(matched.sum()), len(matched))
    genes = sorted(gene for gene, count in totals.items() if count >= int(min_cells))
    if not genes:
        raise ValueError(
            f"no gene of the training files maps to a human Ensembl id with at least {min_cells} expressing cells; "
            "check the gene names (gene_key=) and species of the files."
        )
    token_ids = {gene: index for index, gene in enumerate(genes)}
    for offset, special in enumerate(SPECIAL_TOKENS):
        token_ids[special] = len(genes) + offset
    return Vocabulary(token_ids)
