"""Figures for omnicell-tiny's model card: clustering vs PCA, fine-tuning on held-out / spatial data.

    python scripts/evaluate_tiny.py --model src/omnicell/models_data/omnicell-tiny \
        --data /tmp/omnicell-tiny-data --output /tmp/omnicell-tiny-eval

Writes ``evaluation.json`` (and the fine-tuning loss logs) into ``--output``:

1. pbmc68k_reduced: Leiden ARI/NMI (best resolution of 0.1..1.0) of the omnicell embedding beside
   expression PCA, through ``omnicell._demo.run_demo`` (the README's demo);
2. held-out masked loss of ``cite_5k`` (PBMC CITE-seq 5k batch, never seen in pretraining) before
   and after ``oc.tl.fine_tune`` on 75% of its cells, measured on the other 25%;
3. STARmap spatial domains: k-means (k = number of annotated domains) on the niche embedding,
   ARI against ``obs['domain']``, before and after ``oc.tl.fine_tune(spatial=True)`` on the section.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import anndata as ad
import torch


def domain_ari(adata, model, *, coord_scale: float, seed: int = 0) -> dict[str, float]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    import omnicell as oc

    oc.pp.tokenize(adata, model, spatial=True, n_neighbors=9, n_genes=64, strategy="expressed", coord_scale=coord_scale)
    oc.tl.embed_cells(adata, model)
    labels = adata.obs["domain"].astype(str).to_numpy()
    result = {}
    for key in ("X_omnicell", "X_omnicell_niche"):
        clusters = KMeans(n_clusters=len(set(labels)), n_init=10, random_state=seed).fit_predict(adata.obsm[key])
        result[f"{key}_ARI"] = float(adjusted_rand_score(labels, clusters))
        result[f"{key}_NMI"] = float(normalized_mutual_info_score(labels, clusters))
    return result


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
    report: dict = {"model": model.name, "model_sha256": model.sha256, "parameters": model.n_parameters}

    if not args.skip_demo:
        started = time.perf_counter()
        summary = run_demo(args.output / "demo", model=model)
        report["pbmc68k_reduced_clustering"] = summary.reset_index().to_dict(orient="records")
        report["pbmc68k_reduced_seconds"] = time.perf_counter() - started
        print(summary.to_string())

    # 2. fine-tuning on a data set the model never saw
    cite = ad.read_h5ad(args.data / "cite_5k.h5ad")
    oc.pp.tokenize(cite, model, n_genes=1024)
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
    before = domain_ari(section, model, coord_scale=0.01)
    started = time.perf_counter()
    tuned = oc.tl.fine_tune(section, model, spatial=True, epochs=2, batch_size=16, lr=3e-4, validation_fraction=0.1,
                            seed=0, log=args.output / "fine_tune_starmap.csv")  # fmt: skip
    record = section.uns["omnicell"]["fine_tune"]
    seconds = time.perf_counter() - started
    after = domain_ari(section, tuned, coord_scale=0.01)
    report["starmap_domains"] = {
        "before": before, "after": after, "heldout_masked_loss": [float(x) for x in record["heldout_loss"]],
        "fine_tune_steps": int(record["steps"]), "fine_tune_seconds": seconds,
    }  # fmt: skip
    print("STARmap domain ARI before/after:", before, after)
    (args.output / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
