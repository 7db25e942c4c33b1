"""``oc.tl.spatial_domains`` (Leiden on niche embeddings) and ``oc.tl.neighborhood_average``."""

from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.checks import check_coordinates, check_libraries, resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell.data import spatial_knn
from omnicell.tl._cell_tasks import (
    as_categorical,
    get_representation,
    graph_for,
    leiden,
    search_resolution,
    store_graph,
)

__all__ = ["neighborhood_average", "spatial_domains"]

logger = logging.getLogger("omnicell")

NICHE = keys.EMBEDDING + keys.NICHE_SUFFIX


@doc_params
def spatial_domains(
    adata: AnnData | MuData,
    *,
    n_domains: int | None = None,
    resolution: float | None = None,
    use_rep: str = NICHE,
    n_neighbors: int = 15,
    metric: str = "euclidean",
    neighbors_key: str | None = None,
    max_steps: int = 30,
    random_state: int | None = None,
    key_added: str = keys.DOMAIN,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Spatial domains: Leiden clusters of the niche embeddings.

    In spatial mode :func:`omnicell.tl.embed_cells` writes ``obsm['X_omnicell_niche']``, the mean
    embedding of each cell and its spatial neighbours. A kNN graph of these (scanpy's
    :func:`~scanpy.pp.neighbors`) is clustered with Leiden, at a given ``resolution`` or, with
    ``n_domains``, at the resolution found by bisection to give that many domains. Show the
    result with squidpy: ``sq.pl.spatial_scatter(adata, color='omnicell_domain', shape=None)``.
    To score domains against an annotation over the paper's resolution grid, use
    :func:`omnicell.tl.evaluate_clustering` with ``use_rep='X_omnicell_niche'``.

    Parameters
    ----------
    adata
        AnnData after :func:`omnicell.tl.embed_cells` in spatial mode (or with any representation
        in ``obsm[use_rep]``).
    n_domains
        Number of domains wanted: the Leiden resolution is searched (the upper end doubles from
        1.0 until enough clusters appear, then the interval is halved). If no resolution gives
        exactly this number within ``max_steps``, the closest count is kept, with a warning.
    resolution
        Leiden resolution (used when ``n_domains`` is None; default 1.0). Pass one of the two.
    use_rep
        ``obsm`` key of the representation: the niche embedding by default; a neighbourhood
        average of another representation (:func:`omnicell.tl.neighborhood_average`) gives a baseline.
    n_neighbors
        Neighbours of the kNN graph in representation space.
    metric
        Distance of the kNN search (see :func:`scanpy.pp.neighbors`).
    {doc_neighbors_key}
    max_steps
        Most Leiden runs of the resolution search.
    random_state
        Random seed of the graph and of Leiden; None uses ``oc.settings.seed``.
    key_added
        ``obs`` column of the domains.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.obsp[use_rep + '_knn_connectivities']``, ``obsp[use_rep + '_knn_distances']``, ``uns[use_rep + '_knn']``
        (without ``neighbors_key``) the kNN graph built, as ``sc.pp.neighbors(key_added=use_rep + '_knn')``.
    ``adata.obs[key_added]``
        Categorical domains ('0', '1', ... by decreasing size).
    ``adata.uns['omnicell']['spatial_domains']``
        Parameters, the ``resolution`` used, the ``n_domains_found`` and, after a search, the
        resolutions tried (``search_resolutions``, ``search_n_domains``).
    """
    container, adata = resolve_modality(adata, mod, "spatial_domains")
    if n_domains is not None and resolution is not None:
        raise ValueError("Pass either n_domains (the resolution is then searched) or resolution, not both.")
    representation = get_representation(adata, use_rep, "spatial_domains")
    if n_domains is not None and not 2 <= int(n_domains) < adata.n_obs:
        raise ValueError(f"n_domains must lie in [2, n_obs - 1 = {adata.n_obs - 1}], got {n_domains}.")
    if resolution is not None and float(resolution) <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}.")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}.")
    seed = resolve_random_state(random_state, "spatial_domains")

    started = time.perf_counter()
    connectivities, built = graph_for(
        adata, representation, neighbors_key=neighbors_key, n_neighbors=int(n_neighbors), metric=metric, seed=seed,
        function="spatial_domains",
    )  # fmt: skip
    search = None
    if n_domains is None:
        resolution = 1.0 if resolution is None else float(resolution)
        codes = leiden(connectivities, resolution=resolution, seed=seed)
    else:
        resolution, codes, search = search_resolution(
            connectivities, int(n_domains), seed=seed, max_steps=int(max_steps)
        )
    found = int(codes.max()) + 1
    if n_domains is not None and found != int(n_domains):
        warnings.warn(
            f"No Leiden resolution tried gives {n_domains} domains; kept resolution {resolution:.4g} with {found}. "
            "Raise max_steps or change n_neighbors.",
            UserWarning,
            stacklevel=2,
        )

    if copy:
        container, adata = copy_target(container, adata, mod)
    if built is not None:
        store_graph(
            adata, f"{use_rep}_knn", built,
            {"n_neighbors": int(n_neighbors), "metric": metric, "use_rep": use_rep, "random_state": seed},
        )  # fmt: skip
    adata.obs[key_added] = as_categorical(codes, adata.obs_names)
    record = {
        "use_rep": use_rep,
        "n_domains": None if n_domains is None else int(n_domains),
        "resolution": float(resolution),
        "n_domains_found": found,
        "n_neighbors": int(n_neighbors),
        "metric": metric,
        "neighbors_key": neighbors_key if neighbors_key is not None else f"{use_rep}_knn",
        "seed": seed,
        "key_added": key_added,
    }
    if search is not None:
        record["search_resolutions"] = np.array([r for r, _ in search], dtype=np.float64)
        record["search_n_domains"] = np.array([n for _, n in search], dtype=np.int64)
    write_record(adata, "spatial_domains", record)
    logger.info(
        "spatial_domains: %d domains at resolution %.4g from %s in %.1fs; added .obs[%r]",
        found, resolution, use_rep, time.perf_counter() - started, key_added,
    )  # fmt: skip
    return finish(container, adata, copy=copy)


@doc_params
def neighborhood_average(
    adata: AnnData | MuData,
    *,
    use_rep: str = "X_pca",
    n_neighbors: int = 9,
    spatial_key: str = keys.SPATIAL,
    library_key: str | None = None,
    key_added: str | None = None,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Average a representation over each cell and its nearest spatial neighbours.

    The mean of ``obsm[use_rep]`` over the cell and its ``n_neighbors`` nearest other cells
    (Euclidean distance on ``obsm[spatial_key]``, within the cell's section with
    ``library_key``): the same window as OmniCell's spatial mode (9 neighbours by default), so
    ``neighborhood_average(adata, use_rep='X_pca')`` followed by
    ``spatial_domains(adata, use_rep='X_pca_niche')`` is the baseline to compare niche
    embeddings against.

    Parameters
    ----------
    adata
        AnnData with a representation in ``obsm[use_rep]`` and coordinates in ``obsm[spatial_key]``.
    use_rep
        ``obsm`` key of the representation to average (e.g. ``'X_pca'``, ``'X_omnicell'``).
    n_neighbors
        Spatial neighbours averaged with each cell.
    spatial_key
        ``obsm`` key of the coordinates.
    library_key
        ``obs`` column naming each cell's section; neighbours are searched within the section.
    key_added
        ``obsm`` key of the result; default ``use_rep + '_niche'``.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.obsm[key_added]``
        (n_obs, d) float32 neighbourhood means.
    ``adata.uns['omnicell']['neighborhood_average']``
        Parameters.
    """
    container, adata = resolve_modality(adata, mod, "neighborhood_average")
    representation = get_representation(adata, use_rep, "neighborhood_average")
    coordinates = check_coordinates(adata, spatial_key)
    if int(n_neighbors) < 1:
        raise ValueError(f"n_neighbors must be at least 1, got {n_neighbors}.")
    libraries = check_libraries(adata, library_key)
    key_added = key_added if key_added is not None else use_rep + keys.NICHE_SUFFIX
    neighbors = spatial_knn(coordinates, int(n_neighbors), libraries=libraries)
    window = np.concatenate([np.arange(adata.n_obs)[:, None], neighbors], axis=1)
    present = window >= 0
    gathered = representation[np.where(present, window, 0)] * present[..., None]
    average = (gathered.sum(axis=1) / present.sum(axis=1, keepdims=True)).astype(np.float32)

    if copy:
        container, adata = copy_target(container, adata, mod)
    adata.obsm[key_added] = average
    write_record(
        adata,
        "neighborhood_average",
        {
            "use_rep": use_rep,
            "n_neighbors": int(n_neighbors),
            "spatial_key": spatial_key,
            "library_key": library_key,
            "key_added": key_added,
        },
    )
    logger.info("neighborhood_average: added .obsm[%r]", key_added)
    return finish(container, adata, copy=copy)
