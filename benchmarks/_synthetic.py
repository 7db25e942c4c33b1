"""Synthetic sparse counts shared by the benchmarks (tokenize.py, memory.py, embed.py)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def synthetic_counts(
    n_cells: int, n_genes: int, expressed: int, *, seed: int = 0, chunk: int = 10_000
) -> sp.csr_matrix:
    """Sparse counts with about ``expressed`` distinct genes per cell and gene-specific means."""
    rng = np.random.default_rng(seed)
    gene_weight = rng.gamma(0.5, 1.0, size=n_genes)
    gene_weight /= gene_weight.sum()
    pieces = []
    for start in range(0, n_cells, chunk):
        rows = min(chunk, n_cells - start)
        columns = np.sort(rng.choice(n_genes, size=(rows, expressed), p=gene_weight), axis=1)
        keep = np.ones_like(columns, dtype=bool)
        keep[:, 1:] = columns[:, 1:] != columns[:, :-1]
        indptr = np.concatenate([[0], np.cumsum(keep.sum(1))])
        data = rng.geometric(0.4, size=int(indptr[-1])).astype(np.float32)
        pieces.append(sp.csr_matrix((data, columns[keep], indptr), shape=(rows, n_genes)))
    return sp.vstack(pieces, format="csr")
