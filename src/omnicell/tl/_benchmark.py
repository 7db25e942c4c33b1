"""``oc.tl.benchmark``: scib-metrics' integration benchmark of embeddings, with an exact kNN."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell._core.settings import settings
from omnicell.tl._cell_tasks import get_labels, get_representation

__all__ = ["benchmark", "exact_neighbors"]

logger = logging.getLogger("omnicell")

MAX_NEIGHBORS = 90  # scib-metrics reads 15, 50 and 90 neighbours
AGGREGATE = "Aggregate score"


def exact_neighbors(X: np.ndarray, n_neighbors: int, random_state: int = 0, n_jobs: int = 1):
    """scib-metrics ``NeighborsResults`` from an exact Euclidean search (scikit-learn), self first.

    Takes the arguments of ``scib_metrics.nearest_neighbors.pynndescent`` (``random_state`` is
    unused: the search is exact).
    """
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    search = NearestNeighbors(n_neighbors=n_neighbors, metric="euclidean", n_jobs=n_jobs).fit(X)
    distances, indices = search.kneighbors(X)
    return NeighborsResults(indices=indices, distances=distances.astype(np.float32))


@contextlib.contextmanager
def _exact_searches(*, enabled: bool):
    """Route scib-metrics' internal approximate searches (kBET's diffusion neighbours) to :func:`exact_neighbors`.

    ``scib_metrics.utils.diffusion_nn`` looks ``nearest_neighbors.pynndescent`` up at call time;
    it is swapped for the duration of the benchmark and restored after. pynndescent compiles
    with numba on first use (tens of seconds), while the exact search takes milliseconds on data
    of this size.
    """
    import scib_metrics.nearest_neighbors as neighbors_module

    scib_logger = logging.getLogger("scib_metrics")
    level = scib_logger.level
    scib_logger.setLevel(logging.WARNING)  # per-label "too small, skip" notices
    original = neighbors_module.pynndescent
    if enabled:
        neighbors_module.pynndescent = exact_neighbors
    try:
        yield
    finally:
        neighbors_module.pynndescent = original
        scib_logger.setLevel(level)


@doc_params
def benchmark(
    adata: AnnData | MuData,
    *,
    label_key: str,
    batch_key: str,
    embeddings: Sequence[str] = ("X_pca", keys.EMBEDDING),
    pre_integrated_key: str = "X_pca",
    bio_conservation: bool | Mapping[str, bool | dict] = True,
    batch_correction: bool | Mapping[str, bool | dict] = True,
    exact: bool = True,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Score embeddings for batch correction and conservation of biology with scib-metrics.

    Runs :class:`scib_metrics.benchmark.Benchmarker` (the scIB metrics the paper reports) on
    each ``obsm`` embedding, with the neighbours it needs (15, 50, 90) from an exact
    scikit-learn search instead of scib-metrics' approximate one, so small data take seconds.
    Scores are raw (not min-max scaled); ``Total`` is 0.6 x bio conservation + 0.4 x batch
    correction. Show the table with :func:`omnicell.pl.benchmark`.

    Parameters
    ----------
    adata
        AnnData with the embeddings in ``obsm`` and labels and batches in ``obs`` (more than 90 cells).
    label_key
        ``obs`` column with the cell types.
    batch_key
        ``obs`` column with the batches.
    embeddings
        ``obsm`` keys to score, e.g. ``['X_pca', 'X_omnicell']``.
    pre_integrated_key
        ``obsm`` key of an unintegrated embedding (PCA of normalised, log-transformed
        expression) for scib's principal-component regression comparison.
    bio_conservation
        Compute the bio-conservation metrics (isolated labels, KMeans NMI/ARI, label
        silhouette, cLISI); a mapping switches single metrics or gives their arguments, as
        :class:`scib_metrics.benchmark.BioConservation` takes them
        (``{'nmi_ari_cluster_labels_leiden': True}``).
    batch_correction
        Compute the batch-correction metrics (BRAS, iLISI, kBET, graph connectivity, PCR
        comparison); a mapping as for ``bio_conservation``
        (:class:`scib_metrics.benchmark.BatchCorrection`, e.g. ``{'kbet_per_label': False}``).
    exact
        Exact scikit-learn neighbour searches, also for kBET's diffusion neighbours (which
        scib-metrics otherwise finds with pynndescent, compiled on first use); False keeps
        scib-metrics' own searches.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.uns['omnicell']['benchmark']``
        Parameters, ``results`` (a DataFrame: one row per embedding, one column per metric and
        aggregate score) and ``metric_types`` (each column's type: ``'Bio conservation'``,
        ``'Batch correction'`` or ``'Aggregate score'``).
    """
    container, adata = resolve_modality(adata, mod, "benchmark")
    embeddings = [embeddings] if isinstance(embeddings, str) else list(embeddings)
    if not embeddings or len(set(embeddings)) != len(embeddings):
        raise ValueError(f"embeddings must name distinct obsm keys, got {embeddings!r}.")
    bio_metrics, batch_metrics = _metric_sets(bio_conservation, batch_correction)
    if adata.n_obs <= MAX_NEIGHBORS:
        raise ValueError(
            f"benchmark needs more than {MAX_NEIGHBORS} cells (scib-metrics uses 90 neighbours), got {adata.n_obs}."
        )
    if pre_integrated_key not in adata.obsm:
        raise KeyError(
            f"No unintegrated embedding in adata.obsm[{pre_integrated_key!r}] for the PCR comparison: run "
            "sc.pp.normalize_total, sc.pp.log1p and sc.pp.pca on a copy of the counts first, "
            "or pass pre_integrated_key=."
        )
    holder = AnnData(obs=pd.DataFrame(index=adata.obs_names.copy()))
    for key in dict.fromkeys([*embeddings, pre_integrated_key]):
        # A copy: scib-metrics may change the arrays it is given, and the caller's obsm must stay as it is.
        holder.obsm[key] = np.array(get_representation(adata, key, "benchmark"), copy=True)
    labels = get_labels(adata, label_key, "benchmark")
    batches = get_labels(adata, batch_key, "benchmark")
    if labels.isna().any() or batches.isna().any():
        raise ValueError(
            f"benchmark: obs[{label_key!r}] or obs[{batch_key!r}] has missing values; subset to cells with both."
        )
    holder.obs["labels"] = labels.to_numpy()
    holder.obs["batch"] = batches.to_numpy()

    started = time.perf_counter()
    with _exact_searches(enabled=exact):
        results, metric_types = _run_benchmarker(
            holder, embeddings, pre_integrated_key, bio_metrics, batch_metrics, exact=exact
        )

    if copy:
        container, adata = copy_target(container, adata, mod)
    write_record(
        adata,
        "benchmark",
        {
            "label_key": label_key,
            "batch_key": batch_key,
            "embeddings": [str(e) for e in embeddings],
            "pre_integrated_key": pre_integrated_key,
            "bio_conservation": _describe(bio_metrics),
            "batch_correction": _describe(batch_metrics),
            "exact": bool(exact),
            "results": results,
            "metric_types": np.asarray(metric_types, dtype=str),
        },
    )
    logger.info(
        "benchmark: %d embeddings in %.1fs; added .uns['omnicell']['benchmark']",
        len(embeddings),
        time.perf_counter() - started,
    )
    return finish(container, adata, copy=copy)


