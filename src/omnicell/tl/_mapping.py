"""``oc.tl.map_query``: reference mapping with calibrated probabilities, conformal label sets and an unknown call."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.checks import check_count, check_key_added, resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell.data import ReferenceIndex, is_index_folder, is_index_tar
from omnicell.models import resolve_device
from omnicell.tl._cell_tasks import get_representation, label_classes, warn_if_models_differ
from omnicell.tl._classifier import DEFAULT_HIDDEN, check_training
from omnicell.tl._conformal import DEFAULT_BATCH, UNKNOWN, check_alpha, plan_transfer, summarise, transfer, write_calls

__all__ = ["map_query"]

logger = logging.getLogger("omnicell")


def _labels(column: pd.Series, label_key: str, function: str) -> tuple[np.ndarray, list[str]]:
    """Label codes of the reference rows (-1 unlabelled) and the label names, with clear errors."""
    text = pd.Series([None if pd.isna(v) else str(v) for v in column.astype(object)], index=column.index, dtype=object)
    known = text.notna()
    if known.sum() == 0:
        raise ValueError(
            f"{function}: obs[{label_key!r}] of the reference has no labels (all NaN); pass the column with the "
            "reference's cell types."
        )
    classes = label_classes(column, text[known])
    if len(classes) < 2:
        raise ValueError(f"{function}: obs[{label_key!r}] has {len(classes)} distinct label; at least 2 are needed.")
    if UNKNOWN in classes:
        raise ValueError(
            f"{function}: the reference has a label {UNKNOWN!r}, the name of the unknown call; rename it first "
            f"(e.g. reference.obs[{label_key!r}] = reference.obs[{label_key!r}].cat.rename_categories(...))."
        )
    codes = pd.Categorical(text, categories=classes).codes.astype(np.int64)
    return codes, classes


def _reference_hash(embeddings: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of a reference's float32 embeddings and its labels, in order."""
    digest = hashlib.sha256(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes())
    digest.update("\0".join(map(str, labels)).encode("utf-8"))
    return digest.hexdigest()


def _open_reference(
    reference: AnnData | ReferenceIndex | str | os.PathLike, label_key: str, rep: str, method: str, seed: int
) -> tuple[ReferenceIndex, pd.Series, str, AnnData | None]:
    """``(index, label column by row, reference hash, the AnnData or None)`` of any accepted reference."""
    if isinstance(reference, str | os.PathLike):
        path = Path(reference)
        if not path.exists():
            raise FileNotFoundError(
                f"map_query: the reference {path} does not exist; give an AnnData, an .h5ad file or an index folder "
                "written by oc.tl.build_index."
            )
        if is_index_folder(path) or is_index_tar(path):
            reference = ReferenceIndex.load(path)
        elif path.suffix == ".h5ad" and path.is_file():
            import anndata as ad

            reference = ad.read_h5ad(path)
        else:
            raise ValueError(
                f"map_query: the reference {path} is neither an .h5ad file nor an index (no manifest.json); build "
                "an index with oc.tl.build_index(reference, path) or `omnicell index`."
            )
    if isinstance(reference, ReferenceIndex):
        if method != "knn":
            raise ValueError(
                f"map_query: method={method!r} trains on the reference's embeddings, which a search index does not "
                "hand out in bulk; use method='knn' with an index, or pass the reference AnnData."
            )
        if label_key not in reference.obs:
            raise KeyError(
                f"map_query: label_key {label_key!r} is not among the index's obs columns ({list(reference.obs)}); "
                f"rebuild it with oc.tl.build_index(..., obs_keys=[{label_key!r}, ...])."
            )
        return reference, reference.obs[label_key], reference.sha256, None
    if not isinstance(reference, AnnData):
        raise TypeError(
            "map_query: reference must be an AnnData, a ReferenceIndex or the path of an .h5ad file or index "
            f"folder, got {type(reference).__name__}."
        )
    if label_key not in reference.obs:
        raise KeyError(
            f"map_query: label_key {label_key!r} is not an obs column of the reference; available: "
            f"{list(reference.obs.columns)}."
        )
    embeddings = get_representation(reference, rep, "map_query (reference)")
    column = reference.obs[label_key]
    _labels(column, label_key, "map_query")  # before indexing: an unlabelled reference has nothing to index
    labelled = column.notna().to_numpy()
    index = ReferenceIndex.build(
        embeddings[labelled], reference.obs.loc[labelled, [label_key]], method="auto", random_state=seed
    )
    digest = _reference_hash(embeddings[labelled], column[labelled].astype(str).to_numpy())
    return index, column[labelled], digest, reference


def _query_labels(adata: AnnData, query_label_key: str | None) -> pd.Series | None:
    if query_label_key is None:
        return None
    if query_label_key not in adata.obs:
        raise KeyError(
            f"map_query: query_label_key {query_label_key!r} is not an obs column of the query; available: "
            f"{list(adata.obs.columns)}."
        )
    column = adata.obs[query_label_key]
    return pd.Series([None if pd.isna(v) else str(v) for v in column.astype(object)], index=adata.obs_names)


