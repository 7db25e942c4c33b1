"""Reference mapping (``oc.tl.map_query``): coverage, set size, unknown-call AUROC, accuracy and speed.

Sections, each printed as a table:

1. ``held-out``: pbmc68k_reduced (700 PBMCs, 10 FACS-sorted ``bulk_labels``) split at random
   into a reference of 450 cells and a query of 250, ``--seeds`` times: coverage of the
   ``1 - alpha`` label sets on the query (the check: 0.87-0.93 at alpha 0.1), the coverage the
   calibration folds report, mean set size, accuracy of the most probable label, plain kNN's
   accuracy (scikit-learn, k = 15, uniform, the whole reference), accuracy among the cells not
   called unknown and the share called unknown. Also on a synthetic Gaussian mixture (8
   overlapping types in 10 dimensions, 2000 reference and 2000 query cells), where the cells
   are exchangeable by construction.
2. ``left-out type``: each type with at least 20 cells is removed from the reference (same
   splits): AUROC of the novelty score (1 - p-value) for the left-out type's query cells
   against the others, the share of each called unknown, and accuracy on the known types
   (most probable label, and among cells called) beside plain kNN's.
3. ``shift``: the query's embedding moved by ``s`` reference standard deviations per
   dimension (alternating signs), as a batch effect would: coverage reached on the query's own
   labels (``query_label_key``), against the coverage the reference promises.
4. ``speed``: a synthetic reference of ``--reference-cells`` cells (64 dimensions, 20 overlapping
   types) mapped by ``--query-cells`` cells, with the exact index and with pynndescent: index
   build seconds, calibration seconds (a map of one query cell: the fold scores of up to 20,000
   reference cells), total seconds of the whole query, query cells/s after the calibration
   (the calibration subtracted) and end to end.

Representations: ``X_pca`` (the data set's own), and with ``--model`` the model's embedding
(tokenised from ``.raw`` with ``--n-genes`` genes per cell).

Usage (from the repository root)::

    python benchmarks/reference_mapping.py                          # X_pca, 10 splits
    python benchmarks/reference_mapping.py --model omnicell-tiny --seeds 10 --json mapping.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py would shadow the standard library's tokenize module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import platform
import shlex
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

try:
    import omnicell as oc
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import omnicell as oc

LABEL = "bulk_labels"


def pbmc(model: str | None, n_genes: int) -> tuple[ad.AnnData, list[str]]:
    """pbmc68k_reduced with its X_pca and, with a model, X_omnicell (from the counts recovered from .raw)."""
    reduced = sc.datasets.pbmc68k_reduced()
    raw = reduced.raw.X.toarray() if hasattr(reduced.raw.X, "toarray") else np.asarray(reduced.raw.X)
    counts = np.round(np.expm1(raw) / 1e4 * reduced.obs["n_counts"].to_numpy()[:, None]).astype(np.float32)
    adata = ad.AnnData(counts, obs=reduced.obs[[LABEL]].copy(), var=reduced.raw.var.copy())
    adata.obsm["X_pca"] = reduced.obsm["X_pca"].astype(np.float32)
    reps = ["X_pca"]
    if model is not None:
        oc.pp.tokenize(adata, model, n_genes=n_genes)
        oc.tl.embed_cells(adata, model)
        reps.append("X_omnicell")
    return adata, reps


def mixture(n: int, seed: int, *, dim: int = 10, n_types: int = 8, spread: float = 1.2) -> ad.AnnData:
    centres = np.random.default_rng(100).normal(size=(n_types, dim)) * spread
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n)
    obs = pd.DataFrame({LABEL: pd.Categorical([f"t{t}" for t in types])}, index=[f"s{seed}c{i}" for i in range(n)])
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_rep"] = (centres[types] + rng.normal(size=(n, dim))).astype(np.float32)
    return adata


def split(n_obs: int, seed: int, n_reference: int = 450) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n_obs)
    return order[:n_reference], order[n_reference:]


def knn_accuracy(reference: ad.AnnData, query: ad.AnnData, rep: str, rows: np.ndarray) -> float:
    plain = KNeighborsClassifier(15).fit(reference.obsm[rep], reference.obs[LABEL].astype(str))
    return float(plain.score(query.obsm[rep][rows], query.obs[LABEL].astype(str).to_numpy()[rows]))


def held_out(adata: ad.AnnData, rep: str, seeds: int, alpha: float) -> dict:
    rows = []
    for seed in range(seeds):
        reference_rows, query_rows = split(adata.n_obs, seed)
        reference, query = adata[reference_rows].copy(), adata[query_rows].copy()
        oc.tl.map_query(query, reference, LABEL, use_rep=rep, alpha=alpha, query_label_key=LABEL, random_state=seed)
        record = query.uns["omnicell"]["map_query"]
        everyone = np.arange(query.n_obs)
        rows.append(
            {
                "query coverage": record["query_coverage"],
                "calibration coverage": record["coverage"],
                "mean set size": record["mean_set_size"],
                "accuracy": record["query_accuracy"],
                "kNN accuracy": knn_accuracy(reference, query, rep, everyone),
                "accuracy (called)": _called_accuracy(query),
                "unknown share": record["unknown_fraction"],
            }
        )
    return _mean(rows, rep, seeds)


def synthetic_held_out(seeds: int, alpha: float) -> dict:
    rows = []
    for seed in range(seeds):
        reference, query = mixture(2000, 2 * seed), mixture(2000, 2 * seed + 1)
        oc.tl.map_query(query, reference, LABEL, use_rep="X_rep", alpha=alpha, query_label_key=LABEL, random_state=seed)
        record = query.uns["omnicell"]["map_query"]
        rows.append(
            {
                "query coverage": record["query_coverage"],
                "calibration coverage": record["coverage"],
                "mean set size": record["mean_set_size"],
                "accuracy": record["query_accuracy"],
                "kNN accuracy": knn_accuracy(reference, query, "X_rep", np.arange(query.n_obs)),
                "accuracy (called)": _called_accuracy(query),
                "unknown share": record["unknown_fraction"],
            }
        )
    return _mean(rows, "synthetic mixture (2000 + 2000)", seeds)


def _called_accuracy(query: ad.AnnData) -> float:
    called = ~query.obs["omnicell_unknown"].to_numpy()
    truth = query.obs[LABEL].astype(str).to_numpy()
    predicted = query.obsm["omnicell_probabilities"].idxmax(axis=1).to_numpy()
    return float((predicted[called] == truth[called]).mean()) if called.any() else float("nan")


def _mean(rows: list[dict], name: str, seeds: int) -> dict:
    table = pd.DataFrame(rows)
    summary = {"representation": name, "splits": seeds}
    for column in table.columns:
        summary[column] = float(table[column].mean())
    if "query coverage" in table and len(table) > 1:
        summary["query coverage sd"] = float(table["query coverage"].std(ddof=1))
    return summary


def left_out(adata: ad.AnnData, rep: str, seeds: int, alpha: float) -> list[dict]:
    truth_all = adata.obs[LABEL].astype(str).to_numpy()
    counts = pd.Series(truth_all).value_counts()
    results = []
    for left in counts[counts >= 20].index:
        rows = []
        for seed in range(seeds):
            reference_rows, query_rows = split(adata.n_obs, seed)
            reference_rows = reference_rows[truth_all[reference_rows] != left]
            reference, query = adata[reference_rows].copy(), adata[query_rows].copy()
            oc.tl.map_query(query, reference, LABEL, use_rep=rep, alpha=alpha, random_state=seed)
            truth = truth_all[query_rows]
            novel = truth == left
            unknown = query.obs["omnicell_unknown"].to_numpy()
            right = query.obsm["omnicell_probabilities"].idxmax(axis=1).to_numpy() == truth
            rows.append(
                {
                    "AUROC": roc_auc_score(novel, 1 - query.obs["omnicell_novelty_pval"]),
                    "unknown (left out)": unknown[novel].mean(),
                    "unknown (known)": unknown[~novel].mean(),
                    "accuracy (known)": right[~novel].mean(),
                    "accuracy (known, called)": right[~novel & ~unknown].mean(),
                    "kNN accuracy (known)": knn_accuracy(reference, query, rep, np.flatnonzero(~novel)),
                }
            )
        summary = _mean(rows, rep, seeds)
        results.append({"left out": left, "cells": int(counts[left]), **summary})
    return results


def shift(adata: ad.AnnData, rep: str, seeds: int, alpha: float, sizes=(0.0, 0.5, 1.0, 2.0)) -> list[dict]:
    results = []
    for size in sizes:
        rows = []
        for seed in range(seeds):
            reference_rows, query_rows = split(adata.n_obs, seed)
            reference, query = adata[reference_rows].copy(), adata[query_rows].copy()
            spread = reference.obsm[rep].std(axis=0)
            direction = np.where(np.arange(spread.size) % 2 == 0, 1.0, -1.0)
            query.obsm[rep] = (query.obsm[rep] + size * spread * direction).astype(np.float32)
            oc.tl.map_query(query, reference, LABEL, use_rep=rep, alpha=alpha, query_label_key=LABEL, random_state=seed)
            record = query.uns["omnicell"]["map_query"]
            rows.append(
                {
                    "promised": 1 - alpha,
                    "calibration coverage": record["coverage"],
                    "query coverage": record["query_coverage"],
                    "accuracy": record["query_accuracy"],
                    "unknown share": record["unknown_fraction"],
                }
            )
        summary = _mean(rows, rep, seeds)
        summary.pop("query coverage sd", None)
        results.append({"shift (sd)": size, **summary})
    return results


def speed(reference_cells: int, query_cells: int, alpha: float) -> list[dict]:
    """Seconds to calibrate and query cells/s of map_query on a synthetic reference (64 dimensions, 20 types)."""
    centres = np.random.default_rng(0).normal(size=(20, 64)) * 0.4  # overlapping types: sets of several labels

    def cells(n: int, seed: int) -> ad.AnnData:
        draw = np.random.default_rng(seed)
        types = draw.integers(0, 20, n)
        obs = pd.DataFrame({LABEL: pd.Categorical([f"t{t}" for t in types])}, index=np.arange(n).astype(str))
        adata = ad.AnnData(obs=obs)
        adata.obsm["X_rep"] = (centres[types] + draw.normal(size=(n, 64))).astype(np.float32)
        return adata

    reference, query = cells(reference_cells, 1), cells(query_cells, 2)
    # pynndescent compiles its numba code on first use: not counted
    oc.data.ReferenceIndex.build(reference.obsm["X_rep"][:2000], method="pynndescent")
    results = []
    for method in ("exact", "pynndescent"):
        started = time.perf_counter()
        index = oc.data.ReferenceIndex.build(reference.obsm["X_rep"], reference.obs[[LABEL]], method=method)
        built = time.perf_counter() - started
        # one query cell: the calibration (fold scores of up to 20,000 reference cells) and little else
        started = time.perf_counter()
        oc.tl.map_query(query[:1].copy(), index, LABEL, use_rep="X_rep", alpha=alpha)
        calibration = time.perf_counter() - started
        started = time.perf_counter()
        oc.tl.map_query(query, index, LABEL, use_rep="X_rep", alpha=alpha, query_label_key=LABEL)
        total = time.perf_counter() - started
        record = query.uns["omnicell"]["map_query"]
        results.append(
            {
                "index": method,
                "reference cells": reference_cells,
                "query cells": query_cells,
                "build s": built,
                "calibration s": calibration,
                "total s": total,
                "query cells/s (after calibration)": query_cells / max(total - calibration, 1e-3),
                "end-to-end cells/s": query_cells / total,
                "query coverage": record["query_coverage"],
                "mean set size": record["mean_set_size"],
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="also map on this model's embedding (e.g. omnicell-tiny)")
    parser.add_argument("--n-genes", type=int, default=None, help="genes per cell when embedding (model default)")
    parser.add_argument("--seeds", type=int, default=10, help="random reference/query splits (default 10)")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--reference-cells", type=int, default=100_000, help="speed section (0: skip)")
    parser.add_argument("--query-cells", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=None, help="also write the tables as JSON")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    oc.settings.progress_bar = False
    print(f"$ python {shlex.join(sys.argv)}")
    print(f"omnicell {oc.__version__}, python {platform.python_version()}, {platform.machine()}")
    adata, reps = pbmc(args.model, args.n_genes)
    tables = {}
    tables["held-out"] = [held_out(adata, rep, args.seeds, args.alpha) for rep in reps]
    tables["held-out"].append(synthetic_held_out(min(args.seeds, 5), args.alpha))
    tables["left-out type"] = [row for rep in reps for row in left_out(adata, rep, min(args.seeds, 5), args.alpha)]
    tables["shift"] = [row for rep in reps for row in shift(adata, rep, min(args.seeds, 5), args.alpha)]
    if args.reference_cells:
        tables["speed"] = speed(args.reference_cells, args.query_cells, args.alpha)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        for name, rows in tables.items():
            print(f"\n== {name} (alpha {args.alpha})")
            print(pd.DataFrame(rows).to_string(index=False))
    if args.json is not None:
        args.json.write_text(json.dumps(tables, indent=1, default=float))


if __name__ == "__main__":
    main()
