"""``omnicell demo``: the main job end to end on data that ships with scanpy, offline.

pbmc68k_reduced (700 PBMCs, 10 labelled cell types) -> counts -> ``oc.pp.tokenize`` ->
``oc.tl.embed_cells`` -> neighbours, Leiden, UMAP; the same on expression PCA; a table of ARI/NMI
against the labels, a figure and an h5ad in the output folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

__all__ = ["pbmc68k_counts", "run_demo"]

logger = logging.getLogger("omnicell")

LABELS = "bulk_labels"


def pbmc68k_counts() -> AnnData:
    """The pbmc68k_reduced data of scanpy, with its integer counts recovered from ``.raw`` (log1p CP10k)."""
    import scanpy as sc

    reduced = sc.datasets.pbmc68k_reduced()
    normalised = reduced.raw.X.toarray() if sp.issparse(reduced.raw.X) else np.asarray(reduced.raw.X)
    counts = np.rint(np.expm1(normalised) / 1e4 * reduced.obs["n_counts"].to_numpy()[:, None])
    adata = AnnData(X=sp.csr_matrix(counts.astype(np.float32)), obs=reduced.obs[[LABELS]].copy())
    adata.var_names = reduced.raw.var_names
    return adata


def _leiden_sweep(adata: AnnData, use_rep: str, resolutions: np.ndarray, seed: int) -> tuple[pd.DataFrame, str]:
    """ARI/NMI of Leiden clusters at each resolution; the best resolution's clusters are kept."""
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    sc.pp.neighbors(adata, use_rep=use_rep, key_added=use_rep, random_state=seed)
    rows, best, best_key = [], -1.0, f"leiden_{use_rep}"
    for resolution in resolutions:
        key = f"_leiden_{use_rep}_{resolution:.1f}"
        sc.tl.leiden(adata, resolution=float(resolution), neighbors_key=use_rep, key_added=key,
                     flavor="igraph", n_iterations=2, random_state=seed)  # fmt: skip
        ari = adjusted_rand_score(adata.obs[LABELS], adata.obs[key])
        nmi = normalized_mutual_info_score(adata.obs[LABELS], adata.obs[key])
        rows.append({"representation": use_rep, "resolution": round(float(resolution), 2), "ARI": ari, "NMI": nmi,
                     "n_clusters": adata.obs[key].nunique()})  # fmt: skip
        if ari > best:
            best = ari
            adata.obs[best_key] = adata.obs[key]
        del adata.obs[key]
    return pd.DataFrame(rows), best_key


def run_demo(
    output: str | os.PathLike,
    *,
    model=None,
    resolutions: np.ndarray | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Run the demo and write ``pbmc68k_omnicell.h5ad``, ``umap.png`` and ``clustering.csv`` to ``output``.

    Returns the best-resolution ARI/NMI of the omnicell embedding and of expression PCA.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    from . import pp, tl

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    resolutions = np.round(np.arange(0.1, 1.01, 0.1), 2) if resolutions is None else np.asarray(resolutions)
    adata = pbmc68k_counts()
    pp.tokenize(adata, model)
    tl.embed_cells(adata, model)

    baseline = adata.copy()
    sc.pp.normalize_total(baseline, target_sum=1e4)
    sc.pp.log1p(baseline)
    sc.pp.pca(baseline, n_comps=50, random_state=seed)
    adata.obsm["X_pca"] = baseline.obsm["X_pca"]

    tables, keys = [], {}
    for rep in ("X_omnicell", "X_pca"):
        table, keys[rep] = _leiden_sweep(adata, rep, resolutions, seed)
        tables.append(table)
    sweep = pd.concat(tables, ignore_index=True)
    summary = sweep.loc[sweep.groupby("representation")["ARI"].idxmax()].set_index("representation")

    figure, axes = plt.subplots(2, 2, figsize=(11, 10))
    for row, rep in enumerate(("X_omnicell", "X_pca")):
        sc.tl.umap(adata, neighbors_key=rep, random_state=seed)
        basis = f"X_umap_{rep.removeprefix('X_')}"
        adata.obsm[basis] = adata.obsm.pop("X_umap")
        for column, color in enumerate((LABELS, keys[rep])):
            kind = "cell types" if color == LABELS else "Leiden (best resolution)"
            sc.pl.embedding(adata, basis=basis, color=color, ax=axes[row, column], show=False,
                            title=f"{rep}: {kind}")  # fmt: skip
    figure.tight_layout()
    figure.savefig(output / "umap.png", dpi=110)
    plt.close(figure)
    sweep.to_csv(output / "clustering.csv", index=False)
    adata.uns.pop(f"{LABELS}_colors", None)
    adata.write_h5ad(output / "pbmc68k_omnicell.h5ad")
    return summary[["resolution", "ARI", "NMI", "n_clusters"]]