@doc_params
def map_query(
    adata: AnnData | MuData,
    reference: AnnData | ReferenceIndex | str | os.PathLike,
    label_key: str,
    *,
    use_rep: str = keys.EMBEDDING,
    reference_rep: str | None = None,
    method: Literal["knn", "mlp"] = "knn",
    alpha: float = 0.1,
    unknown_alpha: float | None = None,
    k: int = 15,
    folds: int = 5,
    max_calibration_cells: int = 20000,
    query_label_key: str | None = None,
    mlp_kwds: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    random_state: int | None = 0,
    device: str | torch.device | None = None,
    key_added: str = "omnicell",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Map query cells onto a labelled reference: calibrated labels, conformal label sets and an unknown call.

    The labelled reference cells are dealt to ``folds`` stratified folds (seeded). Each fold model
    sees the other folds only: with ``method="knn"`` a cell's ``k`` nearest labelled reference cells
    outside the fold vote, weighted by ``exp(-(d / d_k)^2)`` and smoothed by 0.1 pseudo-votes per
    label; with ``method="mlp"`` the paper's classifier (:func:`omnicell.tl.annotate`) is trained
    on them. Every reference cell (at most ``max_calibration_cells`` of them, a seeded sample) is
    scored by the model that did not see it, and on those held-out scores

    * a temperature is fitted to the log-probabilities by negative log-likelihood (one parameter, a
      proper scoring rule: it calibrates without changing the ranking of the labels);
    * the split-conformal threshold ``q`` is the ``ceil((n + 1)(1 - alpha))``-th smallest of
      ``1 - p(true label)``; a cell's label set holds every label with ``1 - p(label) <= q``, so it
      contains the true label with probability at least ``1 - alpha`` for cells exchangeable with
      the reference;
    * the novelty statistic, the mean distance to the ``k`` nearest reference cells outside the
      fold, gives each query cell a conformal p-value against the reference cells' own.

    Query cells are scored by all fold models (probabilities and novelty statistic averaged), so
    their scores are like the held-out ones. A cell is ``"unknown"`` when its novelty p-value is
    below ``unknown_alpha`` or its label set is empty.

    Parameters
    ----------
    adata
        Query cells with a representation in ``obsm[use_rep]``.
    reference
        Labelled reference: an AnnData with ``obsm[reference_rep]`` and ``obs[label_key]`` (cells
        without a label are left out), a :class:`~omnicell.data.ReferenceIndex` holding
        ``label_key`` among its obs columns (``method="knn"`` only), or the path of an ``.h5ad``
        file or an index folder (:func:`omnicell.tl.build_index`).
    label_key
        ``obs`` column of the reference with the cell types.
    use_rep
        ``obsm`` key of the query's representation.
    reference_rep
        ``obsm`` key of the reference's representation (None: ``use_rep``), e.g.
        ``'X_omnicell'`` for a reference of dissociated cells and ``use_rep='X_omnicell_niche'``
        for a spatial query; the two must have the same width.
    method
        ``"knn"``: distance-weighted votes of the nearest reference cells; ``"mlp"``: the paper's
        classifier, one per fold.
    alpha
        Miscoverage of the label sets: they contain the true label of at least ``1 - alpha`` of
        the cells like the reference's.
    unknown_alpha
        Level of the novelty test: a cell whose novelty p-value is below it is called unknown
        (about this share of cells like the reference's are); None uses ``alpha``.
    k
        Reference neighbours per fold model (votes and novelty statistic).
    folds
        Folds of the cross-fitting (at least 2).
    max_calibration_cells
        Reference cells scored for the calibration, a seeded sample when the reference is larger
        (atlas-size indexes).
    query_label_key
        ``obs`` column of the query with known labels: the coverage and accuracy reached on them
        are recorded (e.g. to measure coverage under a batch shift). None: none recorded.
    mlp_kwds
        Settings of the classifiers of ``method="mlp"``, a dict with any of the keys hidden_sizes,
        epochs, lr, weight_decay and batch_size of :func:`omnicell.tl.annotate` (whose defaults
        apply), e.g. ``{"epochs": 40}``.
    batch_size
        Query cells searched and scored at a time (None: 16384). Results do not depend on it.
    random_state
        Seed of the folds, the calibration sample and the classifiers; None uses ``oc.settings.seed``.
    device
        Where the classifiers of ``method="mlp"`` train; None uses ``oc.settings.device``.
    key_added
        Prefix of the slots written.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.obs[key_added + '_label']``
        Categorical: the most probable label, or ``"unknown"`` (the last category).
    ``adata.obs[key_added + '_confidence']``
        Calibrated probability of the most probable label (also for unknown cells).
    ``adata.obs[key_added + '_label_set']``
        The conformal label set, labels joined by ``"|"`` (empty string: empty set).
    ``adata.obs[key_added + '_unknown']``
        Bool: novelty p-value below ``unknown_alpha`` or empty label set.
    ``adata.obs[key_added + '_novelty_pval']``
        Conformal p-value of the novelty statistic (small: unlike the reference).
    ``adata.obsm[key_added + '_probabilities']``
        DataFrame indexed like ``obs``, one column of calibrated probabilities per label.
    ``adata.uns['omnicell']['map_query']``
        Parameters, ``classes``, ``reference_sha256``, ``temperature``, ``threshold``,
        ``coverage`` (of the label sets on the calibration cells, each fold judged by a threshold
        from the other folds), ``calibration_set_size``, ``mean_set_size`` and
        ``unknown_fraction`` of the query, and with ``query_label_key`` the ``query_coverage``
        and ``query_accuracy`` reached on the query's labelled cells.
    """
    function = "map_query"
    container, adata = resolve_modality(adata, mod, function, genes=False)
    alpha = check_alpha(alpha, "alpha", function)
    unknown_alpha = alpha if unknown_alpha is None else check_alpha(unknown_alpha, "unknown_alpha", function)
    if method not in ("knn", "mlp"):
        raise ValueError(f"{function}: method must be 'knn' or 'mlp', got {method!r}.")
    k = check_count(k, "k")
    folds = check_count(folds, "folds", minimum=2)
    max_calibration_cells = check_count(max_calibration_cells, "max_calibration_cells", minimum=10)
    batch = check_count(batch_size, "batch_size", allow_none=True) or DEFAULT_BATCH
    key_added = check_key_added(key_added)
    mlp = _mlp_settings(mlp_kwds) if method == "mlp" else {}
    seed = resolve_random_state(random_state, function)
    reference_rep = use_rep if reference_rep is None else reference_rep
    query = get_representation(adata, use_rep, function)
    truth = _query_labels(adata, query_label_key)
    index, column, digest, reference_data = _open_reference(reference, label_key, reference_rep, method, seed)
    if index.dim != query.shape[1]:
        raise ValueError(
            f"{function}: the query's obsm[{use_rep!r}] has {query.shape[1]} dimensions and the reference's "
            f"{'obsm[' + repr(reference_rep) + ']' if reference_data is not None else 'index'} {index.dim}. Embed "
            "both with the same model and projection (oc.tl.embed_cells); for a spatial query against a "
            "single-cell reference pass use_rep='X_omnicell_niche', reference_rep='X_omnicell'."
        )
    if reference_data is not None:
        warn_if_models_differ(adata, reference_data, reference_rep)
    codes, classes = _labels(column, label_key, function)
    fold_of = plan_transfer(codes, k=k, folds=folds, seed=seed, function=function)

    started = time.perf_counter()
    calibration, calls, _ = transfer(
        index, codes, fold_of, classes, query, method=method, k=k, seed=seed, alpha=alpha,
        unknown_alpha=unknown_alpha, max_calibration_cells=max_calibration_cells, mlp=mlp,
        device=resolve_device(device) if method == "mlp" else torch.device("cpu"), batch_size=batch,
    )  # fmt: skip

    record = {
        "label_key": label_key,
        "use_rep": use_rep,
        "reference_rep": reference_rep,
        "method": method,
        "k": k,
        "folds": folds,
        "seed": seed,
        "key_added": key_added,
        "classes": np.asarray(classes, dtype=str),
        "reference_sha256": digest,
        "n_reference_cells": int((codes >= 0).sum()),
        **calibration.record(),
        **summarise(calls, classes, truth),
        **({"mlp": {key: list(value) if isinstance(value, tuple) else value for key, value in mlp.items()}}
           if mlp else {}),
    }  # fmt: skip
    if copy:
        container, adata = copy_target(container, adata, mod)
    write_calls(adata, calls, classes, label_key=key_added + "_label", prefix=key_added, unknown_label=True)
    write_record(adata, function, record)
    logger.info(
        "map_query: %d cells onto %d reference cells (%s, k=%d) in %.1fs: coverage %.3f on the calibration, mean "
        "set size %.2f, %.1f%% unknown; added .obs[%r]",
        adata.n_obs, record["n_reference_cells"], method, k, time.perf_counter() - started, calibration.coverage,
        record["mean_set_size"], 100 * record["unknown_fraction"], key_added + "_label",
    )  # fmt: skip
    return finish(container, adata, copy=copy)


def _mlp_settings(mlp_kwds: Mapping[str, Any] | None) -> dict[str, Any]:
    """The classifier settings of ``mlp_kwds`` with annotate's defaults, checked."""
    settings = {"hidden_sizes": DEFAULT_HIDDEN, "epochs": 20, "lr": 1e-4, "weight_decay": 0.01, "batch_size": 64}
    unknown = set(mlp_kwds or {}) - set(settings)
    if unknown:
        raise ValueError(f"map_query: mlp_kwds has unknown keys {sorted(unknown)}; allowed: {sorted(settings)}.")
    settings.update(mlp_kwds or {})
    check_training(settings["epochs"], settings["lr"], settings["batch_size"], settings["hidden_sizes"])
    settings["hidden_sizes"] = tuple(int(h) for h in settings["hidden_sizes"])
    for name in ("epochs", "batch_size"):
        settings[name] = int(settings[name])
    for name in ("lr", "weight_decay"):
        settings[name] = float(settings[name])
    return settings
