"""AnnData key names written and read by omnicell: one place, so ``pp``, ``tl`` and ``pl`` agree."""

from __future__ import annotations

UNS = "omnicell"
"""``uns[UNS]`` is a dict with one provenance record per function (``uns['omnicell']['tokenize']``)."""

VAR_TOKEN = "omnicell_token"
"""``var`` column: vocabulary token id of each gene, -1 outside the vocabulary."""

VAR_SELECTED = "omnicell_selected"
"""``var`` column: whether the gene is in the tokenised gene list."""

OBSM_NEIGHBORS = "omnicell_neighbors"
"""``obsm`` key: (n_obs, k) indices of each cell's spatial neighbours, nearest first."""

EMBEDDING = "X_omnicell"
"""Default ``obsm`` key of the cell embedding."""

NICHE_SUFFIX = "_niche"
WINDOW_SUFFIX = "_window"

SPATIAL = "spatial"
"""squidpy's ``obsm`` key of spatial coordinates."""
