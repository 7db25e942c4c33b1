"""Figures for omnicell-tiny's model card: clustering vs PCA, fine-tuning on held-out / spatial data.

    python scripts/evaluate_tiny.py --model src/omnicell/models/bundled/omnicell-tiny \
        --data /tmp/omnicell-tiny-data --output /tmp/omnicell-tiny-eval

Writes ``evaluation.json`` (and the fine-tuning loss logs) into ``--output``:

1. pbmc68k_reduced: Leiden ARI/NMI (best resolution of 0.1..1.0) of the omnicell embedding beside
   expression PCA, through ``omnicell.cli._demo.run_demo`` (the README's demo);
2. held-out masked loss of ``cite_5k`` (PBMC CITE-seq 5k batch, never seen in pretraining) before
   and after ``oc.tl.fine_tune`` on 75% of its cells, measured on the other 25%;
3. STARmap spatial domains, ARI/NMI against ``obs['domain']``, with the same clustering for every
   representation: the omnicell niche embedding (zero-shot, and after ``oc.tl.fine_tune(spatial=True)``
   on the section: self-supervised, no labels), and expression PCA, on cells alone and on its
   neighbourhood average (``oc.tl.neighborhood_average``, the cell and its 9 nearest cells). Two
   protocols, each over seeds 0..4 (mean and sd; one seed is noise on 1,207 cells):

   - ``n_domains``: ``oc.tl.spatial_domains`` (Leiden at the resolution giving as many domains as
     annotated) and k-means with that k;
   - ``paper``: the paper's protocol (Methods, "Spatial Domain Identification"): Leiden on the kNN
     graph at the resolution of 0.1..1.0 maximising ARI + NMI (``oc.tl.evaluate_clustering``).

``--skip-demo`` / ``--skip-cite`` leave out parts 1 / 2 (the STARmap part then runs alone).
Every tokenisation uses the model's own defaults (its ``tokenization.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import anndata as ad
import numpy as np
import torch


def tokenization(model, model_ref) -> dict:
    """The model's tokenisation defaults (``model.tokenization`` or its folder's tokenization.json)."""
    carried = getattr(model, "tokenization", None)
    if carried is not None:
        spatial = carried.spatial
        return {
            "single_cell": {"strategy": carried.single_cell.strategy, "n_genes": carried.single_cell.n_genes},
            "spatial": None if spatial is None else dataclasses.asdict(spatial),
        }
    from omnicell.cli._demo import _model_folder

    folder = _model_folder(model_ref)
    return json.loads((folder / "tokenization.json").read_text())


def spatial_options(spec: dict, coords) -> dict:
    """tokenize options of the model's spatial defaults; coordinates scaled to its neighbour distance."""
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(coords).query(coords, k=2)
    scale = spec["neighbor_distance"] / float(np.median(distance[:, 1]))
    return {"strategy": spec["strategy"], "n_genes": spec["n_genes"], "n_neighbors": spec["n_neighbors"],
            "coord_scale": scale}  # fmt: skip


SEEDS = (0, 1, 2, 3, 4)
FIGURES = ("leiden_ARI", "leiden_NMI", "leiden_n_domains", "kmeans_ARI", "kmeans_NMI", "paper_ARI", "paper_NMI",
           "paper_resolution", "paper_n_clusters")  # fmt: skip


def summarise(values: list[float]) -> dict:
    """Mean, sample sd (n - 1) and the values of one figure over the seeds."""
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "sd": float(array.std(ddof=1)) if array.size > 1 else 0.0,
            "values": [float(x) for x in array]}  # fmt: skip


