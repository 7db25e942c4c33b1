"""Plotting (``oc.pl``).

Embeddings plot with scanpy and squidpy directly, e.g. ``sc.pl.embedding(adata, basis='X_omnicell')``;
omnicell-specific figures are added here.
"""

from omnicell.pl._benchmark import benchmark
from omnicell.pl._expert_heatmap import expert_heatmap
from omnicell.pl._gene_modules import gene_modules
from omnicell.pl._mapping import mapping
from omnicell.pl._marker_genes import marker_genes
from omnicell.pl._perturbation import perturbation
from omnicell.pl._proportions import proportions

__all__ = ["benchmark", "expert_heatmap", "gene_modules", "mapping", "marker_genes", "perturbation", "proportions"]
