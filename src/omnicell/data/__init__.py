"""From AnnData to token batches: vocabulary, soft rank, neighbourhoods, batch building.

Nothing here imports :mod:`omnicell.tl`; the model core is used only for its tensor types.
"""

from ._batches import TokenBatch, batch_for_cells, build_batch, check_values, iter_token_batches, read_block
from ._neighbors import spatial_knn
from ._softrank import soft_rank
from ._vocab import SPECIAL_TOKENS, Vocabulary

__all__ = [
    "SPECIAL_TOKENS",
    "TokenBatch",
    "batch_for_cells",
    "Vocabulary",
    "build_batch",
    "check_values",
    "iter_token_batches",
    "read_block",
    "soft_rank",
    "spatial_knn",
]
