"""Helpers shared by the cell-level and spatial tasks: inputs, labels, kNN graphs, Leiden, label agreement.

Also what label transfer (``annotate``) and deconvolution share: the label classes and the check that query and
reference were embedded alike.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.sparse import SparseEfficiencyWarning

from omnicell._core import keys
from omnicell._core.checks import read_graph
from omnicell._core.provenance import get_record

__all__ = [
    "DEFAULT_RESOLUTIONS",
    "agreement",
    "as_categorical",
    "get_labels",
    "get_representation",
    "graph_for",
    "knn_graph",
    "label_classes",
    "leiden",
    "search_resolution",
    "store_graph",
    "warn_if_models_differ",
]

DEFAULT_RESOLUTIONS = tuple(round(0.1 * i, 1) for i in range(1, 11))
"""Leiden resolutions swept by default: 0.1, 0.2, ..., 1.0 (the paper's grid)."""


def get_representation(adata: AnnData, use_rep: str, function: str) -> np.ndarray:
    """``adata.obsm[use_rep]`` as a finite float32 (n_obs, d) array, with an error that says how to make it."""
    if use_rep not in adata.obsm:
        if use_rep.startswith(keys.EMBEDDING):
            how = _how_to_embed(adata, use_rep)
        elif use_rep.endswith(keys.NICHE_SUFFIX):
            base = use_rep[: -len(keys.NICHE_SUFFIX)]
            how = f"Make it with oc.tl.neighborhood_average(adata, use_rep={base!r}) or pass use_rep=."
        else:
            how = "Compute it first (e.g. sc.pp.pca(adata) for 'X_pca') or pass use_rep=."
        raise KeyError(
            f"{function}: no representation in adata.obsm[{use_rep!r}] (obsm keys: {list(adata.obsm) or 'none'}). {how}"
        )
    values = adata.obsm[use_rep]
    values = values.to_numpy() if isinstance(values, pd.DataFrame) else values
    values = np.asarray(values.toarray() if hasattr(values, "toarray") else values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError(f"{function}: adata.obsm[{use_rep!r}] must be an (n_obs, d) array, got shape {values.shape}.")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{function}: adata.obsm[{use_rep!r}] has NaN or infinite values in {int(bad.sum())} cells "
            "(cells missing from a MuData modality?). Subset to the cells that have a representation."
        )
    return values


def _how_to_embed(adata: AnnData, use_rep: str) -> str:
    if use_rep.endswith(keys.NICHE_SUFFIX):
        base = use_rep[: -len(keys.NICHE_SUFFIX)]
        record = get_record(adata, "embed_cells", key=base)
        ran_single_cell = base in adata.obsm or (record is not None and not bool(record.get("spatial", False)))
        prefix = (
            f"adata.obsm[{base!r}] exists but embed_cells ran in single-cell mode, which makes no niche embedding. "
            if ran_single_cell
            else ""
        )
        return (
            prefix + "Niche embeddings come from spatial mode: oc.pp.tokenize(adata, model, spatial=True), then "
            "oc.tl.embed_cells(adata, model). Or pass use_rep= another representation, e.g. the neighbourhood "
            "average of oc.tl.neighborhood_average(adata, use_rep='X_pca')."
        )
    return "Run oc.tl.embed_cells(adata, model) first, or pass use_rep= another obsm key (e.g. 'X_pca')."


def get_labels(adata: AnnData, label_key: str, function: str, *, min_groups: int = 2) -> pd.Series:
    """``adata.obs[label_key]`` as strings (NaN kept), with clear errors."""
    if label_key not in adata.obs:
        raise KeyError(
            f"{function}: label_key {label_key!r} is not an obs column; available: {list(adata.obs.columns)}."
        )
    column = adata.obs[label_key]
    labels = column.astype(object).where(column.notna(), None)
    labels = pd.Series([None if v is None else str(v) for v in labels], index=adata.obs_names, dtype=object)
    n_groups = labels.dropna().nunique()
    if n_groups < min_groups:
        raise ValueError(
            f"{function}: obs[{label_key!r}] has {n_groups} distinct labels; at least {min_groups} are needed."
        )
    return labels


def knn_graph(representation: np.ndarray, *, n_neighbors: int, metric: str, seed: int, return_distances: bool = False):
    """The kNN graph (UMAP connectivities) of ``representation``, as ``sc.pp.neighbors`` builds it.

    With ``return_distances``, ``(connectivities, distances)``.
    """
    import scanpy as sc

    if not 2 <= n_neighbors < representation.shape[0]:
        raise ValueError(f"n_neighbors must lie in [2, n_obs - 1 = {representation.shape[0] - 1}], got {n_neighbors}.")
    holder = AnnData(obs=pd.DataFrame(index=np.arange(representation.shape[0]).astype(str)))
    holder.obsm["X_rep"] = representation
    with warnings.catch_warnings():
        # scanpy's exact search sets the diagonal of a CSR matrix, which scipy reports when points coincide
        warnings.filterwarnings("ignore", category=SparseEfficiencyWarning)
        sc.pp.neighbors(holder, use_rep="X_rep", n_neighbors=n_neighbors, metric=metric, random_state=seed)
    if return_distances:
        return holder.obsp["connectivities"], holder.obsp["distances"]
    return holder.obsp["connectivities"]


def graph_for(
    adata: AnnData,
    representation: np.ndarray,
    *,
    neighbors_key: str | None,
    n_neighbors: int,
    metric: str,
    seed: int,
    function: str,
):
    """``(connectivities, built)``: the graph named by ``neighbors_key``, or a new one (``built`` holds it).

    ``built`` is None when the graph was reused, else ``(connectivities, distances)`` to store with
    :func:`store_graph` once everything is validated.
    """
    if neighbors_key is not None:
        return read_graph(adata, neighbors_key, function=function), None
    connectivities, distances = knn_graph(
        representation, n_neighbors=n_neighbors, metric=metric, seed=seed, return_distances=True
    )
    return connectivities, (connectivities, distances)


def store_graph(adata: AnnData, graph_key: str, built, params: dict) -> None:
    """Store a graph as ``sc.pp.neighbors(key_added=graph_key)`` does (reusable with ``neighbors_key=graph_key``).

    Writes ``obsp[graph_key + '_connectivities']``, ``obsp[graph_key + '_distances']`` and ``uns[graph_key]``.
    """
    connectivities, distances = built
    adata.obsp[f"{graph_key}_connectivities"] = connectivities
    adata.obsp[f"{graph_key}_distances"] = distances
    adata.uns[graph_key] = {
        "connectivities_key": f"{graph_key}_connectivities",
        "distances_key": f"{graph_key}_distances",
        "params": {"method": "umap", **params},
    }


def leiden(connectivities, *, resolution: float, seed: int) -> np.ndarray:
    """Leiden clusters (igraph, 2 iterations, undirected) as int codes numbered by decreasing size."""
    import scanpy as sc

    holder = AnnData(obs=pd.DataFrame(index=np.arange(connectivities.shape[0]).astype(str)))
    sc.tl.leiden(
        holder, resolution=float(resolution), adjacency=connectivities, flavor="igraph", n_iterations=2,
        directed=False, random_state=seed,
    )  # fmt: skip
    codes = holder.obs["leiden"].cat.codes.to_numpy().astype(np.int64)
    sizes = np.bincount(codes)
    rank = np.empty_like(sizes)
    rank[np.lexsort((np.arange(len(sizes)), -sizes))] = np.arange(len(sizes))
    return rank[codes]


def as_categorical(codes: np.ndarray, index: pd.Index) -> pd.Series:
    """Cluster codes as a categorical of '0', '1', ... (scanpy's labels)."""
    n = int(codes.max()) + 1 if codes.size else 0
    categories = [str(i) for i in range(n)]
    return pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=index)


