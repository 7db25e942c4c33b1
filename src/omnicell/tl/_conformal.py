"""Calibrated, set-valued label transfer: cross-fitted folds, temperature scaling, split-conformal sets, novelty.

Shared by :func:`omnicell.tl.map_query` (kNN or MLP probabilities) and :func:`omnicell.tl.annotate` (MLP).
Every reference cell is scored by models that did not see it (its fold is left out), so the scores the
calibration is fitted on are exchangeable with those of new cells from the reference's distribution.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from omnicell.data import ReferenceIndex
from omnicell.tl._classifier import fit_classifier, predict_proba

__all__ = [
    "UNKNOWN",
    "Calibration",
    "Mapper",
    "assign_folds",
    "calibration_rows",
    "check_alpha",
    "check_sizes",
    "conformal_quantile",
    "fit_temperature",
    "fold_neighbours",
    "knn_votes",
    "label_sets",
    "novelty_pvalues",
    "plan_transfer",
    "search_width",
    "summarise",
    "transfer",
    "write_calls",
]

UNKNOWN = "unknown"
"""The label of cells the reference cannot vouch for (novel or with an empty label set)."""

#: Query cells searched and scored at a time: bounds the (cells x neighbours) arrays; results do not depend on it.
DEFAULT_BATCH = 16384

#: The smallest probability whose log the MLP's calibration takes (float32 softmax reaches 0).
_FLOOR = 1e-12

#: Pseudo-votes per class added to the distance-weighted votes (in units of one nearest neighbour), so a class
#: no neighbour votes for keeps a small probability: its log stays finite for temperature scaling.
_PSEUDO_VOTES = 0.1


def check_alpha(value: object, name: str, function: str) -> float:
    """``value`` as a float in the open interval (0, 1), with an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{function}: {name} must be a number in (0, 1), got {value!r}.")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"{function}: {name} must lie strictly between 0 and 1 (e.g. 0.1 for 90% label sets), got {value!r}."
        )
    return value


