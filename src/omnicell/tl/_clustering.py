"""``oc.tl.evaluate_clustering``: Leiden over a range of resolutions, scored against known labels."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.checks import resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell.tl._cell_tasks import (
    DEFAULT_RESOLUTIONS,
    agreement,
    as_categorical,
    get_labels,
    get_representation,
    graph_for,
    leiden,
    store_graph,
)

__all__ = ["evaluate_clustering"]

logger = logging.getLogger("omnicell")

SELECT = ("ari+nmi", "ari", "nmi")


@doc_params
def evaluate_clustering(
    adata: AnnData | MuData,
    label_key: str,
    *,
    use_rep: str = keys.EMBEDDING,
    resolutions: Sequence[float] | None = None,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    neighbors_key: str | None = None,
    select: Literal["ari+nmi", "ari", "nmi"] = "ari+nmi",
    random_state: int | None = None,
    key_added: str = keys.CLUSTERS,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Cluster a representation with Leiden at several resolutions and score each against known labels.

    The paper's clustering benchmark: a kNN graph of ``obsm[use_rep]`` (scanpy's
    :func:`~scanpy.pp.neighbors`), Leiden clustering at each resolution (0.1 to 1.0 by default),
    and the Adjusted Rand Index and Normalized Mutual Information of each clustering against
    ``obs[label_key]`` (cells without a label are left out of the scores). The clusters of the
    best resolution are kept. The same is obtained by hand with
    ``sc.pp.neighbors(adata, use_rep=use_rep, n_neighbors=n_neighbors)`` and
    ``sc.tl.leiden(adata, resolution=r, flavor='igraph', n_iterations=2, random_state=seed)``.

    Parameters
    ----------
    adata
        AnnData with a representation in ``obsm[use_rep]`` (e.g. after :func:`omnicell.tl.embed_cells`).
    label_key
        ``obs`` column with the reference labels (cell types, regions).
    use_rep
        ``obsm`` key of the representation: ``'X_omnicell'``, ``'X_omnicell_niche'``, ``'X_pca'``, ...
    resolutions
        Leiden resolutions to try; default 0.1, 0.2, ..., 1.0.
    n_neighbors
        Neighbours of the kNN graph.
    metric
        Distance of the kNN search (see :func:`scanpy.pp.neighbors`).
    {doc_neighbors_key}
    select
        What the best resolution maximises: ``'ari+nmi'`` (their sum, as the paper does for
        spatial domains), ``'ari'`` or ``'nmi'``. Ties go to the smaller resolution.
    random_state
        Random seed of the graph and of Leiden; None uses ``oc.settings.seed``.
    key_added
        ``obs`` column of the best clustering.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.obsp[use_rep + '_knn_connectivities']``, ``obsp[use_rep + '_knn_distances']``, ``uns[use_rep + '_knn']``
        (without ``neighbors_key``) the kNN graph built, as ``sc.pp.neighbors(key_added=use_rep + '_knn')``.
    ``adata.obs[key_added]``
        Categorical Leiden clusters ('0', '1', ... by decreasing size) at the best resolution.
    ``adata.uns['omnicell']['evaluate_clustering']``
        Parameters, ``best_resolution``, ``ari``, ``nmi``, ``n_clusters`` of the best clustering
        and ``table``: a DataFrame with one row per resolution (``resolution``, ``n_clusters``,
        ``ari``, ``nmi``).
    """
    container, adata = resolve_modality(adata, mod, "evaluate_clustering")
    representation = get_representation(adata, use_rep, "evaluate_clustering")
    labels = get_labels(adata, label_key, "evaluate_clustering")
    resolutions = [float(r) for r in (DEFAULT_RESOLUTIONS if resolutions is None else resolutions)]
    if not resolutions or any(r <= 0 for r in resolutions):
        raise ValueError(f"resolutions must be a non-empty list of positive numbers, got {resolutions!r}.")
    if select not in SELECT:
        raise ValueError(f"select must be one of {', '.join(SELECT)}, got {select!r}.")
    seed = resolve_random_state(random_state, "evaluate_clustering")

    started = time.perf_counter()
    connectivities, built = graph_for(
        adata, representation, neighbors_key=neighbors_key, n_neighbors=int(n_neighbors), metric=metric, seed=seed,
        function="evaluate_clustering",
    )  # fmt: skip
    rows, clusterings = [], []
    for resolution in resolutions:
        codes = leiden(connectivities, resolution=resolution, seed=seed)
        ari, nmi = agreement(labels, codes)
        rows.append({"resolution": resolution, "n_clusters": int(codes.max()) + 1, "ari": ari, "nmi": nmi})
        clusterings.append(codes)
    table = pd.DataFrame(rows)
    score = table["ari"] + table["nmi"] if select == "ari+nmi" else table[select]
    best = int(np.argmax(score.to_numpy()))  # first maximum: the smaller resolution on ties

    if copy:
        container, adata = copy_target(container, adata, mod)
    if built is not None:
        store_graph(
            adata, f"{use_rep}_knn", built,
            {"n_neighbors": int(n_neighbors), "metric": metric, "use_rep": use_rep, "random_state": seed},
        )  # fmt: skip
    adata.obs[key_added] = as_categorical(clusterings[best], adata.obs_names)
    table.index = table.index.astype(str)
    write_record(
        adata,
        "evaluate_clustering",
        {
            "label_key": label_key,
            "use_rep": use_rep,
            "resolutions": resolutions,
            "n_neighbors": int(n_neighbors),
            "metric": metric,
            "neighbors_key": neighbors_key if neighbors_key is not None else f"{use_rep}_knn",
            "select": select,
            "seed": seed,
            "key_added": key_added,
            "best_resolution": float(table["resolution"].iloc[best]),
            "n_clusters": int(table["n_clusters"].iloc[best]),
            "ari": float(table["ari"].iloc[best]),
            "nmi": float(table["nmi"].iloc[best]),
            "table": table,
        },
    )
    logger.info(
        "evaluate_clustering: %s, best resolution %.2f (ARI %.3f, NMI %.3f) in %.1fs; added .obs[%r]",
        use_rep, table["resolution"].iloc[best], table["ari"].iloc[best], table["nmi"].iloc[best],
        time.perf_counter() - started, key_added,
    )  # fmt: skip
    return finish(container, adata, copy=copy)
