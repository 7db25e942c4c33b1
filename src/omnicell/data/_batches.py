"""From an expression matrix to token batches, one batch of cells at a time."""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import torch

from omnicell.data._matrix import check_selected, read_rows
from omnicell.data._selection import expressed_first
from omnicell.data._softrank import soft_rank_selected

__all__ = ["TokenBatch", "batch_for_cells", "build_batch"]


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

    def take(self, rows: np.ndarray | slice) -> TokenBatch:
        """The sequences ``rows`` of this batch (a padding mask is kept even where the rows need none)."""
        return TokenBatch(
            tokens=self.tokens[rows],
            values=self.values[rows],
            positions=None if self.positions is None else self.positions[rows],
            cell_index=self.cell_index[rows],
            n_blocks=self.n_blocks,
            padding_mask=None if self.padding_mask is None else self.padding_mask[rows],
        )

    def to_torch(self, device: torch.device | str) -> dict[str, torch.Tensor | None]:
        """Tensors for :meth:`omnicell.nn.OmniCell.forward` and pooling, on ``device``.

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
        (n, L) soft ranks of the cells taking part.
    gene_tokens
        (L,) token ids shared by every cell, or (n, L) per cell with -1 where a cell has fewer genes.
    windows
        (B, W) rows of ``soft_ranks`` forming each sequence, focal cell first; -1 marks a missing
        neighbour (its block is padding).
    coordinates
        (n, 2) raw coordinates of the cells, or None in single-cell mode (positions (0, 0)).

    Notes
    -----
    Each block is ``<RNA_START>``, the gene slots and ``<RNA_END>``, so every block of a batch has
    the same length; slots without a gene are padding (masked out of attention and pooling), and
    a block's content never depends on the other cells of the batch.
    """
    n_cells, n_genes = soft_ranks.shape
    batch, n_blocks = windows.shape
    length = n_blocks * (n_genes + 2)
    tokens = np.empty((batch, length), dtype=np.int64)
    values = np.empty((batch, length), dtype=np.float32)
    padding_mask = np.empty((batch, length), dtype=bool)
    cell_index = np.empty((batch, length), dtype=np.int64)
    _assemble(np.broadcast_to(gene_tokens, (n_cells, n_genes)), soft_ranks, windows, rna_start, rna_end,
              tokens, values, padding_mask, cell_index)  # fmt: skip
    positions = None
    if coordinates is not None:
        per_cell = np.zeros((n_cells + 1, 2), dtype=np.float32)  # row n_cells: missing neighbours
        per_cell[:n_cells] = coordinates
        positions = np.repeat(per_cell[np.where(windows >= 0, windows, n_cells)], n_genes + 2, axis=1)
    return TokenBatch(
        tokens=tokens,
        values=values,
        positions=positions,
        cell_index=cell_index,
        n_blocks=n_blocks,
        padding_mask=None if padding_mask.all() else padding_mask,
    )


@numba.njit(cache=True)
def _assemble(
    gene_tokens, soft_ranks, windows, rna_start, rna_end, tokens, values, padding_mask, cell_index
):  # pragma: no cover - compiled
    """Write the sequences of ``windows`` into the (B, T) outputs, one pass (see :func:`build_batch`)."""
    n_genes = gene_tokens.shape[1]
    for b in range(windows.shape[0]):
        for w in range(windows.shape[1]):
            cell = windows[b, w]
            first = w * (n_genes + 2)
            if cell < 0:  # a missing neighbour: an all-padding block
                tokens[b, first : first + n_genes + 2] = 0
                values[b, first : first + n_genes + 2] = 0.0
                padding_mask[b, first : first + n_genes + 2] = False
                cell_index[b, first : first + n_genes + 2] = -1
                continue
            tokens[b, first], tokens[b, first + n_genes + 1] = rna_start, rna_end
            for slot in (first, first + n_genes + 1):
                values[b, slot], padding_mask[b, slot], cell_index[b, slot] = 0.0, True, -1
            for k in range(n_genes):
                token = gene_tokens[cell, k]
                real = token >= 0
                tokens[b, first + 1 + k] = token if real else 0
                values[b, first + 1 + k] = soft_ranks[cell, k] if real else 0.0
                padding_mask[b, first + 1 + k] = real
                cell_index[b, first + 1 + k] = w if real else -1


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
    zero_fill: np.ndarray | None = None,
    n_genes: int | None = None,
    where: str = "The expression matrix",
    neighborhood: np.ndarray | None = None,
) -> TokenBatch:
    """The sequences of the ``focal`` cells (with their neighbours in spatial mode).

    Only the rows needed (the cells and their neighbours) are read, validated and soft-ranked.

    Parameters
    ----------
    matrix
        Cells x genes (dense, sparse or backed).
    focal
        Row indices of the cells whose sequences are built.
    columns, gene_tokens
        Matrix columns of the genes a cell may be read with, and their token ids.
    neighbors
        (n_obs, k) neighbour rows, -1 where a cell has fewer neighbours; None in single-cell mode.
    coordinates
        (n_obs, 2) positions of all cells (spatial mode).
    zero_fill, n_genes
        None: every cell reads all ``columns`` (the released code's rule). Otherwise the paper's
        rule: a cell's expressed genes first, then unexpressed genes of ``zero_fill`` (indices
        into ``columns``, in order), up to ``n_genes``; see :func:`expressed_first`.
    where
        How to name the matrix in error messages.
    neighborhood
        (len(focal), k) neighbours to read instead of ``neighbors[focal]`` (an edited neighbourhood).
    """
    if neighborhood is not None:
        members = np.concatenate([focal[:, None], neighborhood], 1)
    else:
        members = focal[:, None] if neighbors is None else np.concatenate([focal[:, None], neighbors[focal]], 1)
    present = members >= 0
    cells, inverse = np.unique(members[present], return_inverse=True)
    windows = np.full(members.shape, -1, dtype=np.int64)
    windows[present] = inverse
    # The rows are read with the matrix's own columns and mapped through a lookup (no column copy).
    # 32 bits: gene counts fit, and the lookup stays in cache.
    lookup = np.full(matrix.shape[1], -1, dtype=np.int32)
    block = read_rows(matrix, cells)
    if zero_fill is None:  # every cell reads every column (the released code's rule)
        lookup[columns] = np.arange(len(columns))
        check_selected(block, lookup, where=where)
        ranks, cell_tokens = soft_rank_selected(block, lookup, len(columns)), gene_tokens
    else:  # candidates in priority order: the fill genes first, then the others in their order
        priority_order = np.concatenate(
            [zero_fill, np.setdiff1d(np.arange(len(columns)), zero_fill, assume_unique=True)]
        )
        lookup[columns[priority_order]] = np.arange(len(priority_order))
        check_selected(block, lookup, where=where)
        cell_tokens, ranks = expressed_first(block, len(zero_fill), int(n_genes or len(columns)), priority=lookup,
                                             labels=gene_tokens[priority_order].astype(np.int32))  # fmt: skip
    return build_batch(
        ranks,
        cell_tokens,
        windows,
        rna_start=rna_start,
        rna_end=rna_end,
        coordinates=None if coordinates is None else coordinates[cells],
    )
