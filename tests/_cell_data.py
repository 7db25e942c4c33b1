"""Real data with real embeddings for the cell-level and spatial task tests (PCA stands in for OmniCell)."""

from __future__ import annotations

import functools

import anndata as ad
import numpy as np
import scanpy as sc

from conftest import STARMAP


@functools.lru_cache(maxsize=1)
def _starmap_pca() -> ad.AnnData:
    adata = ad.read_h5ad(STARMAP)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=30, random_state=0)
    return adata


def starmap_pca() -> ad.AnnData:
    """The STARmap section (1207 cells, labels ``cell_type`` and ``domain``) with ``obsm['X_pca']``, a fresh copy."""
    return _starmap_pca().copy()


def pbmc_counts(adata: ad.AnnData) -> np.ndarray:
    """pbmc68k_reduced's integer counts, recovered exactly from ``.raw`` (log1p CP10k) and ``n_counts``."""
    raw = adata.raw.X.toarray() if hasattr(adata.raw.X, "toarray") else np.asarray(adata.raw.X)
    return np.round(np.expm1(raw) / 1e4 * adata.obs["n_counts"].to_numpy()[:, None])
