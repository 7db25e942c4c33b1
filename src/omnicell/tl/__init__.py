"""Tools: run the model and analyses on an AnnData (``oc.tl``)."""

from ._embed_cells import embed_cells
from ._embed_genes import embed_genes
from ._expert_usage import expert_usage
from ._fine_tune import fine_tune
from ._gene_importance import gene_importance, importance_roc
from ._gene_modules import gene_modules
from ._marker_genes import marker_genes

__all__ = [
    "embed_cells",
    "embed_genes",
    "expert_usage",
    "fine_tune",
    "gene_importance",
    "gene_modules",
    "importance_roc",
    "marker_genes",
]
