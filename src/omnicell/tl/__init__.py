"""Tools: run the model and analyses on an AnnData (``oc.tl``)."""

from omnicell.tl._annotate import annotate, cross_validate_annotation
from omnicell.tl._benchmark import benchmark
from omnicell.tl._clustering import evaluate_clustering
from omnicell.tl._deconvolve import deconvolve
from omnicell.tl._embed_cells import embed_cells
from omnicell.tl._embed_genes import embed_genes
from omnicell.tl._expert_usage import expert_usage
from omnicell.tl._fine_tune import fine_tune
from omnicell.tl._gene_importance import gene_importance, importance_roc
from omnicell.tl._gene_modules import gene_modules
from omnicell.tl._mapping import map_query
from omnicell.tl._marker_genes import marker_genes
from omnicell.tl._perturb import perturb_genes
from omnicell.tl._perturb_niche import perturb_niche
from omnicell.tl._robustness import dropout_robustness
from omnicell.tl._search import build_index, search
from omnicell.tl._spatial_domains import neighborhood_average, spatial_domains

__all__ = [
    "annotate",
    "benchmark",
    "build_index",
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
    "map_query",
    "marker_genes",
    "neighborhood_average",
    "perturb_genes",
    "perturb_niche",
    "search",
    "spatial_domains",
]
