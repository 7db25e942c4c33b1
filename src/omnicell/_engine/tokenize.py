"""The tokenisation step (`oc.pp.tokenize`): choose the genes and neighbourhoods the model will read.

It lives in the engine, below `train` and the tools, because every pass over cells starts from it:
`pp` re-exports it, `train` tokenises its training files with it, and tools that read cells through
the model run it with its defaults when the user did not.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from omnicell._core import keys
from omnicell._core.adata import copy_target, expression_source, finish, resolve_modality
from omnicell._core.checks import (
    check_coordinates,
    check_count,
    check_libraries,
    check_number,
    check_unique_obs_names,
    check_unique_var_names,
    describe_var_names,
    read_graph,
)
from omnicell._core.docs import doc_params
from omnicell._core.progress import progress as track_progress
from omnicell._core.provenance import obs_names_fingerprint, write_record
from omnicell._core.tokenize_record import TokenizeRecord
from omnicell.data import (
    check_matrix_values,
    graph_neighbors,
    highly_variable_scores,
    spatial_knn,
    top_variable,
    vocabulary_token_ids,
)
from omnicell.models import OmniCellModel, resolve_model

if TYPE_CHECKING:
    from mudata import MuData

__all__ = ["tokenize"]

logger = logging.getLogger("omnicell")

#: ``obs`` columns holding each cell's count total (scanpy's ``calculate_qc_metrics``, 10x/Seurat-era files).
TOTALS_KEYS = ("n_counts", "total_counts", "nCount_RNA")


@doc_params
def tokenize(
    adata: AnnData | MuData,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    genes: list[str] | np.ndarray | pd.Index | None = None,
    n_genes: int | None = None,
    strategy: Literal["hvg", "expressed"] | None = None,
    layer: str | None = None,
    use_raw: bool = False,
    gene_key: str | None = None,
    species: Literal["auto", "human", "mouse"] = "auto",
    spatial: bool = False,
    n_neighbors: int | None = None,
    spatial_key: str = keys.SPATIAL,
    neighbors_key: str | None = None,
    library_key: str | None = None,
    coord_scale: float | None = None,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Choose the genes each cell is read with and, in spatial mode, each cell's neighbours.

    Gene names are matched to the model's vocabulary first (:func:`omnicell.pp.map_genes`:
    Ensembl ids with or without version, human symbols, mouse genes through one-to-one
    orthologs). Token arrays themselves are built per batch by :func:`omnicell.tl.embed_cells`.

    Parameters
    ----------
    adata
        Cells x genes with non-negative expression (counts, or any per-cell monotone
        normalisation: the model sees soft ranks). Backed AnnData works and is read in chunks.
        A MuData is read through its modality ``mod``.
    model
        Model whose vocabulary is used: an :class:`~omnicell.models.OmniCellModel`, a registry name
        or a folder; None uses ``oc.settings.default_model``.
    genes
        Ordered gene list (var names). With ``strategy="hvg"`` every cell is read with these
        genes, in this order; with ``strategy="expressed"`` they are the candidates and their order
        decides which unexpressed genes fill a cell. Genes not in ``var_names`` or not in the
        vocabulary are dropped with a warning. None: chosen by highly variable genes.
    n_genes
        Genes per cell. With ``genes=None`` the ``n_genes`` most highly variable vocabulary genes
        (scanpy's ``seurat_v3`` score, computed in chunks) are used. On log-normalised values the counts
        are recovered where ``obs['n_counts']`` (or ``total_counts``) allow, so the genes are those of
        the counts; else scanpy's ``seurat`` flavour for log data chooses them; other non-integer values,
        or too few varying genes, rank genes by variance; each with a warning. None: the model's value
        (``model.tokenization``; 2,000 for the released checkpoints).
    strategy
        ``"hvg"`` (released code): every cell is read with the same gene list, zeros included.
        ``"expressed"`` (paper): each cell's expressed genes first, by descending value, then its
        unexpressed genes among the most highly variable ones, up to ``n_genes`` per cell.
        None: the one the model was trained with (``"hvg"`` for the released checkpoints).
    layer
        Layer with the expression values; None uses ``.X`` (or ``.raw.X``). ``seurat_v3`` expects counts.
    use_raw
        Read ``adata.raw`` (its matrix and var names) instead of ``.X``.
    gene_key
        ``var`` column with the gene identifiers to match; None uses ``var_names``.
    species
        Species of the gene identifiers for the mapping; ``"auto"`` detects it.
    spatial
        Also record each cell's ``n_neighbors`` nearest other cells.
    n_neighbors
        Neighbours per cell in spatial mode; None: the model's value (the released model used 9). Cells with fewer
        available neighbours (a small section, a sparse graph) get -1 entries; those window
        blocks are padding and left out of the niche mean.
    spatial_key
        ``obsm`` key of the (x, y) coordinates, in the raw units the model was trained with.
    neighbors_key
        Take neighbours from a squidpy spatial graph instead of a k-nearest search: an ``obsp``
        key (``'spatial_connectivities'``) or the ``uns`` key squidpy writes (``'spatial_neighbors'``),
        e.g. after ``sq.gr.spatial_neighbors_knn``, ``_radius`` or ``_delaunay``. Graph neighbours
        are ordered by distance, nearest first.
    library_key
        ``obs`` column naming the section of each cell; neighbourhoods never cross sections.
    coord_scale
        Factor applied to the coordinates before they reach the rotary encoding (for data in
        other units than the model's training data). Neighbour search is unaffected. None: the
        factor that makes the data's median nearest-neighbour distance equal to the model's
        (``model.tokenization.spatial.neighbor_distance``), or 1 when the model does not record one
        (the released checkpoints, which saw raw coordinates). The choice is recorded and logged.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes (into the modality for MuData)

    ``adata.var['omnicell_gene_id']``
        Vocabulary gene id matched to each gene (empty where none).
    ``adata.var['omnicell_token']``
        Token id of each gene, -1 outside the vocabulary.
    ``adata.var['omnicell_selected']``
        Whether the gene can appear in a cell's sequence.
    ``adata.uns['omnicell']['tokenize']``
        Strategy, the candidate ``genes`` and their ``token_ids`` (and ``zero_fill`` order for
        ``"expressed"``), parameters (``from_model`` lists those taken from the model; in spatial
        mode ``data_neighbor_distance``, ``model_neighbor_distance`` and ``obs_names_sha256``, the
        fingerprint of the cell order the neighbours refer to), ``hvg_flavor``, mapping counts and
        the model identity.
    ``adata.uns['omnicell']['map_genes']``
        Mapping counts and source (see :func:`omnicell.pp.map_genes`).
    ``adata.obsm['omnicell_neighbors']``
        (spatial) (n_obs, n_neighbors) indices of the nearest other cells, nearest first, -1 if missing.
    """
    container, adata = resolve_modality(adata, mod, "tokenize")
    if strategy is not None and strategy not in ("hvg", "expressed"):
        raise ValueError(f"strategy must be 'hvg' (released code) or 'expressed' (paper), got {strategy!r}.")
    check_count(n_genes, "n_genes", allow_none=True)
    if not isinstance(spatial, bool):
        raise TypeError(f"spatial must be True or False, got {spatial!r}.")
    check_number(coord_scale, "coord_scale", positive=True, allow_none=True)
    if spatial:
        check_count(n_neighbors, "n_neighbors", allow_none=True)
    matrix, var, where = expression_source(adata, layer=layer, use_raw=use_raw)
    check_unique_var_names(var.index, "adata.raw.var_names" if use_raw else "adata.var_names")
    loaded = resolve_model(model)
    # Unset options come from how the model was trained to read cells (model.tokenization).
    defaults = loaded.tokenization
    section = defaults.spatial if spatial and defaults.spatial is not None else defaults.single_cell
    from_model = [name for name, value in (("strategy", strategy), ("n_genes", n_genes)) if value is None]
    strategy = section.strategy if strategy is None else strategy
    n_genes = section.n_genes if n_genes is None else int(n_genes)
    neighbors = scaling = None
    if spatial:
        if n_neighbors is None:
            from_model.append("n_neighbors")
            n_neighbors = defaults.spatial.n_neighbors if defaults.spatial is not None else 9
        n_neighbors = int(n_neighbors)
        neighbors = _spatial_neighbors(adata, spatial_key, n_neighbors, neighbors_key, library_key)
        scaling = _coordinate_scale(adata, spatial_key, library_key, coord_scale, defaults)
        coord_scale = scaling["coord_scale"]
    coord_scale = 1.0 if coord_scale is None else float(coord_scale)
    mapping = vocabulary_token_ids(var, loaded.vocab, gene_key=gene_key, species=species)
    token_ids = mapping.token_ids
    in_vocab = np.flatnonzero(token_ids >= 0)
    if len(in_vocab) == 0:
        raise ValueError(
            f"None of the {len(var)} genes matched the vocabulary of model {loaded.name!r} "
            f"(human Ensembl gene ids such as ENSG00000139618; symbols and mouse genes are mapped). "
            f"{describe_var_names(var)}"
        )

    hvg_flavor = None
    if genes is not None or len(in_vocab) <= int(n_genes):
        # A given list, or too few vocabulary genes to choose from: use them all, in order.
        candidates = in_vocab if genes is None else _columns_of_gene_list(var.index, genes, token_ids)
        check_matrix_values(matrix, candidates, where=where)
        zero_fill = np.arange(len(candidates)) if strategy == "expressed" else None
    else:
        with track_progress(
            total=2 * matrix.shape[0], unit="cells", desc="tokenize (gene variance)", disable=matrix.shape[0] < 50_000
        ) as bar:
            scores, hvg_flavor = highly_variable_scores(
                matrix, in_vocab, where=where, progress=bar.update, **_normalisation_hints(adata)
            )
        ranked = top_variable(scores, int(n_genes))
        if strategy == "hvg":
            candidates, zero_fill = np.sort(in_vocab[ranked]), None  # var order, as the released code
        else:
            candidates, zero_fill = in_vocab, ranked  # any vocabulary gene may be expressed

    # Everything is validated: write.
    if copy:
        container, adata = copy_target(container, adata, mod)
    selected = np.zeros(len(var), dtype=bool)
    selected[candidates] = True
    _write_var(adata, var, keys.VAR_GENE_ID, mapping.gene_ids, use_raw=use_raw, missing="")
    _write_var(adata, var, keys.VAR_TOKEN, token_ids, use_raw=use_raw, missing=-1)
    _write_var(adata, var, keys.VAR_SELECTED, selected, use_raw=use_raw, missing=False)
    if neighbors is not None:
        adata.obsm[keys.OBSM_NEIGHBORS] = neighbors
    else:
        adata.obsm.pop(keys.OBSM_NEIGHBORS, None)
    write_record(adata, "map_genes", mapping.record)
    TokenizeRecord.from_mapping(
        {
            "strategy": strategy,
            "genes": np.asarray(var.index[candidates], dtype=str),
            "token_ids": token_ids[candidates],
            "zero_fill": zero_fill,
            "n_genes": int(n_genes) if strategy == "expressed" or genes is None else len(candidates),
            "gene_list_given": genes is not None,
            "hvg_flavor": hvg_flavor,
            "layer": layer,
            "use_raw": use_raw,
            "spatial": spatial,
            "n_neighbors": int(n_neighbors) if spatial else None,
            "spatial_key": spatial_key if spatial else None,
            "obs_names_sha256": obs_names_fingerprint(adata.obs_names) if spatial else None,
            "neighbors_key": neighbors_key,
            "library_key": library_key,
            "coord_scale": float(coord_scale),
            **(scaling or {}),
            "from_model": np.asarray(
                from_model + (["coord_scale"] if scaling and scaling["scaled_from_model"] else []), dtype=str
            ),
            "tokenization_source": defaults.source,
            "n_vocabulary_genes": len(in_vocab),
            "vocab_sha256": loaded.vocab.sha256(),
            **loaded.identity(),
        },
        strict=False,  # a key not declared in TokenizeRecord is kept (tests/test_tokenization_record.py flags it)
    ).write(adata)
    if from_model or (scaling and scaling["scaled_from_model"]):
        logger.info(
            "tokenize: from model %r (%s): strategy=%r, n_genes=%d%s",
            loaded.name, defaults.source, strategy, n_genes,
            f", n_neighbors={n_neighbors}, coord_scale={coord_scale:.4g}" if spatial else "",
        )  # fmt: skip
    logger.info(
        "tokenize: %d of %d genes in the vocabulary, %d candidates (%s); added .var[%r], .uns[%r][%r]%s",
        len(in_vocab), len(var), len(candidates), strategy, keys.VAR_TOKEN, keys.UNS, "tokenize",
        f", .obsm[{keys.OBSM_NEIGHBORS!r}]" if spatial else "",
    )  # fmt: skip
    return finish(container, adata, copy=copy)


