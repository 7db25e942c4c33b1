"""``oc.pp.map_genes``: match gene names to the model's vocabulary ids, offline."""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._anndata_io import copy_target, finish, resolve_modality
from .._docs import doc_params
from .._provenance import write_record
from .._validate import check_unique_var_names
from ..data import Vocabulary, map_gene_names
from ..models import OmniCellModel, resolve_model

if TYPE_CHECKING:
    from mudata import MuData

__all__ = ["map_genes"]

logger = logging.getLogger("omnicell")

Species = Literal["auto", "human", "mouse"]


@dataclasses.dataclass
class VocabularyMatch:
    """Per-gene vocabulary ids and token ids, with the record written to ``uns``."""

    gene_ids: np.ndarray
    token_ids: np.ndarray
    record: dict[str, Any]


def vocabulary_token_ids(
    var: pd.DataFrame,
    vocab: Vocabulary,
    *,
    gene_key: str | None = None,
    species: Species = "auto",
    source: Literal["omnicell", "official"] = "omnicell",
    official_table: str | os.PathLike | None = None,
) -> VocabularyMatch:
    """Match the genes of ``var`` (its index or ``var[gene_key]``) to ``vocab``; warn on poor matches."""
    if gene_key is None:
        names = var.index.astype(str)
    elif gene_key in var.columns:
        names = pd.Index(var[gene_key].astype(str))
    else:
        raise KeyError(f"gene_key {gene_key!r} is not a var column; available: {list(var.columns) or 'none'}.")
    mapping = map_gene_names(names, vocab.genes, species=species, source=source, official_table=official_table)
    gene_ids = np.asarray([gene_id or "" for gene_id in mapping.ids], dtype=object)
    token_ids = vocab.token_ids(gene_ids)
    matched = int((token_ids >= 0).sum())
    how = pd.Series(mapping.how)
    record = {
        "n_genes": len(names),
        "n_matched": matched,
        "n_unmatched": len(names) - matched,
        "n_ambiguous": int((how == "ambiguous").sum()),
        "n_duplicate": int((how == "duplicate").sum()),
        "matched_by": {str(k): int(v) for k, v in how[token_ids >= 0].value_counts().items()},
        "species": mapping.species,
        "source": mapping.source,
        "gene_key": gene_key,
    }
    if 0 < matched < len(names) / 2:  # none at all is an error for the caller to raise
        unmatched = names[token_ids < 0][:5]
        warnings.warn(
            f"Only {matched} of {len(names)} genes matched the model vocabulary (species {mapping.species}); "
            f"unmatched e.g. {', '.join(unmatched)}. Check species= and gene_key=.",
            UserWarning,
            stacklevel=3,
        )
    return VocabularyMatch(gene_ids=gene_ids, token_ids=token_ids, record=record)


@doc_params
def map_genes(
    adata: AnnData | MuData,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    species: Species = "auto",
    gene_key: str | None = None,
    source: Literal["omnicell", "official"] = "omnicell",
    official_table: str | os.PathLike | None = None,
    key_added: str = _keys.VAR_GENE_ID,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Match gene names to the model's vocabulary (human Ensembl ids), offline.

    Human Ensembl ids match with or without version suffix; human symbols through current
    symbols, then previous symbols, then aliases (case-insensitive); mouse symbols or Ensembl
    ids through one-to-one human orthologs (the paper's homology projection). A symbol naming
    several genes equally well is left unmatched as ambiguous, and when several names reach the
    same gene only the first keeps it, so no gene is read twice. :func:`omnicell.pp.tokenize`
    runs this itself.

    Parameters
    ----------
    adata
        Cells x genes; a MuData is read through its modality ``mod``.
    model
        Model whose vocabulary is matched; None uses ``oc.settings.default_model``.
    species
        ``"human"``, ``"mouse"`` or ``"auto"`` (detected from the names).
    gene_key
        ``var`` column with the identifiers; None uses ``var_names``.
    source
        ``"omnicell"``: the tables shipped with omnicell (HGNC-based, with orthologs).
        ``"official"``: the official OmniCell gene table (``new_genes_homo_sapiens.csv``, human
        symbols only) for parity with the released conversion; give its path in ``official_table``.
    official_table
        Path of the official gene table, with ``source="official"``.
    key_added
        ``var`` column receiving the matched vocabulary ids.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.var[key_added]``
        The vocabulary id matched to each gene, an empty string where none.
    ``adata.uns['omnicell']['map_genes']``
        Counts (matched, unmatched, ambiguous, duplicate, how each was matched), species and source.
    """
    container, adata = resolve_modality(adata, mod, "map_genes")
    check_unique_var_names(adata.var_names)
    loaded = resolve_model(model)
    match = vocabulary_token_ids(
        adata.var, loaded.vocab, gene_key=gene_key, species=species, source=source, official_table=official_table
    )
    if copy:
        container, adata = copy_target(container, adata, mod)
    adata.var[key_added] = match.gene_ids.astype(str)
    write_record(adata, "map_genes", {**match.record, "key_added": key_added, **loaded.identity()})
    logger.info(
        "map_genes: %d of %d genes matched (%s, %s); added .var[%r]",
        match.record["n_matched"], len(match.gene_ids), match.record["species"], match.record["source"], key_added,
    )  # fmt: skip
    return finish(container, adata, copy=copy)
