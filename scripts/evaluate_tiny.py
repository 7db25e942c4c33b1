"""Figures for omnicell-tiny's model card: clustering vs PCA, fine-tuning on held-out / spatial data.

    python scripts/evaluate_tiny.py --model src/omnicell/models_data/omnicell-tiny \
        --data /tmp/omnicell-tiny-data --output /tmp/omnicell-tiny-eval

Writes ``evaluation.json`` (and the fine-tuning loss logs) into ``--output``:

1. pbmc68k_reduced: Leiden ARI/NMI (best resolution of 0.1..1.0) of the omnicell embedding beside
   expression PCA, through ``omnicell._demo.run_demo`` (the README's demo);
2. held-out masked loss of ``cite_5k`` (PBMC CITE-seq 5k batch, never seen in pretraining) before
   and after ``oc.tl.fine_tune`` on 75% of its cells, measured on the other 25%;
3. STARmap spatial domains: ``oc.tl.spatial_domains`` (Leiden at the resolution giving as many
   domains as annotated) and k-means with that k on the niche embedding, ARI/NMI against
   ``obs['domain']``, zero-shot and after ``oc.tl.fine_tune(spatial=True)`` on the section, beside
   the same on expression PCA (cells alone) and on its neighbourhood average
   (``oc.tl.neighborhood_average``, the cell and its 9 nearest cells).

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
    from omnicell._demo import _model_folder

    folder = _model_folder(model_ref)
    return json.loads((folder / "tokenization.json").read_text())


def spatial_options(spec: dict, coords) -> dict:
    """tokenize options of the model's spatial defaults; coordinates scaled to its neighbour distance."""
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(coords).query(coords, k=2)
    scale = spec["neighbor_distance"] / float(np.median(distance[:, 1]))
    return {"strategy": spec["strategy"], "n_genes": spec["n_genes"], "n_neighbors": spec["n_neighbors"],
            "coord_scale": scale}  # fmt: skip


def domain_scores(adata, key: str, *, seed: int = 0) -> dict[str, float]:
    """ARI/NMI against obs['domain'] of Leiden (as many domains as annotated) and k-means on obsm[key]."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    import omnicell as oc

    labels = adata.obs["domain"].astype(str).to_numpy()
    k = len(set(labels))
    oc.tl.spatial_domains(adata, n_domains=k, use_rep=key, seed=seed, key_added="_domain")
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(adata.obsm[key])
    leiden = adata.obs.pop("_domain").astype(str).to_numpy()
    return {
        "leiden_ARI": float(adjusted_rand_score(labels, leiden)),
        "leiden_NMI": float(normalized_mutual_info_score(labels, leiden)),
        "kmeans_ARI": float(adjusted_rand_score(labels, kmeans)),
        "kmeans_NMI": float(normalized_mutual_info_score(labels, kmeans)),
    }


def omnicell_domains(adata, model, options: dict) -> dict[str, dict[str, float]]:
    import omnicell as oc

    oc.pp.tokenize(adata, model, spatial=True, **options)
    oc.tl.embed_cells(adata, model)
    return {"niche": domain_scores(adata, "X_omnicell_niche"), "cell": domain_scores(adata, "X_omnicell")}


def pca_domains(adata) -> dict[str, dict[str, float]]:
    import scanpy as sc

    import omnicell as oc

    base = adata.copy()
    sc.pp.normalize_total(base, target_sum=1e4)
    sc.pp.log1p(base)
    sc.pp.pca(base, n_comps=50, random_state=0)
    oc.tl.neighborhood_average(base, use_rep="X_pca", n_neighbors=9)
    return {"neighbourhood_average": domain_scores(base, "X_pca_niche"), "cell": domain_scores(base, "X_pca")}


def main() -> None:
    import omnicell as oc
    from omnicell._demo import run_demo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="omnicell-tiny")
    parser.add_argument("--data", type=Path, required=True, help="folder written by scripts/prepare_tiny_data.py")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-demo", action="store_true")
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

    # 2. fine-tuning on a data set the model never saw
    cite = ad.read_h5ad(args.data / "cite_5k.h5ad")
    oc.pp.tokenize(cite, model, **spec["single_cell"])
    started = time.perf_counter()
    oc.tl.fine_tune(cite, model, epochs=3, batch_size=16, lr=3e-4, validation_fraction=0.25, seed=0,
                    log=args.output / "fine_tune_cite_5k.csv")  # fmt: skip
    record = cite.uns["omnicell"]["fine_tune"]
    report["cite_5k_fine_tune"] = {
        "heldout_masked_loss": [float(x) for x in record["heldout_loss"]],
        "train_masked_loss": [float(x) for x in record["train_loss"]],
        "n_train": int(record["n_train"]), "n_validation": int(record["n_validation"]),
        "steps": int(record["steps"]), "seconds": time.perf_counter() - started,
    }  # fmt: skip
    print("cite_5k held-out masked loss:", report["cite_5k_fine_tune"]["heldout_masked_loss"])

    # 3. spatial domains on the STARmap section, before and after fine-tuning on it
    section = ad.read_h5ad(args.data / "starmap_by3.h5ad")
    options = spatial_options(spec["spatial"], section.obsm["spatial"])
    baseline = pca_domains(section)
    print("STARmap expression PCA:", baseline)
    before = omnicell_domains(section, model, options)
    print("STARmap omnicell zero-shot:", before)
    started = time.perf_counter()
    tuned = oc.tl.fine_tune(section, model, spatial=True, epochs=2, batch_size=16, lr=3e-4, validation_fraction=0.1,
                            seed=0, log=args.output / "fine_tune_starmap.csv")  # fmt: skip
    record = section.uns["omnicell"]["fine_tune"]
    seconds = time.perf_counter() - started
    after = omnicell_domains(section, tuned, options)
    report["starmap_domains"] = {
        "tokenize": options, "pca": baseline, "zero_shot": before, "fine_tuned": after,
        "heldout_masked_loss": [float(x) for x in record["heldout_loss"]],
        "fine_tune_steps": int(record["steps"]), "fine_tune_seconds": seconds,
    }  # fmt: skip
    print("STARmap omnicell fine-tuned:", after)
    (args.output / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