def _write_var(adata: AnnData, var: pd.DataFrame, key: str, values: np.ndarray, *, use_raw: bool, missing) -> None:
    """Write a per-gene column; from ``.raw``, align it to ``adata.var_names`` (``missing`` elsewhere)."""
    if not use_raw:
        adata.var[key] = values
        return
    series = pd.Series(values, index=var.index)
    adata.var[key] = series.reindex(adata.var_names, fill_value=missing).to_numpy()


def _coordinate_scale(adata: AnnData, spatial_key: str, library_key: str | None, coord_scale, defaults) -> dict:
    """The coordinate factor: the given one, or the one matching the model's nearest-neighbour distance."""
    from omnicell.data import median_neighbor_distance

    model_distance = defaults.spatial.neighbor_distance if defaults.spatial is not None else None
    data_distance = median_neighbor_distance(
        check_coordinates(adata, spatial_key), libraries=check_libraries(adata, library_key)
    )
    record = {"data_neighbor_distance": data_distance, "model_neighbor_distance": model_distance}
    if coord_scale is not None:
        return {**record, "coord_scale": float(coord_scale), "scaled_from_model": False}
    if model_distance is None:
        # The model does not say (the released checkpoints): coordinates as they are, as the released code.
        return {**record, "coord_scale": 1.0, "scaled_from_model": False}
    if not data_distance:
        warnings.warn(
            f"adata.obsm[{spatial_key!r}]: the median distance between nearest cells is 0 (many cells share their "
            "coordinates), so coordinates cannot be scaled to the model's; they are used as they are. "
            "Pass coord_scale= to choose a factor.",
            UserWarning,
            stacklevel=3,
        )
        return {**record, "coord_scale": 1.0, "scaled_from_model": False}
    return {**record, "coord_scale": model_distance / data_distance, "scaled_from_model": True}


