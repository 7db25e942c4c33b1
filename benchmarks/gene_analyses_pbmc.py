"""The gene-level analyses on scanpy's pbmc68k_reduced, with the figures the issue asks for.

Runs ``oc.tl.embed_genes``, ``gene_modules``, ``marker_genes``, ``expert_usage`` and
``gene_importance`` on pbmc68k_reduced (700 cells, 765 genes; tokenised from ``.raw``, all genes),
reads the results back with scanpy (``rank_genes_groups_df``, the dot plot), writes and reads an
h5ad, and prints per ``bulk_labels`` group:

* the overlap of the top-``n`` embedding markers with the top-``n`` of
  ``sc.tl.rank_genes_groups(method='wilcoxon')`` (scanpy's defaults, ``.raw``), as a count and a
  share of ``n``;
* the one-vs-rest AUC of the prototype-cosine ROC helper ``oc.tl.importance_roc``.

It also saves the expert heatmap (rows ordered by a coarse lineage) and the marker dot plot.

``--model`` takes a registry name or checkpoint folder whose vocabulary covers the genes; without
it, a small random-weight model is built whose vocabulary holds stand-in ids for pbmc68k_reduced's
symbols (so the figures are then those of an untrained network, a baseline).

Usage (from the repository root)::

    python benchmarks/gene_analyses_pbmc.py --out /tmp/pbmc_gene_analyses
    python benchmarks/gene_analyses_pbmc.py --model omnicell-v1 --out results/   # a trained model
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py would shadow the standard library's tokenize module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import shlex
import time

ROOT = Path(__file__).resolve().parents[1]
try:
    import omnicell  # noqa: F401
except ImportError:  # pragma: no cover - running from a checkout
    sys.path.insert(0, str(ROOT / "src"))

LINEAGE = {
    "CD4+/CD25 T Reg": "T/NK", "CD4+/CD45RA+/CD25- Naive T": "T/NK", "CD4+/CD45RO+ Memory": "T/NK",
    "CD8+ Cytotoxic T": "T/NK", "CD8+/CD45RA+ Naive Cytotoxic": "T/NK", "CD56+ NK": "T/NK",
    "CD19+ B": "B", "CD14+ Monocyte": "myeloid", "Dendritic": "myeloid", "CD34+": "progenitor",
}  # fmt: skip


def random_model(n_genes: int, path: Path):
    import torch

    import omnicell as oc

    tokens = {"<RNA_START>": 0, "<RNA_END>": 1, "<ATAC_START>": 2, "<ATAC_END>": 3}
    tokens.update({f"ENSG{i:011d}": i + 3 for i in range(1, n_genes + 1)})
    config = oc.nn.OmniCellConfig(
        num_gene=len(tokens), d_model=32, heads=4, num_layers=2, hidden_dim=64,
        num_shared=2, num_routing=6, topk=2, dim=8, token_per_cell=n_genes,
    )  # fmt: skip
    torch.manual_seed(0)
    network = oc.nn.OmniCell(config)
    for parameter in network.parameters():
        if parameter.dim() > 1:
            torch.nn.init.normal_(parameter, std=0.2)
    model = oc.models.OmniCellModel(network.eval(), oc.data.Vocabulary(tokens), name="pbmc-random", sha256="0" * 64)
    model.save(path, overwrite=True)
    return oc.models.load(path, device="cpu")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="registry name or folder (default: a random-weight model)")
    parser.add_argument("--top", type=int, default=50, help="markers compared per group")
    parser.add_argument("--out", type=Path, default=Path("pbmc_gene_analyses"))
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    import anndata as ad
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import scanpy as sc

    import omnicell as oc

    oc.settings.progress_bar = False
    args.out.mkdir(parents=True, exist_ok=True)
    adata = sc.datasets.pbmc68k_reduced()
    if args.model is None:
        model = random_model(adata.n_vars, args.out / "pbmc-random-model")
        ids = [f"ENSG{i:011d}" for i in range(1, adata.n_vars + 1)]
        adata.var["gene_id"] = ids
        adata.raw.var["gene_id"] = ids
        gene_key = "gene_id"
    else:
        model, gene_key = oc.models.load(args.model, device=args.device), None
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(model)
    timings = {}

    def timed(name, function, *a, **k):
        started = time.perf_counter()
        result = function(*a, **k)
        timings[name] = time.perf_counter() - started
        return result

    timed("tokenize", oc.pp.tokenize, adata, model, use_raw=True, gene_key=gene_key)
    timed("embed_genes", oc.tl.embed_genes, adata, model, device=args.device)
    timed("gene_modules", oc.tl.gene_modules, adata)
    timed("marker_genes", oc.tl.marker_genes, adata, "bulk_labels", model, n_genes=args.top, device=args.device)
    timed("expert_usage", oc.tl.expert_usage, adata, "bulk_labels", model)
    timed("gene_importance", oc.tl.gene_importance, adata, model, groupby="bulk_labels", device=args.device)
    auc = oc.tl.importance_roc(adata, "bulk_labels")

    sc.tl.rank_genes_groups(adata, "bulk_labels", method="wilcoxon", key_added="wilcoxon")
    ours = sc.get.rank_genes_groups_df(adata, None, key="rank_genes_omnicell")
    theirs = sc.get.rank_genes_groups_df(adata, None, key="wilcoxon")
    groups = list(adata.obs["bulk_labels"].cat.categories)
    rows = []
    for group in groups:
        mine = set(ours.loc[ours["group"] == group, "names"].head(args.top))
        reference = set(theirs.loc[theirs["group"] == group, "names"].head(args.top))
        rows.append((group, len(mine & reference), auc.loc[group, "auc"], int(auc.loc[group, "n_cells"])))

    adata.obs["lineage"] = adata.obs["bulk_labels"].map(LINEAGE).astype("category")
    oc.pl.expert_heatmap(adata, "bulk_labels", lineage_key="lineage", show=False, save=str(args.out / "experts.png"))
    oc.pl.marker_genes(adata, n_genes=3, show=False, save=str(args.out / "markers_dotplot.png"))
    oc.pl.gene_modules(adata, "bulk_labels", show=False, save=str(args.out / "gene_modules.png"))
    path = args.out / "pbmc_gene_analyses.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert back.varm["omnicell"].shape == adata.varm["omnicell"].shape
    assert sc.get.rank_genes_groups_df(back, None, key="rank_genes_omnicell").equals(ours)

    print(f"\nper group (top {args.top} markers vs scanpy wilcoxon top {args.top}; importance ROC AUC):")
    print(f"{'group':<30} {'cells':>5} {'overlap':>8} {'share':>6} {'AUC':>6}")
    for group, overlap, value, n in rows:
        print(f"{group:<30} {n:5d} {overlap:8d} {overlap / args.top:6.2f} {value:6.3f}")
    mean_overlap = float(np.mean([r[1] for r in rows]))
    print(f"{'mean':<30} {'':>5} {mean_overlap:8.1f} {mean_overlap / args.top:6.2f} {auc.attrs['macro_auc']:6.3f}")
    modules = adata.uns["omnicell"]["gene_modules"]
    print(f"gene modules: {len(modules['modules'])} (sizes {[int(s) for s in modules['sizes']]}); "
          f"seconds: {', '.join(f'{k} {v:.1f}' for k, v in timings.items())}")  # fmt: skip
    print(f"written: {path}, {args.out / 'experts.png'}, {args.out / 'markers_dotplot.png'}")
    result = {
        "model": model.name, "top": args.top, "timings_s": timings,
        "groups": [{"group": g, "n_cells": n, "overlap": o, "auc": a} for g, o, a, n in rows],
        "macro_auc": auc.attrs["macro_auc"], "mean_overlap": mean_overlap,
    }  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
