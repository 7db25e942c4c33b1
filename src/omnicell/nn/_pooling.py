"""Pooling of token states into per-cell vectors."""

from __future__ import annotations

import torch

__all__ = ["pool_cells", "segment_mean"]


def segment_mean(states: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Mean of token ``states`` (B, T, d) per segment id in ``segment`` (B, T); -1 is ignored.

    Returns (B, n_segments, d); a segment without tokens gives a zero vector.
    """
    # A one-hot matrix product rather than a scatter: deterministic on every device, and the number
    # of segments per sequence is small (1 + k cells).
    members = segment.unsqueeze(1) == torch.arange(n_segments, device=segment.device)[None, :, None]
    members = members.to(states.dtype)
    sums = members @ states
    counts = members.sum(-1, keepdim=True)
    return sums / counts.clamp_min(1)


def pool_cells(hidden: torch.Tensor, cell_index: torch.Tensor, expressed: torch.Tensor, n_cells: int) -> torch.Tensor:
    """L2-normalised mean of the hidden states of expressed gene tokens, per cell block.

    Parameters
    ----------
    hidden
        Token states (B, T, d).
    cell_index
        (B, T) block number of each gene token within its sequence, -1 on markers and padding.
    expressed
        (B, T) True where the gene is expressed (soft rank above 0).
    n_cells
        Number of cell blocks per sequence.

    Returns
    -------
    (B, n_cells, d) float32; a cell with no expressed gene gives a zero vector (as the released code).
    """
    segment = torch.where(expressed, cell_index, -1)
    pooled = segment_mean(hidden.float(), segment, n_cells)
    return torch.nn.functional.normalize(pooled, dim=-1)