def domain_scores(adata, key: str, *, seeds=SEEDS) -> dict[str, dict]:
    """ARI/NMI against obs['domain'] of three clusterings of obsm[key], each over ``seeds``.

    ``leiden``: Leiden at as many domains as annotated (``oc.tl.spatial_domains``; ``leiden_n_domains``:
    the count found: the closest one where no resolution gives exactly that many); ``kmeans``: k-means
    with that k; ``paper``: Leiden at the resolution of 0.1..1.0 maximising ARI + NMI
    (``oc.tl.evaluate_clustering``, the paper's protocol), with that resolution and cluster count.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    import omnicell as oc

    labels = adata.obs["domain"].astype(str).to_numpy()
    k = len(set(labels))
    runs: dict[str, list] = {name: [] for name in FIGURES}
    for seed in seeds:
        oc.tl.spatial_domains(adata, n_domains=k, use_rep=key, random_state=seed, key_added="_domain")
        leiden = adata.obs.pop("_domain").astype(str).to_numpy()
        kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(adata.obsm[key])
        oc.tl.evaluate_clustering(adata, "domain", use_rep=key, select="ari+nmi", random_state=seed, key_added="_best")
        del adata.obs["_best"]
        best = adata.uns["omnicell"]["evaluate_clustering"]
        runs["leiden_ARI"].append(adjusted_rand_score(labels, leiden))
        runs["leiden_NMI"].append(normalized_mutual_info_score(labels, leiden))
        runs["leiden_n_domains"].append(adata.uns["omnicell"]["spatial_domains"]["n_domains_found"])
        runs["kmeans_ARI"].append(adjusted_rand_score(labels, kmeans))
        runs["kmeans_NMI"].append(normalized_mutual_info_score(labels, kmeans))
        runs["paper_ARI"].append(best["ari"])
        runs["paper_NMI"].append(best["nmi"])
        runs["paper_resolution"].append(best["best_resolution"])
        runs["paper_n_clusters"].append(best["n_clusters"])
    return {name: summarise(values) for name, values in runs.items()}


def omnicell_domains(adata, model, options: dict) -> dict[str, dict]:
    import omnicell as oc

    oc.pp.tokenize(adata, model, spatial=True, **options)
    oc.tl.embed_cells(adata, model)
    return {"niche": domain_scores(adata, "X_omnicell_niche"), "cell": domain_scores(adata, "X_omnicell")}


def pca_domains(adata) -> dict[str, dict]:
    import scanpy as sc

    import omnicell as oc

    base = adata.copy()
    sc.pp.normalize_total(base, target_sum=1e4)
    sc.pp.log1p(base)
    sc.pp.pca(base, n_comps=50, random_state=0)
    oc.tl.neighborhood_average(base, use_rep="X_pca", n_neighbors=9)
    return {"neighbourhood_average": domain_scores(base, "X_pca_niche"), "cell": domain_scores(base, "X_pca")}


def domain_table(rows: dict[str, dict]) -> str:
    """One line per representation: mean +- sd of each figure over the seeds."""
    width = {name: max(15, len(name) + 1) for name in FIGURES}
    lines = ["representation".ljust(28) + "".join(name.rjust(width[name]) for name in FIGURES)]
    for name, scores in rows.items():
        cells = "".join(f"{scores[f]['mean']:.3f} +- {scores[f]['sd']:.3f}".rjust(width[f]) for f in FIGURES)
        lines.append(name.ljust(28) + cells)
    return "\n".join(lines)


def main() -> None:
    import omnicell as oc
    from omnicell.cli._demo import run_demo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="omnicell-tiny")
    parser.add_argument("--data", type=Path, required=True, help="folder written by scripts/prepare_tiny_data.py")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-demo", action="store_true", help="leave out the pbmc68k demo (part 1)")
    parser.add_argument("--skip-cite", action="store_true", help="leave out the CITE-seq 5k fine-tuning (part 2)")
    parser.add_argument("--starmap-epochs", type=int, default=2, help="epochs of the fine-tuning on the section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    oc.settings.progress_bar = False
    args.output.mkdir(parents=True, exist_ok=True)
    model = oc.models.load(args.model, device="cpu")
    spec = tokenization(model, args.model)
    report: dict = {"model": model.name, "model_sha256": model.sha256, "parameters": model.n_parameters,
                    "tokenization": spec}  # fmt: skip

    if not args.skip_demo:
        started = time.perf_counter()
        summary = run_demo(args.output / "demo", model=args.model)  # by name: its folder holds the tokenisation
        report["pbmc68k_reduced_clustering"] = summary.reset_index().to_dict(orient="records")
        report["pbmc68k_reduced_seconds"] = time.perf_counter() - started
        print(summary.to_string())

    if not args.skip_cite:  # 2. fine-tuning on a data set the model never saw
        cite = ad.read_h5ad(args.data / "cite_5k.h5ad")
        oc.pp.tokenize(cite, model, **spec["single_cell"])
        started = time.perf_counter()
        oc.tl.fine_tune(cite, model, epochs=3, batch_size=16, lr=3e-4, validation_fraction=0.25, random_state=0,
                        log=args.output / "fine_tune_cite_5k.csv")  # fmt: skip
        record = cite.uns["omnicell"]["fine_tune"]
        report["cite_5k_fine_tune"] = {
            "heldout_masked_loss": [float(x) for x in record["heldout_loss"]],
            "train_masked_loss": [float(x) for x in record["train_loss"]],
            "n_train": int(record["n_train"]), "n_validation": int(record["n_validation"]),
            "steps": int(record["steps"]), "seconds": time.perf_counter() - started,
        }  # fmt: skip
        print("cite_5k held-out masked loss:", report["cite_5k_fine_tune"]["heldout_masked_loss"])

    # 3. spatial domains on the STARmap section, before and after fine-tuning on it (no labels used)
    section = ad.read_h5ad(args.data / "starmap_by3.h5ad")
    options = spatial_options(spec["spatial"], section.obsm["spatial"])
    baseline = pca_domains(section)
    before = omnicell_domains(section, model, options)
    started = time.perf_counter()
    tuned = oc.tl.fine_tune(section, model, spatial=True, epochs=args.starmap_epochs, batch_size=16, lr=3e-4,
                            validation_fraction=0.1, random_state=0,
                            log=args.output / "fine_tune_starmap.csv")  # fmt: skip
    seconds = time.perf_counter() - started
    record = section.uns["omnicell"]["fine_tune"]
    after = omnicell_domains(section, tuned, options)
    report["starmap_domains"] = {
        "seeds": list(SEEDS), "tokenize": options, "pca": baseline, "zero_shot": before, "fine_tuned": after,
        "heldout_masked_loss": [float(x) for x in record["heldout_loss"]], "fine_tune_epochs": args.starmap_epochs,
        "fine_tune_steps": int(record["steps"]), "fine_tune_seconds": seconds,
    }  # fmt: skip
    print(f"STARmap domains (7 annotated), mean +- sd over seeds {list(SEEDS)}; fine-tuning: {args.starmap_epochs} "
          f"epochs, {int(record['steps'])} steps, {seconds:.0f} s, held-out masked loss "
          f"{[round(float(x), 4) for x in record['heldout_loss']]}")  # fmt: skip
    print(domain_table({
        "PCA neighbourhood average": baseline["neighbourhood_average"], "PCA cells": baseline["cell"],
        "omnicell niche zero-shot": before["niche"], "omnicell cells zero-shot": before["cell"],
        "omnicell niche fine-tuned": after["niche"], "omnicell cells fine-tuned": after["cell"],
    }))  # fmt: skip
    (args.output / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
