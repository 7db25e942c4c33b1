"""``oc.tl.annotate`` and ``oc.tl.cross_validate_annotation``: the paper's MLP classifier on cell embeddings."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.checks import check_count, resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell.data import ReferenceIndex
from omnicell.models import resolve_device
from omnicell.tl._cell_tasks import get_labels, get_representation, label_classes, warn_if_models_differ
from omnicell.tl._classifier import DEFAULT_HIDDEN, check_training, fit_classifier, predict_proba
from omnicell.tl._conformal import DEFAULT_BATCH, check_alpha, plan_transfer, summarise, transfer, write_calls

__all__ = ["annotate", "cross_validate_annotation"]

logger = logging.getLogger("omnicell")


@doc_params
def annotate(
    adata: AnnData | MuData,
    reference: AnnData,
    label_key: str,
    *,
    use_rep: str = keys.EMBEDDING,
    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN,
    epochs: int = 20,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    batch_size: int = 64,
    alpha: float | None = None,
    unknown_alpha: float | None = None,
    k: int = 15,
    folds: int = 5,
    random_state: int | None = None,
    device: str | torch.device | None = None,
    key_added: str = keys.LABEL,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Annotate cells with a classifier trained on a labelled reference's embeddings.

    The paper's classifier: a three-layer perceptron (``d -> hidden_sizes[0] -> hidden_sizes[1]
    -> classes``, each hidden layer followed by layer normalisation and ReLU) trained with AdamW
    (learning rate 1e-4) and cross-entropy for 20 epochs on ``reference.obsm[use_rep]`` and
    ``reference.obs[label_key]``, then applied to ``adata.obsm[use_rep]``. Embed the reference
    and the query with the same model and settings (:func:`omnicell.tl.embed_cells`); a
    different model recorded in the two is reported with a warning.

    With ``alpha`` (e.g. 0.1), the probabilities are calibrated and each cell gets a conformal
    label set and an unknown call, as :func:`omnicell.tl.map_query` with ``method="mlp"`` makes
    them: one classifier per fold of the reference (``folds``), the held-out reference cells fixing
    the temperature, the label-set threshold and the novelty null (the mean distance to the ``k``
    nearest reference cells); the query's probabilities are the fold classifiers' mean, calibrated.
    Without it (the default), the paper's single classifier is trained on the whole reference and
    its uncalibrated probabilities are written, as in the paper's benchmarks.

    Parameters
    ----------
    adata
        Query cells with a representation in ``obsm[use_rep]``.
    reference
        Labelled cells with ``obsm[use_rep]`` and ``obs[label_key]`` (cells without a label are
        left out of training). May be ``adata`` itself or a subset of it.
    label_key
        ``obs`` column of ``reference`` with the cell types.
    use_rep
        ``obsm`` key of the representation in both objects.
    hidden_sizes
        Widths of the two hidden layers.
    epochs
        Passes over the reference.
    lr
        AdamW learning rate.
    weight_decay
        AdamW weight decay.
    batch_size
        Cells per optimisation step.
    alpha
        Miscoverage of the label sets (they hold the true label of at least ``1 - alpha`` of cells
        like the reference's), e.g. 0.1; None: the paper's single uncalibrated classifier, no sets
        or unknown call.
    unknown_alpha
        Level of the novelty test of the unknown call; None uses ``alpha``.
    k
        Reference neighbours of the novelty statistic (with ``alpha``).
    folds
        Classifiers, each trained without one fold of the reference (with ``alpha``).
    random_state
        Random seed of initialisation, shuffling and folds; None uses ``oc.settings.seed``.
    device
        Where to train; None uses ``oc.settings.device``.
    key_added
        ``obs`` column of the predicted labels; probabilities go to ``obsm[key_added + '_probabilities']``.
    mod
        Modality of a MuData query.
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.obs[key_added]``
        Categorical predicted label, the most probable (categories: the reference's labels; the
        unknown call is the column below, so this column keeps its meaning).
    ``adata.obsm[key_added + '_probabilities']``
        DataFrame indexed like ``obs`` with one column of probabilities per label (calibrated with
        ``alpha``).
    ``adata.obs[key_added + '_confidence']``
        (with ``alpha``) Calibrated probability of the predicted label.
    ``adata.obs[key_added + '_label_set']``
        (with ``alpha``) The conformal label set, labels joined by ``"|"``.
    ``adata.obs[key_added + '_unknown']``
        (with ``alpha``) Bool: novelty p-value below ``unknown_alpha`` or empty label set.
    ``adata.obs[key_added + '_novelty_pval']``
        (with ``alpha``) Conformal p-value of the novelty statistic.
    ``adata.uns['omnicell']['annotate']``
        Parameters, the labels (``classes``), reference size and the final training loss (mean over
        the folds with ``alpha``); with ``alpha`` also what :func:`omnicell.tl.map_query` records of
        the calibration (``temperature``, ``threshold``, ``coverage``, ``mean_set_size`` ...).
    """
    container, adata = resolve_modality(adata, mod, "annotate", genes=False)
    if not isinstance(reference, AnnData):
        raise TypeError(f"annotate: reference must be an AnnData with labels, got {type(reference).__name__}.")
    query = get_representation(adata, use_rep, "annotate")
    features = get_representation(reference, use_rep, "annotate (reference)")
    if features.shape[1] != query.shape[1]:
        raise ValueError(
            f"annotate: obsm[{use_rep!r}] has {features.shape[1]} dimensions in the reference and {query.shape[1]} "
            "in the query. Embed both with the same model and projection (oc.tl.embed_cells)."
        )
    labels = get_labels(reference, label_key, "annotate")
    check_training(epochs, lr, batch_size, hidden_sizes)
    warn_if_models_differ(adata, reference, use_rep)
    known = labels.notna().to_numpy()
    classes = label_classes(reference.obs[label_key], labels[known])
    targets = pd.Categorical(labels[known], categories=classes).codes
    seed = resolve_random_state(random_state, "annotate")
    torch_device = resolve_device(device)
    mlp = {"hidden_sizes": tuple(int(h) for h in hidden_sizes), "epochs": int(epochs), "lr": float(lr),
           "weight_decay": float(weight_decay), "batch_size": int(batch_size)}  # fmt: skip
    if alpha is not None:
        alpha = check_alpha(alpha, "alpha", "annotate")
        unknown_alpha = alpha if unknown_alpha is None else check_alpha(unknown_alpha, "unknown_alpha", "annotate")
        k = check_count(k, "k")
        folds = check_count(folds, "folds", minimum=2)
        codes = np.asarray(targets, dtype=np.int64)
        fold_of = plan_transfer(codes, k=k, folds=folds, seed=seed, function="annotate")

    started = time.perf_counter()
    calibrated: dict = {}
    if alpha is None:
        network, loss = fit_classifier(features[known], targets, len(classes), seed=seed, device=torch_device, **mlp)
        probabilities = predict_proba(network, query)
    else:
        index = ReferenceIndex.build(features[known], method="auto", random_state=seed)
        calibration, calls, mapper = transfer(
            index, codes, fold_of, classes, query, method="mlp", k=k, seed=seed, alpha=alpha,
            unknown_alpha=unknown_alpha, max_calibration_cells=len(codes), mlp=mlp, device=torch_device,
            batch_size=DEFAULT_BATCH,
        )  # fmt: skip
        loss = float(np.mean(mapper.losses))
        calibrated = {"k": k, "folds": folds, **calibration.record(), **summarise(calls, classes, None)}

    if copy:
        container, adata = copy_target(container, adata, mod)
    if alpha is None:
        adata.obs[key_added] = pd.Categorical.from_codes(probabilities.argmax(axis=1), categories=classes)
        adata.obsm[key_added + keys.PROBABILITIES_SUFFIX] = pd.DataFrame(
            probabilities, index=adata.obs_names, columns=classes
        )
    else:
        write_calls(adata, calls, classes, label_key=key_added, prefix=key_added, unknown_label=False)
    write_record(
        adata,
        "annotate",
        {
            "label_key": label_key,
            "use_rep": use_rep,
            "hidden_sizes": [int(h) for h in hidden_sizes],
            "epochs": int(epochs),
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "batch_size": int(batch_size),
            "seed": seed,
            "device": str(torch_device),
            "key_added": key_added,
            "classes": np.asarray(classes, dtype=str),
            "n_reference_cells": int(known.sum()),
            "final_loss": loss,
            **calibrated,
        },
    )
    logger.info(
        "annotate: %d classes from %d reference cells in %.1fs; added .obs[%r] and .obsm[%r]",
        len(classes), int(known.sum()), time.perf_counter() - started, key_added,
        key_added + keys.PROBABILITIES_SUFFIX,
    )  # fmt: skip
    return finish(container, adata, copy=copy)