def _import_benchmark():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ImportWarning)  # umap: no TensorFlow
        from scib_metrics import benchmark as module
    return module


def _metric_sets(bio_conservation, batch_correction):
    """scib-metrics' metric specifications (or None) from booleans or mappings, checked before any work."""
    module = _import_benchmark()
    result = []
    for name, value, cls in (
        ("bio_conservation", bio_conservation, module.BioConservation),
        ("batch_correction", batch_correction, module.BatchCorrection),
    ):
        if value is True:
            result.append(cls())
        elif value is False or value is None:
            result.append(None)
        elif isinstance(value, Mapping):
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - fields)
            if unknown:
                raise ValueError(f"{name}: unknown metrics {unknown}; choose from {sorted(fields)}.")
            spec = cls(**value)
            result.append(spec if any(v is not False for v in dataclasses.asdict(spec).values()) else None)
        else:
            raise TypeError(f"{name} must be True, False or a mapping of metric names, got {type(value).__name__}.")
    if result[0] is None and result[1] is None:
        raise ValueError("No metric left to compute: switch on bio_conservation or batch_correction metrics.")
    return result[0], result[1]


def _describe(spec) -> str:
    """The metrics a specification switches on, as text for the record."""
    if spec is None:
        return "none"
    return ", ".join(name for name, value in dataclasses.asdict(spec).items() if value is not False)


def _run_benchmarker(
    holder: AnnData, embeddings: list[str], pre_integrated_key: str, bio_metrics, batch_metrics, *, exact: bool
) -> tuple[pd.DataFrame, list[str]]:
    """(embeddings x metrics float DataFrame, the type of each column)."""
    module = _import_benchmark()
    benchmarker = module.Benchmarker(
        holder, batch_key="batch", label_key="labels", embedding_obsm_keys=embeddings,
        bio_conservation_metrics=bio_metrics, batch_correction_metrics=batch_metrics,
        pre_integrated_embedding_obsm_key=pre_integrated_key, progress_bar=settings.progress_bar,
    )  # fmt: skip
    benchmarker.prepare(neighbor_computer=exact_neighbors if exact else None)
    benchmarker.benchmark()
    table = benchmarker.get_results(min_max_scale=False)
    types = table.loc["Metric Type"].astype(str).tolist()
    results = table.drop(index="Metric Type").astype(np.float64)
    results.index = pd.Index([str(i) for i in results.index], name="embedding")
    results.columns = [str(c) for c in results.columns]
    return results, types