def agreement(labels: pd.Series, codes: np.ndarray) -> tuple[float, float]:
    """(ARI, NMI) of clusters against labels, over the labelled cells."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    known = labels.notna().to_numpy()
    truth = labels.to_numpy()[known].astype(str)
    return float(adjusted_rand_score(truth, codes[known])), float(normalized_mutual_info_score(truth, codes[known]))


def search_resolution(
    connectivities, n_clusters: int, *, seed: int, max_steps: int = 30, start: float = 1.0
) -> tuple[float, np.ndarray, list[tuple[float, int]]]:
    """Bisect the Leiden resolution until it gives ``n_clusters`` clusters.

    The upper end starts at ``start`` and doubles until it gives at least ``n_clusters``; then
    the interval is halved. Returns the resolution, its clusters (the closest count found, the
    smaller resolution on ties, when no resolution hits the count exactly) and every
    ``(resolution, count)`` tried.
    """
    tried: dict[float, np.ndarray] = {}

    def count(resolution: float) -> int:
        if resolution not in tried:
            tried[resolution] = leiden(connectivities, resolution=resolution, seed=seed)
        return int(tried[resolution].max()) + 1

    low, high = 0.0, float(start)
    steps = 0
    while count(high) < n_clusters and steps < max_steps:
        low, high = high, high * 2.0
        steps += 1
    while count(high) != n_clusters and steps < max_steps:
        middle = (low + high) / 2.0
        found = count(middle)
        steps += 1
        if found == n_clusters:
            high = middle
            break
        if found < n_clusters:
            low = middle
        else:
            high = middle
    best = min(tried, key=lambda r: (abs(count(r) - n_clusters), r))
    return best, tried[best], [(r, count(r)) for r in tried]


def label_classes(column: pd.Series, labelled: pd.Series) -> list[str]:
    """Label names in the column's category order (categorical) or sorted, only those present."""
    present = set(labelled)
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories if str(c) in present]
    return sorted(present)