def _normalisation_hints(adata: AnnData) -> dict:
    """What recovers counts from log-normalised values: ``uns['log1p']`` and each cell's count total."""
    totals = next((adata.obs[key] for key in TOTALS_KEYS if key in adata.obs), None)
    log1p = adata.uns.get("log1p")
    return {
        "cell_totals": None if totals is None else pd.to_numeric(totals, errors="coerce").to_numpy(dtype=np.float64),
        "log1p": dict(log1p) if isinstance(log1p, dict) else None,
    }


def _spatial_neighbors(
    adata: AnnData, spatial_key: str, n_neighbors: int, neighbors_key: str | None, library_key: str | None
) -> np.ndarray:
    # Stored neighbours are row indices: the cell names (and their order, fingerprinted in the record)
    # are what ties them to cells, so they must be unique.
    check_unique_obs_names(adata.obs_names)
    coordinates = check_coordinates(adata, spatial_key)
    libraries = check_libraries(adata, library_key)
    if neighbors_key is None:
        neighbors = spatial_knn(coordinates, int(n_neighbors), libraries=libraries)
    else:
        graph = _spatial_graph(adata, neighbors_key)
        neighbors = graph_neighbors(graph, coordinates, int(n_neighbors), libraries=libraries)
    n_short = int((neighbors < 0).any(1).sum())
    if n_short:
        warnings.warn(
            f"{n_short} cells have fewer than {n_neighbors} neighbours available; their windows are shorter "
            "(missing neighbours are padding and left out of the niche embedding).",
            UserWarning,
            stacklevel=3,
        )
    return neighbors


def _spatial_graph(adata: AnnData, neighbors_key: str):
    """The adjacency matrix named by an obsp key, squidpy's uns record or a squidpy-style prefix."""
    return read_graph(adata, neighbors_key, function="tokenize", kind="spatial")


def _columns_of_gene_list(var_names: pd.Index, genes, token_ids: np.ndarray) -> np.ndarray:
    requested = pd.Index(np.asarray(genes, dtype=str)).drop_duplicates()
    positions = var_names.get_indexer(requested)
    present = positions >= 0
    usable = present.copy()
    usable[present] = token_ids[positions[present]] >= 0
    if not usable.any():
        raise ValueError(
            f"None of the {len(requested)} requested genes is both in the var names and in the model "
            f"vocabulary (requested e.g. {', '.join(requested[:3])}; "
            f"var names e.g. {', '.join(map(str, var_names[:3]))})."
        )
    dropped = requested[~usable]
    if len(dropped):
        warnings.warn(
            f"{len(dropped)} of {len(requested)} requested genes are not in the var names or not in the "
            f"vocabulary and are left out (e.g. {', '.join(dropped[:5])}).",
            UserWarning,
            stacklevel=3,
        )
    return positions[usable]
