"""One function per public dataset: read the file (local copy or download) and shape it as omnicell expects."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from omnicell.datasets._fetch import DATA_DIR_ENV, DataFile, cache_folder, fetch

# Files prepared for omnicell (subsets of public data) are published as assets of the repository's
# "datasets-v1" release; their hashes are those of the files as distributed. The Visium section is the
# scverse example-data copy of 10x Genomics' V1_Adult_Mouse_Brain, hash as in squidpy's registry.
_RELEASE = "https://github.com/omnicell/omnicell/releases/download/datasets-v1"
STARMAP = DataFile(
    name="starmap_by3.h5ad",
    url=f"{_RELEASE}/starmap_by3.h5ad",
    sha256="5df2cc45653b23d684b3617452fc99b6a7f8147cc9f6de56ef4661f7b468cbde",
)
PBMC_CITE = DataFile(
    name="pbmc_cite_2batch.h5ad",
    url=f"{_RELEASE}/pbmc_cite_2batch.h5ad",
    sha256="831339b2131c31aa17108484f7c50eb4ceeb85c39993959ddcfd61bcd49f05bd",
)
VISIUM_MOUSE_BRAIN = DataFile(
    name="visium_hne_adata.h5ad",
    url="https://exampledata.scverse.org/squidpy/visium_hne_adata.h5ad",
    sha256="3571e6b84dd32c73ece8ae0bebbd4758e77c6fdd321b2bbe0d4ffa8ed56e1cbe",
)
_FILES = {
    "pbmc_cite": PBMC_CITE,
    "starmap_visual_cortex": STARMAP,
    "visium_mouse_brain": VISIUM_MOUSE_BRAIN,
}


def files() -> pd.DataFrame:
    """The dataset files: name, source URL, sha256, and whether a copy is in ``OMNICELL_DATA_DIR`` or the cache.

    Offline, place the files listed here in a folder and point ``OMNICELL_DATA_DIR`` at it.
    (:func:`pbmc68k_reduced` needs no file: it ships with scanpy.)
    """
    env = os.environ.get(DATA_DIR_ENV)
    rows = []
    for function, file in _FILES.items():
        local = env is not None and (Path(env).expanduser() / file.name).is_file()
        cached = (cache_folder() / file.name).is_file()
        rows.append({"function": function, "file": file.name, "url": file.url, "sha256": file.sha256,
                     "in_data_dir": local, "cached": cached})  # fmt: skip
    return pd.DataFrame(rows).set_index("function")


def pbmc68k_reduced() -> AnnData:
    """700 PBMCs of 10 cell types (scanpy's ``pbmc68k_reduced``) with their integer counts recovered.

    scanpy ships the file (no download). Its ``.X`` is scaled and ``.raw.X`` is log1p(CP10k) of 765
    genes; the counts are recovered exactly as ``round(expm1(raw.X) / 1e4 * obs['n_counts'])``.

    Returns
    -------
    AnnData of 700 cells x 765 genes (human gene symbols) with counts in ``X`` (float32, sparse),
    ``obs['cell_type']`` (the original ``bulk_labels``), ``obs['n_counts']`` and the original
    ``obsm['X_umap']``.
    """
    import scanpy as sc

    reduced = sc.datasets.pbmc68k_reduced()
    lognorm = reduced.raw.X.toarray() if sp.issparse(reduced.raw.X) else np.asarray(reduced.raw.X)
    counts = np.rint(np.expm1(lognorm) / 1e4 * reduced.obs["n_counts"].to_numpy()[:, None])
    obs = pd.DataFrame(
        {"cell_type": reduced.obs["bulk_labels"].astype("category"), "n_counts": reduced.obs["n_counts"]},
        index=reduced.obs_names,
    )
    adata = AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=reduced.raw.var_names.astype(str)),
        obsm={"X_umap": np.asarray(reduced.obsm["X_umap"])},
    )
    adata.uns["dataset"] = "scanpy pbmc68k_reduced (10x PBMC 68k subset), counts recovered from raw.X"
    return adata


def pbmc_cite(*, folder: str | os.PathLike | None = None) -> AnnData:
    """10x Genomics PBMC CITE-seq, the 10k and 5k (v3) runs: two batches of 200 cells, RNA counts.

    Parameters
    ----------
    folder
        Read ``pbmc_cite_2batch.h5ad`` from this folder (nothing is downloaded); None looks in
        ``OMNICELL_DATA_DIR``, then the cache, then downloads.

    Returns
    -------
    AnnData of 400 cells x 15,792 genes (human gene symbols) with raw counts in ``X`` and
    ``obs['batch']`` (``"pbmc10k_cite"``, ``"pbmc5k_cite"``). No cell-type labels.
    """
    import anndata as ad

    adata = ad.read_h5ad(fetch(PBMC_CITE, folder=folder))
    adata.obs["batch"] = adata.obs["batch"].astype("category")
    return adata


def starmap_visual_cortex(*, folder: str | os.PathLike | None = None) -> AnnData:
    """STARmap mouse visual cortex section BY3 (1,020-gene panel) with cell types and cortical layers.

    Parameters
    ----------
    folder
        Read ``starmap_by3.h5ad`` from this folder (nothing is downloaded); None looks in
        ``OMNICELL_DATA_DIR``, then the cache, then downloads.

    Returns
    -------
    AnnData of 1,207 cells x 1,020 genes (mouse gene symbols) with raw counts in ``X``,
    ``obs['cell_type']`` (16 types), ``obs['domain']`` (7 cortical layers / regions) and
    ``obsm['spatial']`` (pixels; nearest cells are about 150 apart).
    """
    import anndata as ad

    adata = ad.read_h5ad(fetch(STARMAP, folder=folder))
    for key in ("cell_type", "domain"):
        adata.obs[key] = adata.obs[key].astype("category")
    return adata


def visium_mouse_brain(*, folder: str | os.PathLike | None = None) -> AnnData:
    """10x Genomics Visium section of an adult mouse brain (V1_Adult_Mouse_Brain, H&E), squidpy's copy.

    Spot-based (each spot 55 µm, several cells): the data for :func:`omnicell.tl.deconvolve`.

    Parameters
    ----------
    folder
        Read ``visium_hne_adata.h5ad`` from this folder (nothing is downloaded); None looks in
        ``OMNICELL_DATA_DIR``, then the cache, then downloads (about 300 MB).

    Returns
    -------
    AnnData of 2,688 spots x 18,078 genes (mouse gene symbols) with ``obs['cluster']`` (squidpy's
    annotation of brain regions) and ``obsm['spatial']``. ``X`` holds raw counts when the file keeps them
    (``layers['counts']`` or ``.raw``), else squidpy's log-normalised values, whose per-spot gene ranks
    (what the model reads) are those of the counts.
    """
    import anndata as ad

    adata = ad.read_h5ad(fetch(VISIUM_MOUSE_BRAIN, folder=folder))
    if "counts" in adata.layers:
        adata.X = adata.layers["counts"]
    elif adata.raw is not None and adata.raw.n_vars == adata.n_vars:
        adata.X = adata.raw.X
    return adata