def warn_if_models_differ(adata: AnnData, reference: AnnData, use_rep: str) -> None:
    """Warn when the query and the reference embeddings come from different models, projections or genes read."""
    base = use_rep.removesuffix(keys.NICHE_SUFFIX)  # the embedding's own record, also after several runs
    # the embedding's own record where there is one, else the latest embed_cells record
    query_record = get_record(adata, "embed_cells", key=base) or get_record(adata, "embed_cells")
    reference_record = get_record(reference, "embed_cells", key=base) or get_record(reference, "embed_cells")
    if query_record is None or reference_record is None:
        return
    fields = ("model_sha256", "projection")
    differ = [f for f in fields if str(query_record.get(f)) != str(reference_record.get(f))]
    if differ:
        warnings.warn(
            f"The query and the reference were embedded with different {' and '.join(differ)}; their embeddings "
            "are not comparable. Embed both with the same model and settings.",
            UserWarning,
            stacklevel=3,
        )
    query_genes, reference_genes = _read_genes(adata), _read_genes(reference)
    # A query read with the reference's genes may lack some of them (absent from its var): that is as close as it gets.
    if (
        query_genes is not None
        and reference_genes is not None
        and not (query_genes <= reference_genes or reference_genes <= query_genes)
    ):
        # Each data set's own variable genes give embeddings of different inputs: measured on pbmc68k as reference
        # and the CITE-seq PBMCs as query, 74% of the query was called unknown, 16% with the reference's genes.
        warnings.warn(
            f"The query and the reference were read with different genes ({len(query_genes & reference_genes)} in "
            f"common of {len(query_genes)} and {len(reference_genes)}); their embeddings are not comparable. Tokenise "
            "the query with the reference's genes (its uns['omnicell']['tokenize']['genes']) and embed it again: in "
            "Python oc.pp.tokenize(query, model, genes=reference.uns['omnicell']['tokenize']['genes']); on the "
            "command line omnicell embed QUERY.h5ad --genes FILE, with those genes one per line.",
            UserWarning,
            stacklevel=3,
        )


def _read_genes(adata: AnnData) -> frozenset[str] | None:
    """The genes every cell was read with (``"hvg"`` tokenisation), or None (not recorded, or chosen per cell)."""
    record = get_record(adata, "tokenize")
    if record is None or record.get("strategy") != "hvg" or record.get("genes") is None:
        return None
    return frozenset(np.asarray(record["genes"]).astype(str))
