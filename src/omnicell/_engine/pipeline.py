"""How token batches reach the device: built in DataLoader workers, pinned, copied without blocking.

Kept apart from :mod:`omnicell._engine.plan` (which plans a pass and validates the AnnData) so that the
throughput machinery does not mix with validation. Batches come out in cell order whatever the
number of workers, so results do not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from omnicell.data import TokenBatch

__all__ = ["auto_batch_size", "device_batches"]

Item = tuple[np.ndarray, TokenBatch, dict[str, torch.Tensor | None]]


class _TokenBatches(torch.utils.data.Dataset):
    """Batch ``i`` holds cells ``[starts[i], starts[i] + batch_size)``: focal rows, batch, CPU tensors."""

    def __init__(self, build: Callable[[np.ndarray], TokenBatch], starts: range, n_obs: int, batch_size: int) -> None:
        self.build = build
        self.starts = starts
        self.n_obs = n_obs
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> Item:
        start = self.starts[index]
        focal = np.arange(start, min(start + self.batch_size, self.n_obs))
        batch = self.build(focal)
        return focal, batch, batch.to_torch("cpu")


def _as_is(item: Item) -> Item:
    return item


def device_batches(
    build: Callable[[np.ndarray], TokenBatch],
    starts: range,
    n_obs: int,
    batch_size: int,
    device: torch.device,
    *,
    num_workers: int = 0,
) -> Iterator[Item]:
    """Yield ``(focal rows, token batch, tensors on device)`` for the batches at ``starts``, in order.

    With ``num_workers > 0`` the batches are tokenised in that many DataLoader worker processes
    (two batches ahead each) while the device runs; on CUDA the tensors are pinned and copied with
    ``non_blocking=True``, so the copy overlaps the previous forward pass.
    """
    dataset = _TokenBatches(build, starts, n_obs, batch_size)
    pin = device.type == "cuda"
    if num_workers > 0:
        items = iter(
            torch.utils.data.DataLoader(
                dataset, batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_as_is, pin_memory=pin
            )
        )
    else:
        items = (dataset[index] for index in range(len(dataset)))
    for focal, batch, tensors in items:
        moved = {}
        for key, tensor in tensors.items():
            if tensor is not None and pin and not tensor.is_pinned():
                tensor = tensor.pin_memory()
            moved[key] = None if tensor is None else tensor.to(device, non_blocking=pin)
        yield focal, batch, moved


def auto_batch_size(
    free_bytes: int, *, tokens_per_sequence: int, d_model: int, hidden_dim: int, bytes_per_value: int
) -> int:
    """Sequences per forward pass that fit half of ``free_bytes`` in inference.

    A layer's live activations are about ``(8 d + 3 h)`` values per token (the residual stream,
    the norm, q/k/v/out, three SwiGLU widths); fused attention keeps no ``T x T`` matrix. Half
    the free memory is left for the allocator, the weights' workspace and pooling.
    """
    per_sequence = tokens_per_sequence * (8 * d_model + 3 * hidden_dim) * bytes_per_value
    return int(max(1, min(4096, (free_bytes // 2) // max(per_sequence, 1))))
