"""``oc.tl.gene_modules``: co-expression modules from dataset-level gene embeddings."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, expression_source, finish, resolve_modality
from omnicell._core.checks import check_count, check_key_added, check_number, resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell._core.tokenize_record import TokenizeRecord

__all__ = ["gene_modules", "gene_similarity"]

logger = logging.getLogger("omnicell")


def gene_similarity(
    embedding: np.ndarray, *, similarity: Literal["cosine", "gaussian"] = "cosine", power: float = 6.0
) -> np.ndarray:
    """Soft-thresholded gene-gene adjacency ``max(s, 0) ** power`` (zero diagonal) from gene embeddings.

    ``s`` is the cosine similarity, or ``exp(-d^2 / (2 sigma^2))`` of the Euclidean distance ``d``
    with ``sigma^2`` the median squared distance between genes (a Gaussian kernel).
    """
    embedding = np.asarray(embedding, dtype=np.float64)
    if similarity == "cosine":
        unit = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
        s = unit @ unit.T
    elif similarity == "gaussian":
        squared = (embedding**2).sum(1)
        d2 = np.maximum(squared[:, None] + squared[None] - 2 * embedding @ embedding.T, 0.0)
        off = d2[~np.eye(len(d2), dtype=bool)]
        sigma2 = float(np.median(off)) if off.size and np.median(off) > 0 else 1.0
        s = np.exp(-d2 / (2 * sigma2))
    else:
        raise ValueError(f"similarity must be 'cosine' or 'gaussian', got {similarity!r}.")
    adjacency = np.clip(s, 0.0, 1.0) ** float(power)
    np.fill_diagonal(adjacency, 0.0)
    return adjacency


@doc_params
def gene_modules(
    adata: AnnData | MuData,
    *,
    resolution: float = 1.0,
    method: Literal["leiden", "louvain"] = "leiden",
    similarity: Literal["cosine", "gaussian"] = "cosine",
    power: float = 6.0,
    min_size: int = 5,
    use_rep: str = keys.GENE_EMBEDDING,
    score: bool = True,
    ctrl_size: int = 50,
    layer: str | None = None,
    use_raw: bool | None = None,
    random_state: int | None = None,
    key_added: str = keys.GENE_MODULE,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Gene modules: communities of the gene-gene similarity graph of dataset-level gene embeddings.

    Genes with an embedding in ``varm[use_rep]`` (:func:`omnicell.tl.embed_genes`) are connected
    by their similarity (cosine, or a Gaussian kernel of the Euclidean distance) raised to
    ``power`` (soft thresholding, as in WGCNA: strong links kept, weak ones shrunk), and the
    weighted graph is partitioned with Leiden (leidenalg) or Louvain (igraph). Modules are
    numbered by size; each module of at least ``min_size`` genes is scored in every cell with
    scanpy's :func:`~scanpy.tl.score_genes`.

    Parameters
    ----------
    adata
        AnnData with gene embeddings in ``varm[use_rep]`` (NaN rows are left out).
    resolution
        Resolution of the community detection; higher gives more, smaller modules.
    method
        ``"leiden"`` or ``"louvain"``.
    similarity
        ``"cosine"`` or ``"gaussian"`` (Gaussian-transformed Euclidean distance, ``sigma^2`` the
        median squared distance between genes).
    power
        Soft-thresholding power applied to the similarity (negative similarities count as 0).
    min_size
        Smallest module kept; genes of smaller communities get no module (NaN).
    use_rep
        ``varm`` key of the gene embeddings.
    score
        Write per-cell module scores to ``obs``.
    ctrl_size
        Control genes per module score (see :func:`scanpy.tl.score_genes`).
    layer, use_raw
        Expression used for the scores; None uses the matrix :func:`omnicell.pp.tokenize` read.
    random_state
        Random seed of the community detection and the control genes; None uses ``oc.settings.seed``.
    key_added
        ``var`` column of the modules and prefix of the ``obs`` score columns.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.var[key_added]``
        Categorical module label ('0', '1', ... by decreasing size), NaN for genes without one.
    ``adata.obs[key_added + '_' + module]``
        (``score``) Score of each module in each cell.
    ``adata.uns['omnicell']['gene_modules']``
        Parameters, the module labels, their sizes and score columns.
    """
    container, adata = resolve_modality(adata, mod, "gene_modules")
    if use_rep not in adata.varm:
        raise KeyError(
            f"No gene embeddings in adata.varm[{use_rep!r}]; run oc.tl.embed_genes(adata) first "
            f"(varm keys: {list(adata.varm) or 'none'})."
        )
    embedding = np.asarray(adata.varm[use_rep], dtype=np.float64)
    if embedding.ndim != 2:
        raise ValueError(f"adata.varm[{use_rep!r}] must be (n_vars, dims), got shape {embedding.shape}.")
    if method not in ("leiden", "louvain"):
        raise ValueError(f"method must be 'leiden' or 'louvain', got {method!r}.")
    if similarity not in ("cosine", "gaussian"):
        raise ValueError(f"similarity must be 'cosine' or 'gaussian', got {similarity!r}.")
    check_number(resolution, "resolution", positive=True)
    check_number(power, "power", positive=True)
    check_count(min_size, "min_size")
    check_count(ctrl_size, "ctrl_size")
    check_key_added(key_added)
    rows = np.flatnonzero(np.isfinite(embedding).all(1))
    if len(rows) < 2:
        raise ValueError(f"adata.varm[{use_rep!r}] has fewer than two genes with an embedding.")
    seed = resolve_random_state(random_state, "gene_modules")
    if layer is None and use_raw is None:
        record = TokenizeRecord.read(adata)
        layer, use_raw = (record.layer, record.use_raw) if record is not None else (None, False)
    use_raw = bool(use_raw)
    if score:
        matrix, score_var, _ = expression_source(adata, layer=layer, use_raw=use_raw)  # names the layer if absent

    adjacency = gene_similarity(embedding[rows], similarity=similarity, power=power)
    communities = _communities(adjacency, method=method, resolution=float(resolution), seed=seed)
    sizes = np.bincount(communities)
    order = np.argsort(-sizes, kind="stable")
    kept = order[sizes[order] >= int(min_size)]
    rename = np.full(len(sizes), -1)
    rename[kept] = np.arange(len(kept))
    labels = [str(i) for i in range(len(kept))]
    module = np.full(adata.n_vars, -1)
    module[rows] = rename[communities]
    if not labels:
        raise ValueError(
            f"No module has at least min_size={min_size} genes ({len(rows)} genes, largest community "
            f"{int(sizes.max())}); lower min_size or resolution."
        )

    # Scores are computed on a bare AnnData over the same matrix, so an error there writes nothing.
    scores = {}
    if score:
        import scanpy as sc

        scratch = AnnData(X=matrix, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=score_var.index))
        for label in labels:
            genes = list(adata.var_names[module == int(label)])
            name = f"{key_added}_{label}"
            n_other = scratch.n_vars - len(genes)
            try:
                sc.tl.score_genes(
                    scratch, genes, score_name=name, ctrl_size=int(min(ctrl_size, max(n_other, 1))),
                    random_state=seed,
                )  # fmt: skip
            except (RuntimeError, ValueError) as error:
                raise ValueError(
                    f"Scoring module {label} with sc.tl.score_genes failed ({error}). Pass score=False to keep only "
                    "the modules, or a smaller ctrl_size."
                ) from error
            scores[name] = scratch.obs.pop(name).to_numpy()
    score_keys = list(scores)

    if copy:
        container, adata = copy_target(container, adata, mod)
    adata.var[key_added] = pd.Categorical.from_codes(module, categories=labels)
    for name, values in scores.items():
        adata.obs[name] = values
    write_record(
        adata,
        "gene_modules",
        {
            "method": method,
            "similarity": similarity,
            "power": float(power),
            "resolution": float(resolution),
            "min_size": int(min_size),
            "use_rep": use_rep,
            "seed": seed,
            "key_added": key_added,
            "modules": np.asarray(labels, dtype=str),
            "sizes": sizes[kept],
            "score_keys": np.asarray(score_keys, dtype=str),
            "n_genes": len(rows),
            "n_unassigned": int((module[rows] < 0).sum()),
            "layer": layer,
            "use_raw": use_raw,
        },
    )
    logger.info("gene_modules: %d modules of %d genes; added .var[%r]%s", len(labels), len(rows), key_added,
                f" and {len(score_keys)} .obs score columns" if score_keys else "")  # fmt: skip
    return finish(container, adata, copy=copy)


def _communities(adjacency: np.ndarray, *, method: str, resolution: float, seed: int) -> np.ndarray:
    """Community of each node of a weighted undirected graph."""
    import igraph

    upper = sp.triu(sp.csr_matrix(adjacency), k=1).tocoo()
    graph = igraph.Graph(n=adjacency.shape[0], edges=list(zip(upper.row.tolist(), upper.col.tolist(), strict=True)))
    weights = upper.data.tolist()
    if method == "leiden":
        import leidenalg

        partition = leidenalg.find_partition(
            graph, leidenalg.RBConfigurationVertexPartition, weights=weights,
            resolution_parameter=resolution, seed=seed, n_iterations=-1,
        )  # fmt: skip
        return np.asarray(partition.membership)
    # igraph's Louvain draws from Python's random module through igraph's generator hook.
    igraph.set_random_number_generator(random.Random(seed))
    try:
        clustering = graph.community_multilevel(weights=weights, resolution=resolution)
    finally:
        igraph.set_random_number_generator(random)
    return np.asarray(clustering.membership)
