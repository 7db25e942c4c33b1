"""The bundled default model omnicell-tiny: loads offline from inside the package."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pytest
import scanpy as sc

import omnicell as oc
from conftest import STARMAP

FOLDER = oc.models.bundled_folder("omnicell-tiny")
pytestmark = pytest.mark.skipif(not (FOLDER / "model.safetensors").exists(), reason="omnicell-tiny not built yet")


def test_loads_by_name_without_network(monkeypatch, tmp_path):
    # an empty cache and no way to download: the bundled model must not need either
    monkeypatch.setattr(oc.settings, "cache_dir", tmp_path / "empty-cache")
    monkeypatch.setattr(oc.models, "download", lambda *a, **k: pytest.fail("tried to download"))
    model = oc.models.load("omnicell-tiny", device="cpu")
    assert model.name == "omnicell-tiny"
    assert all(gene.startswith("ENSG") for gene in model.vocab.genes)
    assert model.config.num_gene == model.vocab.max_token_id + 1
    assert oc.models.available().loc["omnicell-tiny", "cached"]
    size = sum(path.stat().st_size for path in FOLDER.iterdir())
    assert size <= 5 * 1024 * 1024, size
    card = (FOLDER / "MODEL_CARD.md").read_text()
    assert "not" in card.lower() and "starmap" in card.lower()
    assert json.loads((FOLDER / "config.json").read_text())["d_model"] == model.config.d_model


def test_tokenization_file_matches_the_recipe():
    # the defaults the demo and (with C1) oc.pp.tokenize take: what recipes/omnicell-tiny.yaml trained with
    spec = json.loads((FOLDER / "tokenization.json").read_text())
    assert spec["single_cell"] == {"strategy": "hvg", "n_genes": 256}
    spatial = spec["spatial"]
    assert (spatial["strategy"], spatial["n_genes"], spatial["n_neighbors"]) == ("expressed", 64, 9)
    from scipy.spatial import cKDTree

    coords = ad.read_h5ad(STARMAP).obsm["spatial"] * 0.01  # the recipe's coord_scale
    distance, _ = cKDTree(coords).query(coords, k=2)
    assert spatial["neighbor_distance"] == pytest.approx(float(np.median(distance[:, 1])), rel=1e-3)


def test_demo_reads_the_model_tokenization_and_names_the_model():
    from omnicell.cli._demo import model_line, single_cell_tokenization

    model = oc.models.load("omnicell-tiny", device="cpu")
    assert single_cell_tokenization(model, "omnicell-tiny") == {"strategy": "hvg", "n_genes": 256}
    line = model_line(model)
    assert "omnicell-tiny" in line and "omnicell-v1" in line and "released" in line


def _knn_accuracy(embedding: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour majority vote (euclidean; ties: the nearer label)."""
    from sklearn.neighbors import NearestNeighbors

    _, index = NearestNeighbors(n_neighbors=k + 1).fit(embedding).kneighbors(embedding)
    votes = labels[index[:, 1:]]
    # most frequent label; among equally frequent ones, the one met first (nearest): deterministic
    predicted = np.array(
        [max(row, key=lambda label, row=list(row): (row.count(label), -row.index(label))) for row in votes]
    )
    return float((predicted == labels).mean())


def test_separates_pbmc68k_cell_types_like_pca():
    # pbmc68k_reduced is held out of omnicell-tiny's training data: its embedding must place cells of
    # one type together about as well as 50-component expression PCA does. Leave-one-out 10-NN
    # accuracy against bulk_labels when this was written: omnicell-tiny 0.783, PCA 0.809, the
    # previous omnicell-tiny 0.744, random vectors 0.31 (best-resolution Leiden ARI: 0.601 vs PCA 0.513)
    from omnicell.cli._demo import pbmc68k_counts

    adata = pbmc68k_counts()
    model = oc.models.load("omnicell-tiny", device="cpu")
    oc.pp.tokenize(adata, model, strategy="hvg", n_genes=256)
    assert adata.uns["omnicell"]["map_genes"]["n_matched"] >= 700  # of 765 symbols
    oc.tl.embed_cells(adata, model)
    embedding = adata.obsm["X_omnicell"]
    assert np.isfinite(embedding).all() and embedding.shape[1] < model.config.d_model
    labels = adata.obs["bulk_labels"].astype(str).to_numpy()
    baseline = adata.copy()
    sc.pp.normalize_total(baseline, target_sum=1e4)
    sc.pp.log1p(baseline)
    sc.pp.pca(baseline, n_comps=50, random_state=0)
    omnicell_accuracy = _knn_accuracy(embedding, labels)
    pca_accuracy = _knn_accuracy(baseline.obsm["X_pca"], labels)
    assert omnicell_accuracy >= 0.77, (omnicell_accuracy, pca_accuracy)
    assert omnicell_accuracy >= pca_accuracy - 0.04, (omnicell_accuracy, pca_accuracy)
