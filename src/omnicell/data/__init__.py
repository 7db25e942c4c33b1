"""From AnnData to token batches: vocabulary, soft rank, neighbourhoods, batch building.

Nothing here imports :mod:`omnicell.tl`; the model core is used only for its tensor types.
"""

from omnicell.data._batches import TokenBatch, batch_for_cells, build_batch
from omnicell.data._genes import (
    GeneMapping,
    Species,
    VocabularyMatch,
    detect_species,
    human_gene_ids,
    map_gene_names,
    strip_version,
    vocabulary_token_ids,
)
from omnicell.data._hvg import highly_variable_scores, seurat_v3_scores, top_variable
from omnicell.data._index import ReferenceIndex, is_index_folder, is_index_tar
from omnicell.data._matrix import check_matrix_values, check_values, read_csr, read_rows
from omnicell.data._model_tokenization import (
    RELEASED_TOKENIZATION,
    TOKENIZATION_FILE,
    ModelTokenization,
    SingleCellTokenization,
    SpatialTokenization,
    median_neighbor_distance,
)
from omnicell.data._neighbors import graph_neighbors, spatial_knn
from omnicell.data._selection import expressed_first
from omnicell.data._softrank import MASK_VALUE, SOFT_RANK_HIGH, soft_rank
from omnicell.data._soma import is_soma_uri, read_soma
from omnicell.data._vocab import SPECIAL_TOKENS, Vocabulary

__all__ = [
    "MASK_VALUE",
    "RELEASED_TOKENIZATION",
    "SOFT_RANK_HIGH",
    "SPECIAL_TOKENS",
    "TOKENIZATION_FILE",
    "GeneMapping",
    "ModelTokenization",
    "ReferenceIndex",
    "SingleCellTokenization",
    "SpatialTokenization",
    "Species",
    "TokenBatch",
    "Vocabulary",
    "VocabularyMatch",
    "batch_for_cells",
    "build_batch",
    "check_matrix_values",
    "check_values",
    "detect_species",
    "expressed_first",
    "graph_neighbors",
    "highly_variable_scores",
    "human_gene_ids",
    "is_index_folder",
    "is_index_tar",
    "is_soma_uri",
    "map_gene_names",
    "median_neighbor_distance",
    "read_csr",
    "read_rows",
    "read_soma",
    "seurat_v3_scores",
    "soft_rank",
    "spatial_knn",
    "strip_version",
    "top_variable",
    "vocabulary_token_ids",
]
