"""``oc.pp.map_genes``: match gene names to the model's vocabulary ids, offline."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Literal

from anndata import AnnData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.checks import check_unique_var_names
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell.data import Species, vocabulary_token_ids
from omnicell.models import OmniCellModel, resolve_model

if TYPE_CHECKING:
    from mudata import MuData

__all__ = ["map_genes"]

logger = logging.getLogger("omnicell")


@doc_params
def map_genes(
    adata: AnnData | MuData,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    species: Species = "auto",
    gene_key: str | None = None,
    source: Literal["omnicell", "official"] = "omnicell",
    official_table: str | os.PathLike | None = None,
    key_added: str = keys.VAR_GENE_ID,
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
