"""Tools: run the model and analyses on an AnnData (``oc.tl``)."""

from ._annotate import annotate, cross_validate_annotation
from ._benchmark import benchmark
from ._clustering import evaluate_clustering
from ._deconvolve import deconvolve
from ._embed_cells import embed_cells
from ._embed_genes import embed_genes
from ._expert_usage import expert_usage
from ._fine_tune import fine_tune
from ._gene_importance import gene_importance, importance_roc
from ._gene_modules import gene_modules
from ._marker_genes import marker_genes
from ._robustness import dropout_robustness
from ._spatial_domains import neighborhood_average, spatial_domains

__all__ = [
    "annotate",
    "benchmark",
    "cross_validate_annotation",
    "deconvolve",
    "dropout_robustness",
    "embed_cells",
    "embed_genes",
    "evaluate_clustering",
    "expert_usage",
    "fine_tune",
    "gene_importance",
    "gene_modules",
    "importance_roc",
    "marker_genes",
    "neighborhood_average",
    "spatial_domains",
]
