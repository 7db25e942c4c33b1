"""The one way work over cells is split: contiguous shares, as :func:`numpy.array_split` makes them.

``omnicell embed --shard I/N`` embeds share I of N, rank ``r`` of ``w`` under ``torchrun`` embeds
share ``r`` of ``w``, and an in-memory pass is share 0 of 1; every share is embedded over the grid
of the full pass (:func:`omnicell._engine.embed.embedding_batches`), so results do not depend on
the split.
"""

from __future__ import annotations

__all__ = ["shard_slice"]


def shard_slice(n_obs: int, index: int, count: int) -> slice:
    """The cells of shard ``index`` (from 0) of ``count`` contiguous shares of ``n_obs`` cells.

    Shares are those of :func:`numpy.array_split`: the first ``n_obs % count`` get one more cell.
    """
    n_obs, index, count = int(n_obs), int(index), int(count)
    if count < 1:
        raise ValueError(f"the number of shards must be at least 1, got {count}.")
    if not 0 <= index < count:
        raise ValueError(
            f"shard index {index} is outside 0..{count - 1} (shards count from 0: 0/{count} .. {count - 1}/{count})."
        )
    if n_obs < 0:
        raise ValueError(f"n_obs must be non-negative, got {n_obs}.")
    size, extra = divmod(n_obs, count)
    start = index * size + min(index, extra)
    return slice(start, start + size + (1 if index < extra else 0))
