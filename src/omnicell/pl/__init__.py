"""Plotting (``oc.pl``).

Embeddings plot with scanpy and squidpy directly, e.g. ``sc.pl.embedding(adata, basis='X_omnicell')``;
omnicell-specific figures are added here.
"""

from ._benchmark import benchmark
from ._expert_heatmap import expert_heatmap
from ._gene_modules import gene_modules
from ._marker_genes import marker_genes
from ._proportions import proportions

__all__ = ["benchmark", "expert_heatmap", "gene_modules", "marker_genes", "proportions"]