@doc_params
def cross_validate_annotation(
    adata: AnnData | MuData,
    label_key: str,
    *,
    folds: int = 5,
    use_rep: str = keys.EMBEDDING,
    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN,
    epochs: int = 20,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    batch_size: int = 64,
    random_state: int | None = None,
    device: str | torch.device | None = None,
    key_added: str | None = None,
    mod: str = "rna",
) -> pd.DataFrame:
    """Stratified k-fold cross-validation of :func:`omnicell.tl.annotate`'s classifier: accuracy and macro-F1.

    The labelled cells are split into ``folds`` stratified folds (shuffled with ``random_state``); for
    each fold the classifier is trained on the others, as :func:`omnicell.tl.annotate` trains
    it, and scored on the held-out cells. This is the paper's evaluation protocol; run it on
    ``'X_pca'`` for the baseline.

    Parameters
    ----------
    adata
        Labelled cells with a representation in ``obsm[use_rep]``.
    label_key
        ``obs`` column with the cell types; unlabelled cells are left out.
    folds
        Number of folds (at least 2, at most the size of the largest class).
    use_rep
        ``obsm`` key of the representation.
    hidden_sizes, epochs, lr, weight_decay, batch_size, device
        Classifier and training settings, as in :func:`omnicell.tl.annotate`.
    random_state
        Random seed of the folds and of every classifier; None uses ``oc.settings.seed``.
    key_added
        Also write each cell's out-of-fold prediction to ``obs[key_added]`` (None: do not).
    {doc_mod}

    Returns
    -------
    A DataFrame with one row per fold (index ``1`` to ``folds``) and columns ``accuracy``,
    ``macro_f1``, ``n_train``, ``n_test``. Also writes

    ``adata.uns['omnicell']['cross_validate_annotation']``
        Parameters, the table and its mean and standard deviation (``accuracy_mean``,
        ``accuracy_std``, ``macro_f1_mean``, ``macro_f1_std``).
    ``adata.obs[key_added]``
        (with ``key_added``) Out-of-fold predicted labels (NaN for unlabelled cells).
    """
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    container, adata = resolve_modality(adata, mod, "cross_validate_annotation")
    features = get_representation(adata, use_rep, "cross_validate_annotation")
    labels = get_labels(adata, label_key, "cross_validate_annotation")
    check_training(epochs, lr, batch_size, hidden_sizes)
    known = np.flatnonzero(labels.notna().to_numpy())
    classes = label_classes(adata.obs[label_key], labels.iloc[known])
    targets = pd.Categorical(labels.iloc[known], categories=classes).codes
    counts = np.bincount(targets, minlength=len(classes))
    if not 2 <= int(folds) <= counts.max():
        raise ValueError(f"folds must lie in [2, size of the largest class = {counts.max()}], got {folds}.")
    if counts.min() < int(folds):
        small = [f"{c} ({n})" for c, n in zip(classes, counts, strict=True) if n < int(folds)]
        warnings.warn(
            f"Some labels have fewer cells than folds and are missing from some test folds: {', '.join(small)}.",
            UserWarning,
            stacklevel=2,
        )
    seed = resolve_random_state(random_state, "cross_validate_annotation")
    torch_device = resolve_device(device)

    started = time.perf_counter()
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=seed)
    rows = []
    predicted = np.full(len(known), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(splitter.split(np.zeros(len(known)), targets))
    for fold, (train, test) in enumerate(splits, start=1):
        network, _ = fit_classifier(
            features[known[train]], targets[train], len(classes), hidden_sizes=hidden_sizes, epochs=int(epochs),
            lr=float(lr), weight_decay=float(weight_decay), batch_size=int(batch_size), seed=seed,
            device=torch_device, description=f"fold {fold}/{folds}",
        )  # fmt: skip
        guess = predict_proba(network, features[known[test]]).argmax(axis=1)
        predicted[test] = guess
        rows.append(
            {
                "accuracy": float(accuracy_score(targets[test], guess)),
                "macro_f1": float(f1_score(targets[test], guess, average="macro", zero_division=0)),
                "n_train": len(train),
                "n_test": len(test),
            }
        )
    table = pd.DataFrame(rows, index=pd.Index(np.arange(1, len(rows) + 1), name="fold"))

    if key_added is not None:
        codes = np.full(adata.n_obs, -1, dtype=np.int64)
        codes[known] = predicted
        adata.obs[key_added] = pd.Categorical.from_codes(codes, categories=classes)
    stored = table.copy()
    stored.index = stored.index.astype(str)
    write_record(
        adata,
        "cross_validate_annotation",
        {
            "label_key": label_key,
            "folds": int(folds),
            "use_rep": use_rep,
            "hidden_sizes": [int(h) for h in hidden_sizes],
            "epochs": int(epochs),
            "lr": float(lr),
            "weight_decay": float(weight_decay),
            "batch_size": int(batch_size),
            "seed": seed,
            "key_added": key_added,
            "table": stored,
            "accuracy_mean": float(table["accuracy"].mean()),
            "accuracy_std": float(table["accuracy"].std(ddof=1)),
            "macro_f1_mean": float(table["macro_f1"].mean()),
            "macro_f1_std": float(table["macro_f1"].std(ddof=1)),
        },
    )
    finish(container, adata, copy=False)
    logger.info(
        "cross_validate_annotation: %s, accuracy %.3f, macro-F1 %.3f over %d folds in %.1fs",
        use_rep, table["accuracy"].mean(), table["macro_f1"].mean(), len(table), time.perf_counter() - started,
    )  # fmt: skip
    return table