def assign_folds(codes: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold (0..folds-1) of each cell, stratified by label code; -1 for unlabelled cells (code < 0).

    Cells are shuffled with ``seed``, then dealt to the folds class by class, so each fold holds about
    ``1/folds`` of every label and a fold model sees every label with at least ``folds`` cells.
    """
    order = np.random.default_rng(seed).permutation(len(codes))
    shuffled = codes[order]
    by_class = order[np.argsort(shuffled, kind="stable")]
    sorted_codes = codes[by_class]
    starts = np.searchsorted(sorted_codes, sorted_codes, side="left")
    rank = np.arange(len(codes)) - starts
    result = np.full(len(codes), -1, dtype=np.int64)
    result[by_class] = rank % folds
    result[codes < 0] = -1
    return result


def search_width(k: int, folds: int, n_rows: int) -> int:
    """Neighbours to ask the index for, so that each fold model still finds ``k`` outside its own fold.

    A fold holds about ``1/folds`` of any neighbour list; four standard deviations of that count are added.
    """
    share = 1.0 / folds
    width = math.ceil(k / (1.0 - share))
    width += math.ceil(4.0 * math.sqrt(width * share * (1.0 - share))) + 1
    return int(min(n_rows, width))


def fold_neighbours(indices: np.ndarray, fold_of: np.ndarray, fold: np.ndarray | int, k: int) -> np.ndarray:
    """(n, K) mask of the first ``k`` neighbours of each row that are labelled and outside ``fold``.

    ``fold`` is one fold for every row or one per row (a reference cell is scored without its own fold).
    """
    neighbour_fold = fold_of[indices]
    usable = (neighbour_fold >= 0) & (neighbour_fold != np.asarray(fold).reshape(-1, 1))
    return usable & (np.cumsum(usable, axis=1) <= k)


def knn_votes(
    distances: np.ndarray, labels: np.ndarray, keep: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed distance-weighted vote shares (n, n_classes) and the mean distance of the kept neighbours.

    Weights ``exp(-(d / d_max)^2)`` with ``d_max`` the row's farthest kept neighbour: the nearest count up to
    e times the farthest, a gentle tilt that does not let one near-duplicate outvote the rest.
    """
    n = len(distances)
    d = np.where(keep, distances.astype(np.float64), 0.0)
    count = keep.sum(axis=1)
    scale = np.maximum(d.max(axis=1, keepdims=True), 1e-12)
    weights = np.where(keep, np.exp(-3.0 * (d / scale) ** 2), 0.0)
    weights *= (count / np.maximum(weights.sum(axis=1), 1e-300))[:, None]  # in units of one neighbour
    votes = np.zeros((n, n_classes), dtype=np.float64)
    rows = np.broadcast_to(np.arange(n)[:, None], keep.shape)
    np.add.at(votes, (rows[keep], labels[keep]), weights[keep])
    votes += _PSEUDO_VOTES
    shares = votes / votes.sum(axis=1, keepdims=True)
    mean_distance = d.sum(axis=1) / np.maximum(count, 1)
    return shares, np.where(count > 0, mean_distance, np.inf)


def fit_temperature(log_probabilities: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of ``softmax(log_probabilities / T)``.

    Temperature scaling (Guo et al. 2017): one parameter fitted on held-out scores by a proper scoring rule,
    so it cannot overfit a small reference and it leaves the ranking of the labels (and accuracy) unchanged.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(log_probabilities, dtype=np.float64)
    picked = logits[np.arange(len(targets)), targets]

    def nll(log_t: float) -> float:
        scaled = logits / math.exp(log_t)
        top = scaled.max(axis=1)
        normaliser = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
        return float(np.mean(normaliser - picked / math.exp(log_t)))

    found = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(found.x))


def calibrate(log_probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log_probabilities / temperature)`` row by row."""
    scaled = np.asarray(log_probabilities, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal threshold: the ``ceil((n + 1)(1 - alpha))``-th smallest score (inf when that exceeds n)."""
    n = len(scores)
    rank = math.ceil((n + 1) * (1.0 - alpha))
    if rank > n:
        return math.inf
    return float(np.partition(np.asarray(scores, dtype=np.float64), rank - 1)[rank - 1])


def label_sets(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """(n, n_classes) membership: label c is in a cell's set when ``1 - p(c) <= threshold``."""
    return (1.0 - probabilities) <= threshold


def novelty_pvalues(statistic: np.ndarray, reference_statistic: np.ndarray) -> np.ndarray:
    """Conformal p-values ``(1 + #{reference >= s}) / (n + 1)`` of a statistic where larger means more novel."""
    ordered = np.sort(np.asarray(reference_statistic, dtype=np.float64))
    at_least = len(ordered) - np.searchsorted(ordered, np.asarray(statistic, dtype=np.float64), side="left")
    return (1.0 + at_least) / (len(ordered) + 1.0)


@dataclasses.dataclass
class Calibration:
    """What the held-out reference scores fix: the temperature, the conformal threshold, the novelty null."""

    classes: list[str]
    alpha: float
    unknown_alpha: float
    temperature: float
    threshold: float
    novelty_null: np.ndarray
    #: Coverage of the label sets on the calibration cells, each fold's cells judged by a threshold from the
    #: other folds' scores (an honest estimate, not the in-sample coverage the threshold guarantees).
    coverage: float
    calibration_set_size: float
    n_calibration: int

    @classmethod
    def fit(
        cls,
        log_probabilities: np.ndarray,
        targets: np.ndarray,
        folds: np.ndarray,
        novelty: np.ndarray,
        classes: list[str],
        *,
        alpha: float,
        unknown_alpha: float,
    ) -> Calibration:
        """Fit on held-out scores: (n, C) log-probabilities, true codes, the cells' folds, novelty statistics."""
        if math.ceil((len(targets) + 1) * (1.0 - alpha)) > len(targets):
            warnings.warn(
                f"{len(targets)} calibration cells are too few for alpha={alpha}: every label set holds all labels. "
                f"Pass a larger alpha (at least {1.0 / (len(targets) + 1):.3g}) or a larger reference.",
                UserWarning,
                stacklevel=4,
            )
        temperature = fit_temperature(log_probabilities, targets)
        probabilities = calibrate(log_probabilities, temperature)
        scores = 1.0 - probabilities[np.arange(len(targets)), targets]
        covered = np.zeros(len(targets), dtype=bool)
        sizes = np.zeros(len(targets), dtype=np.float64)
        for fold in np.unique(folds):
            inside = folds == fold
            threshold = conformal_quantile(scores[~inside], alpha)
            covered[inside] = scores[inside] <= threshold
            sizes[inside] = label_sets(probabilities[inside], threshold).sum(axis=1)
        return cls(
            classes=list(classes),
            alpha=alpha,
            unknown_alpha=unknown_alpha,
            temperature=temperature,
            threshold=conformal_quantile(scores, alpha),
            novelty_null=np.sort(np.asarray(novelty, dtype=np.float64)),
            coverage=float(covered.mean()),
            calibration_set_size=float(sizes.mean()),
            n_calibration=len(targets),
        )

    def apply(self, log_probabilities: np.ndarray, novelty: np.ndarray) -> dict[str, np.ndarray]:
        """Calibrated probabilities, label sets, novelty p-values and the unknown call of new cells."""
        probabilities = calibrate(log_probabilities, self.temperature)
        members = label_sets(probabilities, self.threshold)
        pvalues = novelty_pvalues(novelty, self.novelty_null)
        unknown = (pvalues < self.unknown_alpha) | ~members.any(axis=1)
        return {"probabilities": probabilities, "members": members, "pvalues": pvalues, "unknown": unknown}

    def record(self) -> dict:
        """The calibration's part of the provenance record."""
        return {
            "alpha": self.alpha,
            "unknown_alpha": self.unknown_alpha,
            "temperature": self.temperature,
            "threshold": self.threshold,
            "coverage": self.coverage,
            "calibration_set_size": self.calibration_set_size,
            "n_calibration": self.n_calibration,
        }


class Mapper:
    """Fold models over a reference: held-out scores of reference cells and fold-averaged scores of new cells.

    ``fold_of`` gives each reference row its fold (-1: unlabelled, never used). Fold model ``f`` sees the other
    folds only: for ``method="knn"`` its ``k`` nearest labelled neighbours outside fold ``f`` (found in one
    search of the index, wide enough for every fold), for ``method="mlp"`` a classifier trained on them.
    """

    def __init__(
        self,
        index: ReferenceIndex,
        codes: np.ndarray,
        fold_of: np.ndarray,
        classes: list[str],
        *,
        method: str,
        k: int,
        seed: int,
        mlp: Mapping[str, Any],
        device: torch.device,
        batch_size: int,
    ) -> None:
        self.index, self.codes, self.classes = index, codes, classes
        self.method, self.k, self.batch_size = method, k, batch_size
        self.fold_of = fold_of
        self.folds = int(fold_of.max()) + 1
        self.networks: list = []
        self.losses: list[float] = []
        if method == "mlp":
            labelled = np.flatnonzero(codes >= 0)
            features = np.asarray(index.embeddings[labelled], dtype=np.float32)
            for fold in range(self.folds):
                train = self.fold_of[labelled] != fold
                network, loss = fit_classifier(
                    features[train], codes[labelled][train], len(classes), seed=seed, device=device,
                    description=f"map_query fold {fold + 1}/{self.folds}", **mlp,
                )  # fmt: skip
                self.networks.append(network)
                self.losses.append(loss)

    def _search(self, features: np.ndarray, extra: int) -> tuple[np.ndarray, np.ndarray]:
        width = min(self.index.n_cells, search_width(self.k, self.folds, self.index.n_cells) + extra)
        return self.index.query(features, width)

    def held_out(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities and novelty statistics of reference rows, each from the model without its fold."""
        n_classes = len(self.classes)
        log_p = np.empty((len(rows), n_classes))
        novelty = np.empty(len(rows))
        for start in range(0, len(rows), self.batch_size):
            part = rows[start : start + self.batch_size]
            features = np.asarray(self.index.embeddings[part], dtype=np.float32)
            own = self.fold_of[part]
            # one neighbour more: the cell itself, left out with its fold
            indices, distances = self._search(features, 1)
            keep = fold_neighbours(indices, self.fold_of, own, self.k)
            shares, novelty[start : start + len(part)] = knn_votes(distances, self.codes[indices], keep, n_classes)
            if self.method == "mlp":
                shares = np.empty((len(part), n_classes))
                for fold, network in enumerate(self.networks):
                    mine = own == fold
                    if mine.any():
                        shares[mine] = predict_proba(network, features[mine])
            log_p[start : start + len(part)] = np.log(np.maximum(shares, _FLOOR))
        return log_p, novelty

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log of the fold models' mean probabilities and the mean novelty statistic of new cells."""
        n_classes = len(self.classes)
        log_p = np.empty((len(features), n_classes))
        novelty = np.empty(len(features))
        for start in range(0, len(features), self.batch_size):
            part = np.asarray(features[start : start + self.batch_size], dtype=np.float32)
            indices, distances = self._search(part, 0)
            labels = self.codes[indices]
            shares = np.zeros((len(part), n_classes))
            distance = np.zeros(len(part))
            for fold in range(self.folds):
                keep = fold_neighbours(indices, self.fold_of, fold, self.k)
                fold_shares, fold_distance = knn_votes(distances, labels, keep, n_classes)
                shares += fold_shares / self.folds
                distance += fold_distance / self.folds
            if self.method == "mlp":
                shares = sum(predict_proba(network, part).astype(np.float64) for network in self.networks)
                shares /= self.folds
            log_p[start : start + len(part)] = np.log(np.maximum(shares, _FLOOR))
            novelty[start : start + len(part)] = distance
        return log_p, novelty


def check_sizes(codes: np.ndarray, fold_of: np.ndarray, k: int, folds: int, function: str) -> None:
    """Refuse ``folds`` or ``k`` the labelled reference cells cannot serve."""
    n_labelled = int((codes >= 0).sum())
    if folds > n_labelled:
        raise ValueError(f"{function}: folds={folds} exceeds the {n_labelled} labelled reference cells.")
    smallest = n_labelled - int(np.bincount(fold_of[fold_of >= 0], minlength=folds).max())
    if k > smallest:
        raise ValueError(
            f"{function}: k={k} exceeds the {smallest} labelled reference cells a fold model sees ({n_labelled} "
            f"labelled cells in {folds} folds); lower it (e.g. k=15) or pass a larger reference."
        )


def calibration_rows(codes: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """The labelled reference rows scored for the calibration: all, or a seeded sample of ``limit``."""
    labelled = np.flatnonzero(codes >= 0)
    if len(labelled) <= limit:
        return labelled
    return np.sort(np.random.default_rng(seed).choice(labelled, size=limit, replace=False))


def plan_transfer(codes: np.ndarray, *, k: int, folds: int, seed: int, function: str) -> np.ndarray:
    """The fold of each reference row, after checking ``k`` and ``folds`` against the labelled cells."""
    fold_of = assign_folds(codes, folds, seed)
    check_sizes(codes, fold_of, k, folds, function)
    return fold_of


def transfer(
    index: ReferenceIndex,
    codes: np.ndarray,
    fold_of: np.ndarray,
    classes: list[str],
    query: np.ndarray,
    *,
    method: str,
    k: int,
    seed: int,
    alpha: float,
    unknown_alpha: float,
    max_calibration_cells: int,
    mlp: Mapping[str, Any],
    device: torch.device,
    batch_size: int,
) -> tuple[Calibration, dict[str, np.ndarray], Mapper]:
    """Fit the fold models and the calibration on the reference, then score and call the query cells."""
    mapper = Mapper(index, codes, fold_of, classes, method=method, k=k, seed=seed, mlp=mlp, device=device,
                    batch_size=batch_size)  # fmt: skip
    rows = calibration_rows(codes, max_calibration_cells, seed)
    log_p, novelty = mapper.held_out(rows)
    calibration = Calibration.fit(
        log_p, codes[rows], fold_of[rows], novelty, classes, alpha=alpha, unknown_alpha=unknown_alpha
    )
    return calibration, calibration.apply(*mapper.score(query)), mapper


def write_calls(
    adata, calls: dict[str, np.ndarray], classes: list[str], *, label_key: str, prefix: str, unknown_label: bool
) -> None:
    """Write the label, confidence, label set, unknown call, novelty p-value and probabilities of each cell.

    ``label_key`` is the obs column of the label (``"unknown"`` among its categories when ``unknown_label``);
    the other slots are ``obs[prefix + '_confidence' | '_label_set' | '_unknown' | '_novelty_pval']`` and
    ``obsm[prefix + '_probabilities']``.
    """
    probabilities = calls["probabilities"]
    best = probabilities.argmax(axis=1)
    names = np.asarray(classes, dtype=object)
    if unknown_label:
        codes = np.where(calls["unknown"], len(classes), best)
        label = pd.Categorical.from_codes(codes, categories=[*classes, UNKNOWN])
    else:
        label = pd.Categorical.from_codes(best, categories=list(classes))
    adata.obs[label_key] = label
    adata.obs[prefix + "_confidence"] = probabilities[np.arange(len(best)), best].astype(np.float32)
    adata.obs[prefix + "_label_set"] = ["|".join(names[row]) for row in calls["members"]]
    adata.obs[prefix + "_unknown"] = np.asarray(calls["unknown"], dtype=bool)
    adata.obs[prefix + "_novelty_pval"] = calls["pvalues"].astype(np.float32)
    adata.obsm[prefix + "_probabilities"] = pd.DataFrame(
        probabilities.astype(np.float32), index=adata.obs_names, columns=list(classes)
    )


def summarise(calls: dict[str, np.ndarray], classes: Sequence[str], truth: pd.Series | None) -> dict[str, Any]:
    """Mean set size and unknown share of the query; with known labels, the coverage and accuracy reached."""
    summary: dict[str, Any] = {
        "mean_set_size": float(calls["members"].sum(axis=1).mean()),
        "unknown_fraction": float(np.mean(calls["unknown"])),
        "n_query_cells": len(calls["unknown"]),
    }
    if truth is None:
        return summary
    position = {label: i for i, label in enumerate(classes)}
    code = np.array([position.get(label, -1) if label is not None else -2 for label in truth], dtype=np.int64)
    known = code >= 0
    rows = np.flatnonzero(known)
    best = calls["probabilities"].argmax(axis=1)
    summary.update(
        {
            "n_query_labelled": int(known.sum()),
            "n_query_novel": int((code == -1).sum()),
            "query_coverage": float(calls["members"][rows, code[rows]].mean()) if len(rows) else math.nan,
            "query_accuracy": float((best[rows] == code[rows]).mean()) if len(rows) else math.nan,
            "query_accuracy_called": float(((best[rows] == code[rows]) & ~calls["unknown"][rows]).mean())
            if len(rows)
            else math.nan,
        }
    )
    return summary
