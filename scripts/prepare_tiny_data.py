"""Write the training files of omnicell-tiny (recipes/omnicell-tiny.yaml) into a folder outside the repository.

    python scripts/prepare_tiny_data.py /tmp/omnicell-tiny-data
    export OMNICELL_TINY_DATA=/tmp/omnicell-tiny-data
    omnicell pretrain recipes/omnicell-tiny.yaml --output runs/omnicell-tiny

Sources (all available without download, see ../shared/data/README.md):

- ``pbmc68k_counts.h5ad``: scanpy's ``pbmc68k_reduced`` (700 PBMCs, 765 genes) with its integer counts
  recovered as ``round(expm1(raw.X) / 1e4 * obs['n_counts'])``;
- ``celltypist_sample.h5ad``: celltypist's ``sample_cell_by_gene.csv`` (559 cells, raw counts);
- ``cite_10k.h5ad`` and ``cite_5k.h5ad``: the two batches of ``pbmc_cite_2batch.h5ad``; only the 10k
  batch is used for pretraining, the 5k batch is held out to measure fine-tuning;
- ``starmap_by3.h5ad``: a symbolic link to the STARmap section (spatial stage).

Gene names stay as they are (human or mouse symbols); ``omnicell pretrain`` maps them to human
Ensembl ids for the vocabulary and the tokenisation.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

SHARED = Path(os.environ.get("OMNICELL_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()


def pbmc68k_counts() -> ad.AnnData:
    import scanpy as sc

    reduced = sc.datasets.pbmc68k_reduced()
    raw = reduced.raw.to_adata()
    lognorm = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    counts = np.rint(np.expm1(lognorm) / 1e4 * reduced.obs["n_counts"].to_numpy()[:, None])
    adata = ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=reduced.obs[["bulk_labels", "n_counts"]].copy(),
        var=pd.DataFrame(index=raw.var_names.astype(str)),
    )
    return adata


def celltypist_sample() -> ad.AnnData:
    import celltypist

    path = Path(celltypist.__file__).parent / "data" / "samples" / "sample_cell_by_gene.csv"
    table = pd.read_csv(path, index_col=0)
    return ad.AnnData(
        X=sp.csr_matrix(table.to_numpy(dtype=np.float32)),
        obs=pd.DataFrame(index=table.index.astype(str)),
        var=pd.DataFrame(index=table.columns.astype(str)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="folder to write the files into (not inside the repository)")
    args = parser.parse_args()
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    pbmc68k_counts().write_h5ad(out / "pbmc68k_counts.h5ad")
    celltypist_sample().write_h5ad(out / "celltypist_sample.h5ad")
    cite = ad.read_h5ad(SHARED / "data" / "pbmc_cite_2batch.h5ad")
    for batch, name in (("pbmc10k_cite", "cite_10k"), ("pbmc5k_cite", "cite_5k")):
        part = cite[cite.obs["batch"].astype(str) == batch].copy()
        if part.n_obs == 0:
            raise SystemExit(
                f"no cells of batch {batch!r} in pbmc_cite_2batch.h5ad (batches: {sorted(cite.obs['batch'].unique())})"
            )
        part.write_h5ad(out / f"{name}.h5ad")
    link = out / "starmap_by3.h5ad"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(SHARED / "data" / "starmap_by3.h5ad")
    for path in sorted(out.glob("*.h5ad")):
        backed = ad.read_h5ad(path, backed="r")
        print(f"{path}: {backed.n_obs} cells x {backed.n_vars} genes")
        backed.file.close()


if __name__ == "__main__":
    main()
