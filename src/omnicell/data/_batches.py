"""From an expression matrix to token batches, one batch of cells at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from ._softrank import soft_rank

__all__ = ["TokenBatch", "batch_for_cells", "build_batch", "check_values", "iter_token_batches", "read_block"]


def read_block(matrix, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Dense float64 values of ``matrix[rows][:, columns]``.

    ``matrix`` may be a NumPy array, a SciPy sparse matrix, or a backed AnnData matrix (h5py
    dataset or anndata sparse dataset); only the requested rows are read.
    """
    unique_rows, inverse = np.unique(rows, return_inverse=True)
    block = matrix[unique_rows]
    if sp.issparse(block):
        block = block.tocsr()[:, columns].toarray()
    else:
        block = np.asarray(block)[:, columns]
    return np.asarray(block, dtype=np.float64)[inverse]


def check_values(block: np.ndarray, *, where: str) -> None:
    """Raise a ValueError if ``block`` holds negative or non-finite values."""
    if not np.isfinite(block).all():
        raise ValueError(
            f"{where} contains NaN or infinite values; OmniCell needs finite non-negative expression. "
            "Fill or remove them (e.g. adata.X = np.nan_to_num(adata.X)) and try again."
        )
    if (block < 0).any():
        raise ValueError(
            f"{where} contains negative values (scaled or centred data?). OmniCell ranks non-negative "
            "expression within each cell: use raw counts or normalised values (layer=...)."
        )


@dataclasses.dataclass
class TokenBatch:
    """Model inputs for a batch of sequences.

    Each sequence is ``1 + k`` cell blocks (``k = 0`` in single-cell mode); a block is
    ``<RNA_START>``, one token per selected gene, ``<RNA_END>``.

    Attributes
    ----------
    tokens
        (B, T) token ids.
    values
        (B, T) soft ranks, 0 at the markers.
    positions
        (B, T, 2) raw coordinates of each token's cell, or None in single-cell mode.
    cell_index
        (B, T) block number of each gene token, -1 on markers and padding.
    n_blocks
        Cell blocks per sequence.
    padding_mask
        (B, T) True on real tokens, or None when no sequence is padded.
    """

    tokens: np.ndarray
    values: np.ndarray
    positions: np.ndarray | None
    cell_index: np.ndarray
    n_blocks: int
    padding_mask: np.ndarray | None = None

    @property
    def expressed(self) -> np.ndarray:
        """(B, T) True on gene tokens with a soft rank above 0."""
        return self.values > 0

    def to_torch(self, device: torch.device | str) -> dict[str, torch.Tensor | None]:
        """Tensors for :meth:`omnicell.model.OmniCell.forward` and pooling, on ``device``.

        Keys: ``tokens``, ``values``, ``positions``, ``padding_mask`` (the forward arguments),
        ``cell_index`` and ``expressed`` (for pooling); absent parts are None.
        """
        arrays = {
            "tokens": self.tokens,
            "values": self.values,
            "positions": self.positions,
            "padding_mask": self.padding_mask,
            "cell_index": self.cell_index,
            "expressed": self.expressed,
        }
        return {key: None if value is None else torch.from_numpy(value).to(device) for key, value in arrays.items()}


def build_batch(
    soft_ranks: np.ndarray,
    gene_tokens: np.ndarray,
    windows: np.ndarray,
    *,
    rna_start: int,
    rna_end: int,
    coordinates: np.ndarray | None = None,
) -> TokenBatch:
    """Assemble sequences from per-cell soft ranks.

    Parameters
    ----------
    soft_ranks
        (n, G) soft ranks of the cells taking part.
    gene_tokens
        (G,) token id of each selected gene.
    windows
        (B, 1 + k) rows of ``soft_ranks`` forming each sequence, focal cell first.
    coordinates
        (n, 2) raw coordinates of the cells, or None in single-cell mode (positions (0, 0)).
    """
    n_cells, n_genes = soft_ranks.shape
    block_length = n_genes + 2
    block_tokens = np.empty((n_cells, block_length), dtype=np.int64)
    block_tokens[:, 0], block_tokens[:, -1], block_tokens[:, 1:-1] = rna_start, rna_end, gene_tokens
    block_values = np.zeros((n_cells, block_length), dtype=np.float32)
    block_values[:, 1:-1] = soft_ranks
    batch, n_blocks = windows.shape
    block_index = np.full(block_length, -1, dtype=np.int64)
    block_index[1:-1] = 0
    cell_index = np.where(block_index >= 0, np.arange(n_blocks)[:, None], -1).reshape(1, -1)
    positions = None
    if coordinates is not None:
        per_cell = np.asarray(coordinates, dtype=np.float32)[windows]
        positions = np.repeat(per_cell, block_length, axis=1)
    return TokenBatch(
        tokens=block_tokens[windows].reshape(batch, -1),
        values=block_values[windows].reshape(batch, -1),
        positions=positions,
        cell_index=np.repeat(cell_index, batch, axis=0),
        n_blocks=n_blocks,
    )


def batch_for_cells(
    matrix,
    focal: np.ndarray,
    columns: np.ndarray,
    gene_tokens: np.ndarray,
    *,
    rna_start: int,
    rna_end: int,
    neighbors: np.ndarray | None = None,
    coordinates: np.ndarray | None = None,
    where: str = "The expression matrix",
) -> TokenBatch:
    """The sequences of the ``focal`` cells (with their neighbours in spatial mode).

    Only the rows needed (the cells and their neighbours) are read, validated and soft-ranked.
    """
    members = focal[:, None] if neighbors is None else np.concatenate([focal[:, None], neighbors[focal]], 1)
    cells, windows = np.unique(members, return_inverse=True)
    block = read_block(matrix, cells, columns)
    check_values(block, where=where)
    return build_batch(
        soft_rank(block),
        gene_tokens,
        windows.reshape(members.shape),
        rna_start=rna_start,
        rna_end=rna_end,
        coordinates=None if coordinates is None else coordinates[cells],
    )


def iter_token_batches(
    matrix,
    columns: np.ndarray,
    gene_tokens: np.ndarray,
    *,
    batch_size: int,
    **options,
) -> Iterator[tuple[np.ndarray, TokenBatch]]:
    """Yield ``(focal cell indices, TokenBatch)`` over all rows of ``matrix`` in order.

    ``options`` are those of :func:`batch_for_cells`; nothing is built for the whole dataset at once.
    """
    n_obs = matrix.shape[0]
    for start in range(0, n_obs, batch_size):
        focal = np.arange(start, min(start + batch_size, n_obs))
        yield focal, batch_for_cells(matrix, focal, columns, gene_tokens, **options)
