"""Write the starting point of omnicell-tiny: a fresh network whose gene embeddings carry the data's principal axes.

    python scripts/init_tiny_model.py recipes/omnicell-tiny-init.yaml "$OMNICELL_TINY_DATA/init"

At the tiny scale the bundled model can afford (a few hundred optimiser steps on a laptop CPU), a
randomly initialised network has not yet learned which genes go together, and its mean-pooled cell
embedding is close to a random projection of which genes a cell expresses. This script gives the
gene table a head start: each gene's embedding is its random initial row (halved) plus its loadings
on the leading principal components of the recipe's single-cell files (log1p CP10k, highly variable
genes, scaled), scaled so that principal part and random part have the same mean row norm. A cell's
mean gene state then starts close to its principal-component scores, and the masked-value objective
``h_g . W . c`` starts near a low-rank reconstruction of expression, which pretraining refines.

The network, vocabulary and seed are built exactly as ``omnicell pretrain`` would build them from
``model:`` of the recipe given here; the folder written is an omnicell-format model that the
training recipe names in ``model.init``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
import torch


def principal_gene_axes(files, vocab, *, n_components: int, n_top_genes: int, seed: int):
    """(token ids, loadings) of the ``n_top_genes`` most variable vocabulary genes over the files."""
    import scanpy as sc

    from omnicell.data import human_gene_ids
    from omnicell.data._genes import map_gene_names

    universe = human_gene_ids()
    genes = vocab.genes
    column = {gene: index for index, gene in enumerate(genes)}
    blocks = []
    for spec in files:
        adata = ad.read_h5ad(spec.path)
        mapping = map_gene_names(np.asarray(adata.var_names, dtype=str), universe, species=spec.species)
        keep = np.flatnonzero(mapping.matched & np.isin(mapping.ids, genes))
        matrix = sp.csr_matrix(adata.X, dtype=np.float32)
        totals = np.asarray(matrix.sum(axis=1)).ravel()
        matrix = sp.diags(1e4 / np.maximum(totals, 1.0)) @ matrix
        matrix.data = np.log1p(matrix.data)
        columns = np.array([column[gene] for gene in mapping.ids[keep]])
        mapped = matrix[:, keep].tocoo()
        blocks.append(sp.csr_matrix((mapped.data, (mapped.row, columns[mapped.col])), shape=(adata.n_obs, len(genes))))
    stacked = ad.AnnData(X=sp.vstack(blocks).tocsr())
    stacked.var_names = genes
    sc.pp.filter_genes(stacked, min_cells=10)
    sc.pp.highly_variable_genes(stacked, n_top_genes=n_top_genes, flavor="seurat")
    stacked = stacked[:, stacked.var["highly_variable"]].copy()
    sc.pp.scale(stacked, max_value=10)
    sc.pp.pca(stacked, n_comps=n_components, random_state=seed)
    # loadings weighted by the components' standard deviations, as PCA scores are
    loadings = stacked.varm["PCs"] * np.sqrt(stacked.uns["pca"]["variance"])[None, :]
    return vocab.token_ids(stacked.var_names), loadings.astype(np.float32)


def main() -> None:
    from omnicell.models import OmniCellModel
    from omnicell.train._pretrain import _Run
    from omnicell.train._recipe import read_recipe
    from omnicell.train._training_state import weights_sha256

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, help="recipe whose model: section and single-cell files to use")
    parser.add_argument("output", type=Path, help="model folder to write")
    parser.add_argument("--n-top-genes", type=int, default=4000)
    parser.add_argument("--random-share", type=float, default=0.5, help="factor on the random initial rows")
    parser.add_argument(
        "--head-scale", type=float, default=0.1,
        help="factor on the output head's initial W: the principal rows make h_g . W . c large at first",
    )  # fmt: skip
    parser.add_argument(
        "--spatial-components", type=int, default=16,
        help="principal axes of the spatial files, in their own block of dimensions (0: none)",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(1)
    recipe = read_recipe(args.recipe)
    # the recipe's model.init names the folder written here: build from model.config instead
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, init=None))
    # the same network, vocabulary and seed as `omnicell pretrain` builds from this recipe's model: section
    builder = _Run.__new__(_Run)
    builder.recipe = recipe
    model = builder._initial_model()
    network = model.network
    d_model = network.config.d_model
    groups = [
        ([spec for stage in recipe.stages if not stage.spatial for spec in stage.files], 0),
        ([spec for stage in recipe.stages if stage.spatial for spec in stage.files], args.spatial_components),
    ]
    groups[0] = (groups[0][0], d_model - (args.spatial_components if groups[1][0] else 0))
    table = network.embedder.gene_embedding.weight
    with torch.no_grad():
        extra = torch.zeros_like(table)
        start, n_genes = 0, 0
        for files, width in groups:
            if not files or width <= 0:
                continue
            # each group (single-cell atlas, spatial sections) gets its own block of dimensions, so a
            # tissue that is small in cells is not drowned by the larger one's axes
            tokens, loadings = principal_gene_axes(
                files, model.vocab, n_components=width, n_top_genes=args.n_top_genes, seed=recipe.seed
            )
            index = torch.as_tensor(tokens)
            random_norm = float(table[index].norm(dim=1).mean())
            loadings = loadings * (random_norm / float(np.linalg.norm(loadings, axis=1).mean()))
            extra[index, start : start + width] += torch.from_numpy(loadings)
            start += width
            n_genes += len(tokens)
        table.mul_(args.random_share)
        table += extra
        network.output.W.mul_(args.head_scale)
    out = OmniCellModel(
        network, model.vocab, name=recipe.name, sha256=weights_sha256(network), source="init_tiny_model"
    )
    out.save(args.output, overwrite=True)
    print(f"{args.output}: {len(model.vocab)} vocabulary entries, {n_genes} gene rows with principal axes")


if __name__ == "__main__":
    main()
