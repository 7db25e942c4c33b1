"""Cell-level and spatial tasks of the paper (Figures 3-5) on real data, beside their baselines.

Measured in one run:

1. STARmap mouse visual cortex (``starmap_by3.h5ad``: 1,207 cells, ``cell_type``, ``domain``).
   For each representation, ``oc.tl.evaluate_clustering`` (kNN k = 15 + Leiden at 0.1 ... 1.0,
   best by ARI + NMI) against ``cell_type`` and against ``domain``, and ``oc.tl.spatial_domains``
   with ``n_domains`` = the number of annotated domains (7), scored against ``domain``.
   Representations: the baselines, expression PCA (scanpy's defaults: normalize_total to the
   median count, log1p, 50 PCs of all genes) and its neighbourhood average
   (``oc.tl.neighborhood_average``: each cell and its 9 nearest spatial neighbours, OmniCell's
   spatial window), and, with ``--use-rep``, that representation (for
   cell types) and ``<use-rep>_niche`` (for domains).
2. pbmc68k_reduced (700 PBMCs, 10 ``bulk_labels``): ``oc.tl.annotate`` trained on a stratified
   70 % and scored on 30 %, and ``oc.tl.cross_validate_annotation`` (stratified 5-fold), accuracy
   and macro-F1, for PCA and ``--use-rep``.
3. Deconvolution: pseudo-spots, each the summed counts of 5-10 random cells of one half of
   pbmc68k_reduced, deconvolved (``oc.tl.deconvolve``) against the other half as reference.
   Reported: Pearson correlation of all estimated and true proportions, mean per-type
   correlation, mean absolute error (and that of the reference composition, which ignores the
   spots), dominant-type accuracy.
4. ``--dropout``: ``oc.tl.dropout_robustness`` NMI curve on pbmc68k_reduced (Leiden 0.1).

Representations: ``X_pca`` is computed here. For another ``--use-rep`` either pass ``--model``
(the script runs ``oc.pp.tokenize`` + ``oc.tl.embed_cells``: spatial mode on STARmap, so
``X_omnicell`` and ``X_omnicell_niche`` exist; pbmc68k_reduced from ``.raw``; pseudo-spots
tokenised with the reference's genes) or pass files that already hold it (``--starmap``,
``--pbmc``: h5ad with the embeddings in ``obsm``; the deconvolution section then needs
``--model``).

Usage (from the repository root)::

    python benchmarks/cell_tasks.py                                   # PCA baselines
    python benchmarks/cell_tasks.py --use-rep X_omnicell --model omnicell-v1 --json cell_tasks.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py would shadow the standard library's tokenize module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import platform
import shlex
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.metrics import accuracy_score, adjusted_rand_score, f1_score, normalized_mutual_info_score
from sklearn.model_selection import train_test_split

try:
    import omnicell as oc
except ImportError:  # not installed: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import omnicell as oc

DEFAULT_STARMAP = Path(os.environ.get("OMNICELL_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
DEFAULT_STARMAP = DEFAULT_STARMAP / "starmap_by3.h5ad"


def pca(adata: ad.AnnData, n_comps: int = 50, seed: int = 0) -> None:
    """``obsm['X_pca']`` with scanpy's defaults (normalize_total, log1p, all genes), on a copy of ``.X``."""
    work = ad.AnnData(adata.X.copy(), obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    sc.pp.normalize_total(work)
    sc.pp.log1p(work)
    sc.pp.pca(work, n_comps=n_comps, random_state=seed)
    adata.obsm["X_pca"] = work.obsm["X_pca"]


def pbmc_counts(adata: ad.AnnData) -> np.ndarray:
    raw = adata.raw.X.toarray() if hasattr(adata.raw.X, "toarray") else np.asarray(adata.raw.X)
    return np.round(np.expm1(raw) / 1e4 * adata.obs["n_counts"].to_numpy()[:, None])


def load_model(name: str | None):
    return None if name is None else oc.models.load(name)


# --------------------------------------------------------------------------------------------- STARmap
def starmap_section(path: Path, use_rep: str, model, seed: int, n_genes: int) -> list[dict]:
    adata = ad.read_h5ad(path)
    pca(adata, seed=seed)
    oc.tl.neighborhood_average(adata, use_rep="X_pca", n_neighbors=9)
    reps = [("expression PCA", "X_pca", "X_pca"), ("neighbour-averaged PCA (k=9)", "X_pca_niche", "X_pca_niche")]
    if use_rep != "X_pca":
        if model is not None:
            oc.pp.tokenize(adata, model, n_genes=n_genes, spatial=True, n_neighbors=9)
            oc.tl.embed_cells(adata, model, key_added=use_rep)
        niche = use_rep + "_niche"
        missing = [k for k in (use_rep, niche) if k not in adata.obsm]
        if missing:
            raise SystemExit(f"{path} has no obsm {missing}; pass --model to embed it in spatial mode.")
        reps.append((f"{use_rep} (cell) / {niche} (domains)", use_rep, niche))
    n_domains = adata.obs["domain"].nunique()
    rows = []
    for name, cell_rep, domain_rep in reps:
        row = {"representation": name, "cell_rep": cell_rep, "domain_rep": domain_rep}
        for label, rep in (("cell_type", cell_rep), ("domain", domain_rep)):
            oc.tl.evaluate_clustering(adata, label, use_rep=rep, random_state=seed, key_added="_clusters")
            record = adata.uns["omnicell"]["evaluate_clustering"]
            row[f"{label}_sweep_ari"], row[f"{label}_sweep_nmi"] = record["ari"], record["nmi"]
            row[f"{label}_sweep_resolution"] = record["best_resolution"]
            row[f"{label}_sweep_n_clusters"] = record["n_clusters"]
        oc.tl.spatial_domains(adata, n_domains=n_domains, use_rep=domain_rep, random_state=seed, key_added="_domains")
        domains = adata.obs["_domains"].astype(str)
        row["domain_fixed_ari"] = adjusted_rand_score(adata.obs["domain"], domains)
        row["domain_fixed_nmi"] = normalized_mutual_info_score(adata.obs["domain"], domains)
        row["domain_fixed_resolution"] = adata.uns["omnicell"]["spatial_domains"]["resolution"]
        row["domain_fixed_n"] = adata.uns["omnicell"]["spatial_domains"]["n_domains_found"]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ annotation
def pbmc_data(path: str | None, use_rep: str, model, n_genes: int) -> ad.AnnData:
    adata = ad.read_h5ad(path) if path else sc.datasets.pbmc68k_reduced()
    if use_rep != "X_pca" and use_rep not in adata.obsm:
        if model is None:
            raise SystemExit(f"pbmc data has no obsm[{use_rep!r}]; pass --model to embed it.")
        oc.pp.tokenize(adata, model, n_genes=n_genes, use_raw=True)
        oc.tl.embed_cells(adata, model, key_added=use_rep)
    return adata


def annotation_section(adata: ad.AnnData, use_rep: str, seed: int) -> list[dict]:
    labels = adata.obs["bulk_labels"]
    train, test = train_test_split(np.arange(adata.n_obs), test_size=0.3, stratify=labels, random_state=seed)
    rows = []
    for rep in dict.fromkeys(["X_pca", use_rep]):
        reference, query = adata[train].copy(), adata[test].copy()
        oc.tl.annotate(query, reference, "bulk_labels", use_rep=rep, random_state=seed)
        truth, predicted = query.obs["bulk_labels"].astype(str), query.obs["omnicell_label"].astype(str)
        table = oc.tl.cross_validate_annotation(adata, "bulk_labels", folds=5, use_rep=rep, random_state=seed)
        rows.append(
            {
                "representation": rep,
                "holdout_accuracy": accuracy_score(truth, predicted),
                "holdout_macro_f1": f1_score(truth, predicted, average="macro", zero_division=0),
                "cv_accuracy_mean": table["accuracy"].mean(),
                "cv_accuracy_std": table["accuracy"].std(ddof=1),
                "cv_macro_f1_mean": table["macro_f1"].mean(),
                "cv_macro_f1_std": table["macro_f1"].std(ddof=1),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------ deconvolve
def deconvolution_section(use_rep: str, model, seed: int, n_spots: int, n_genes: int) -> list[dict]:
    pbmc = sc.datasets.pbmc68k_reduced()
    counts = pbmc_counts(pbmc)
    labels = pbmc.obs["bulk_labels"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    order = rng.permutation(pbmc.n_obs)
    reference_cells, spot_cells = order[:350], order[350:]
    var = pd.DataFrame(index=pbmc.raw.var_names)
    obs = pd.DataFrame({"cell_type": labels[reference_cells]}, index=pbmc.obs_names[reference_cells])
    reference = ad.AnnData(counts[reference_cells], obs=obs, var=var)
    members = [rng.choice(spot_cells, size=rng.integers(5, 11), replace=False) for _ in range(n_spots)]
    summed = np.stack([counts[m].sum(0) for m in members])
    spots = ad.AnnData(summed, obs=pd.DataFrame(index=[f"spot{i}" for i in range(n_spots)]), var=var)
    types = sorted(set(labels))
    truth = pd.DataFrame(
        [[np.mean(labels[m] == t) for t in types] for m in members], index=spots.obs_names, columns=types
    )

    # PCA: fitted on the reference, spots projected onto its axes.
    work = reference.copy()
    sc.pp.normalize_total(work, target_sum=1e4)
    sc.pp.log1p(work)
    sc.pp.pca(work, n_comps=50, random_state=seed)
    reference.obsm["X_pca"] = work.obsm["X_pca"]
    logged = np.log1p(summed / summed.sum(1, keepdims=True) * 1e4)
    spots.obsm["X_pca"] = (logged - np.asarray(work.X.mean(0))) @ work.varm["PCs"]
    reps = ["X_pca"]
    if use_rep != "X_pca":
        if model is None:
            print(f"deconvolution: skipped {use_rep} (needs --model to embed reference and spots)")
        else:
            oc.pp.tokenize(reference, model, n_genes=n_genes)
            oc.pp.tokenize(spots, model, genes=list(reference.uns["omnicell"]["tokenize"]["genes"]))
            oc.tl.embed_cells(reference, model, key_added=use_rep)
            oc.tl.embed_cells(spots, model, key_added=use_rep)
            reps.append(use_rep)
    prior = reference.obs["cell_type"].value_counts(normalize=True)[types].to_numpy()
    rows = []
    for rep in reps:
        oc.tl.deconvolve(spots, reference, "cell_type", use_rep=rep, random_state=seed)
        estimate = spots.obsm["omnicell_proportions"][types]
        per_type = [np.corrcoef(estimate[t], truth[t])[0, 1] for t in types]
        rows.append(
            {
                "representation": rep,
                "pearson_all": float(np.corrcoef(estimate.to_numpy().ravel(), truth.to_numpy().ravel())[0, 1]),
                "pearson_per_type_mean": float(np.nanmean(per_type)),
                "mae": float(np.abs(estimate.to_numpy() - truth.to_numpy()).mean()),
                "mae_reference_composition": float(np.abs(prior - truth.to_numpy()).mean()),
                "dominant_accuracy": float((estimate.idxmax(axis=1) == truth.idxmax(axis=1)).mean()),
            }
        )
    return rows


# ----------------------------------------------------------------------------------------------- dropout
def dropout_section(adata: ad.AnnData, use_rep: str, model, seed: int, n_genes: int) -> list[dict]:
    work = adata.copy()
    if model is None:
        raise SystemExit("--dropout needs --model (the tokenised genes define the perturbed matrix).")
    oc.pp.tokenize(work, model, n_genes=n_genes, use_raw=True)

    def pca_embedding(noisy):  # the tokenised matrix is pbmc68k's .raw: already log-normalised
        return sc.pp.pca(noisy.X.toarray(), n_comps=50, random_state=seed)

    rows = []
    runs = [("X_pca", pca_embedding)] + ([(use_rep, None)] if use_rep != "X_pca" else [])
    for rep, embed in runs:
        oc.tl.dropout_robustness(work, model, label_key="bulk_labels", embed=embed, random_state=seed)
        for record in work.uns["omnicell"]["dropout_robustness"]["table"].to_dict("records"):
            rows.append({"representation": rep, **record})
    return rows


def show(title: str, rows: list[dict]) -> None:
    print(f"\n## {title}")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.3f}".format):
        print(pd.DataFrame(rows).to_string(index=False))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--use-rep", default="X_pca", help="representation to compare with the baselines")
    parser.add_argument("--model", default=None, help="model name or folder: embed with it (spatial mode on STARmap)")
    parser.add_argument("--starmap", type=Path, default=DEFAULT_STARMAP)
    parser.add_argument("--pbmc", default=None, help="h5ad of pbmc68k_reduced with embeddings (default: scanpy's)")
    parser.add_argument("--spots", type=int, default=300, help="pseudo-spots for deconvolution")
    parser.add_argument("--dropout", action="store_true", help="also run dropout_robustness (needs --model)")
    parser.add_argument("--n-genes", type=int, default=2000, help="genes per cell for oc.pp.tokenize (with --model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    oc.settings.progress_bar = False
    model = load_model(args.model)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"omnicell {oc.__version__}, scanpy {sc.__version__}, python {platform.python_version()}, {platform.node()}")
    results = {"command": shlex.join(sys.argv), "use_rep": args.use_rep, "model": args.model}
    started = time.perf_counter()

    results["starmap"] = starmap_section(args.starmap, args.use_rep, model, args.seed, args.n_genes)
    show("STARmap BY3 (1207 cells): ARI / NMI against cell_type and domain", results["starmap"])
    pbmc = pbmc_data(args.pbmc, args.use_rep, model, args.n_genes)
    results["annotation"] = annotation_section(pbmc, args.use_rep, args.seed)
    show("pbmc68k_reduced annotation: 70/30 hold-out and stratified 5-fold CV", results["annotation"])
    results["deconvolution"] = deconvolution_section(args.use_rep, model, args.seed, args.spots, args.n_genes)
    show(f"Deconvolution of {args.spots} pseudo-spots (5-10 pbmc68k cells each)", results["deconvolution"])
    if args.dropout:
        results["dropout"] = dropout_section(pbmc, args.use_rep, model, args.seed, args.n_genes)
        show("Dropout robustness (Leiden 0.1, NMI vs bulk_labels)", results["dropout"])
    results["seconds"] = time.perf_counter() - started
    print(f"\n{results['seconds']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=float))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
