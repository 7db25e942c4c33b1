"""AnnData key names written and read by omnicell: one place, so ``pp``, ``tl`` and ``pl`` agree."""

from __future__ import annotations

UNS = "omnicell"
"""``uns[UNS]`` is a dict with one provenance record per function (``uns['omnicell']['tokenize']``)."""

VAR_GENE_ID = "omnicell_gene_id"
"""``var`` column: the vocabulary gene id matched to each gene (empty string where none)."""

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

GENE_EMBEDDING = "omnicell"
"""Default ``varm`` key of the dataset-level gene embeddings (``oc.tl.embed_genes``)."""

CELL_GENE_EMBEDDING = "omnicell_cell"
"""Default ``varm`` key of per-group cell-level gene embeddings (``embed_genes(level='cell')``)."""

GENE_MODULE = "omnicell_module"
"""``var`` column of gene modules; per-cell module scores go to ``obs[GENE_MODULE + '_' + module]``."""

RANK_GENES = "rank_genes_omnicell"
"""Default ``uns`` key of marker genes, in scanpy's ``rank_genes_groups`` schema."""

EXPERTS = "omnicell_experts"
"""``obsm`` (per cell) and ``varm`` (per gene) key of MoE routing probabilities (``oc.tl.expert_usage``)."""

IMPORTANCE = "omnicell_importance"
"""``layers`` (per cell, sparse) and ``varm`` (per group) key of attention-derived gene importance."""

CLUSTERS = "omnicell_leiden"
"""``obs`` column of the best Leiden clustering of ``oc.tl.evaluate_clustering``."""

DOMAIN = "omnicell_domain"
"""``obs`` column of spatial domains (``oc.tl.spatial_domains``)."""

LABEL = "omnicell_label"
"""``obs`` column of predicted cell types (``oc.tl.annotate``)."""

PROBABILITIES_SUFFIX = "_probabilities"
"""``obsm[LABEL + PROBABILITIES_SUFFIX]``: class probabilities (DataFrame, one column per class)."""

PROPORTIONS = "omnicell_proportions"
"""``obsm`` key (DataFrame, one column per cell type) of deconvolved proportions (``oc.tl.deconvolve``)."""

DOMINANT_TYPE = "omnicell_dominant_type"
"""``obs`` column of each spot's dominant cell type (``oc.tl.deconvolve``)."""

PERTURB = "omnicell_perturb"
"""Default key of gene perturbations (``oc.tl.perturb_genes``) in ``obsm``, ``layers``, ``uns`` (and ``obs``)."""

NICHE_PERTURB = "omnicell_niche_perturb"
"""Default key of niche perturbations (``oc.tl.perturb_niche``), with the same slots as :data:`PERTURB`."""

SHIFT_SUFFIX = "_shift"
"""``obs[key + SHIFT_SUFFIX]``: cosine distance between a cell's embedding before and after a perturbation."""

SEARCH = "omnicell_search"
"""Prefix of the ``obsm`` keys of reference search hits: ``SEARCH + '_indices'``, ``SEARCH + '_distances'``
(``oc.tl.search``)."""
