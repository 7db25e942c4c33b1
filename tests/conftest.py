"""Shared fixtures: the official conformance checkpoint and AnnData built from it."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import omnicell as oc

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # committed test data; see fixtures/README.md
OFFICIAL_TINY = FIXTURES / "official_tiny"
STARMAP = FIXTURES / "starmap_by3_subset.h5ad"  # all 1207 cells of the STARmap section, 302 genes
CITE = FIXTURES / "pbmc_cite_subset.h5ad"  # 10x PBMC CITE-seq: 60 cells of each of 2 batches, 3001 genes


@pytest.fixture(autouse=True)
def _quiet_settings():
    """No progress bars in tests; restore settings changed by a test."""
    saved = (oc.settings.progress_bar, oc.settings.batch_size, oc.settings.device, oc.settings.attention_backend)
    oc.settings.progress_bar = False
    yield
    oc.settings.progress_bar, oc.settings.batch_size, oc.settings.device, oc.settings.attention_backend = saved


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    return OFFICIAL_TINY


@pytest.fixture(scope="session")
def official_assets(tmp_path_factory) -> Path:
    """A folder with ``vocabulary_subset.json`` and ``official_genes_subset.csv``: subsets of the released
    vocabulary (released token ids, 60603..60606 for the special tokens) and official gene table holding the
    genes the tests reach (fixtures/omnicell-v1, made by fixtures/make_subsets.py)."""
    folder = tmp_path_factory.mktemp("omnicell-v1")
    for name in ("vocabulary_subset.json", "official_genes_subset.csv"):
        with gzip.open(FIXTURES / "omnicell-v1" / f"{name}.gz", "rb") as source, open(folder / name, "wb") as target:
            shutil.copyfileobj(source, target)
    return folder


@pytest.fixture(scope="session")
def expected(tiny_dir) -> dict[str, np.ndarray]:
    with np.load(tiny_dir / "expected.npz") as arrays:
        return {key: arrays[key] for key in arrays.files}


@pytest.fixture(scope="session")
def tiny_model(tiny_dir) -> oc.models.OmniCellModel:
    return oc.models.load(tiny_dir, device="cpu")


@pytest.fixture
def tiny_adata(expected) -> ad.AnnData:
    """The fixture's cells as a user would have them: counts, Ensembl var names, obsm['spatial']."""
    adata = ad.AnnData(X=expected["counts"].copy())
    adata.var_names = [str(name) for name in expected["var_names"]]
    adata.obs_names = [f"cell{i}" for i in range(adata.n_obs)]
    adata.obsm["spatial"] = expected["coords"].copy()
    return adata


@pytest.fixture(scope="session")
def official_vocab_model(official_assets) -> oc.models.OmniCellModel:
    """A very small random network over the subset of the released vocabulary (released token ids, so the
    default ``num_gene`` of 60,607 embeddings)."""
    import torch

    vocab = oc.data.Vocabulary.from_json(official_assets / "vocabulary_subset.json")
    config = oc.nn.OmniCellConfig(
        d_model=8, heads=2, dim=4, num_layers=1, hidden_dim=16, num_shared=1, num_routing=2, topk=1
    )
    torch.manual_seed(0)
    return oc.models.OmniCellModel(oc.nn.OmniCell(config), vocab, name="random-official-vocab", sha256="none")


PBMC_GENE_IDS = "gene_id"


def _pbmc_gene_ids(n: int) -> list[str]:
    """Stand-in Ensembl ids for pbmc68k_reduced's genes (its var names are symbols)."""
    return [f"ENSG{i:011d}" for i in range(1, n + 1)]


@pytest.fixture(scope="session")
def pbmc_model(tmp_path_factory) -> oc.models.OmniCellModel:
    """A small random-weight model whose vocabulary covers pbmc68k_reduced's 765 genes, saved and reloaded."""
    import scanpy as sc
    import torch

    n_genes = sc.datasets.pbmc68k_reduced().n_vars
    tokens = {"<RNA_START>": 0, "<RNA_END>": 1, "<ATAC_START>": 2, "<ATAC_END>": 3}
    tokens.update({gene: i + 4 for i, gene in enumerate(_pbmc_gene_ids(n_genes))})
    config = oc.nn.OmniCellConfig(num_gene=len(tokens), d_model=32, heads=4, num_layers=2, hidden_dim=64,
                                     num_shared=2, num_routing=6, topk=2, dim=8, token_per_cell=200)  # fmt: skip
    torch.manual_seed(0)
    network = oc.nn.OmniCell(config)
    for parameter in network.parameters():
        if parameter.dim() > 1:
            torch.nn.init.normal_(parameter, std=0.2)
    path = tmp_path_factory.mktemp("pbmc_model") / "pbmc-random"
    oc.models.OmniCellModel(network.eval(), oc.data.Vocabulary(tokens), name="pbmc-random", sha256="0" * 64).save(path)
    return oc.models.load(path, device="cpu")


@pytest.fixture
def pbmc() -> ad.AnnData:
    """scanpy's pbmc68k_reduced with stand-in Ensembl ids in var['gene_id'] and raw.var['gene_id']
    (tokenise with use_raw=True, gene_key='gene_id': .X is scaled, .raw holds log-normalised values)."""
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    adata.var[PBMC_GENE_IDS] = _pbmc_gene_ids(adata.n_vars)
    adata.raw.var[PBMC_GENE_IDS] = adata.var[PBMC_GENE_IDS].to_numpy()
    return adata
