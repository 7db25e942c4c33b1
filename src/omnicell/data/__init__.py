"""From AnnData to token batches: vocabulary, soft rank, neighbourhoods, batch building.

Nothing here imports :mod:`omnicell.tl`; the model core is used only for its tensor types.
"""

from ._batches import TokenBatch, batch_for_cells, build_batch, check_values, read_csr
from ._genes import GeneMapping, detect_species, map_gene_names, strip_version
from ._hvg import highly_variable_scores, seurat_v3_scores, top_variable
from ._neighbors import graph_neighbors, spatial_knn
from ._selection import expressed_first
from ._softrank import soft_rank
from ._soma import is_soma_uri, read_soma
from ._tokenization_defaults import (
    RELEASED_TOKENIZATION,
    TOKENIZATION_FILE,
    ModelTokenization,
    SingleCellTokenization,
    SpatialTokenization,
    median_neighbor_distance,
)
from ._vocab import SPECIAL_TOKENS, Vocabulary

__all__ = [
    "RELEASED_TOKENIZATION",
    "SPECIAL_TOKENS",
    "TOKENIZATION_FILE",
    "GeneMapping",
    "ModelTokenization",
    "SingleCellTokenization",
    "SpatialTokenization",
    "TokenBatch",
    "Vocabulary",
    "batch_for_cells",
    "build_batch",
    "check_values",
    "detect_species",
    "expressed_first",
    "graph_neighbors",
    "highly_variable_scores",
    "is_soma_uri",
    "map_gene_names",
    "median_neighbor_distance",
    "read_csr",
    "read_soma",
    "seurat_v3_scores",
    "soft_rank",
    "spatial_knn",
    "strip_version",
    "top_variable",
]
