"""The bundled default model omnicell-tiny: loads offline from inside the package."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scanpy as sc

import omnicell as oc

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


def test_embedding_of_pbmc68k_reduced_agrees_with_the_cell_types():
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    reduced = sc.datasets.pbmc68k_reduced()
    adata = reduced.raw.to_adata()  # log1p CP10k: same soft ranks as the counts
    adata.obs = reduced.obs
    model = oc.models.load("omnicell-tiny", device="cpu")
    oc.pp.tokenize(adata, model)
    assert adata.uns["omnicell"]["map_genes"]["n_matched"] >= 700  # of 765 symbols
    subset = adata[::3].copy()  # 234 cells, every cell type
    oc.tl.embed_cells(subset, model)
    embedding = subset.obsm["X_omnicell"]
    assert np.isfinite(embedding).all() and embedding.shape[1] < model.config.d_model
    labels = subset.obs["bulk_labels"]
    clusters = KMeans(labels.nunique(), random_state=0, n_init=10).fit_predict(embedding)
    # Measured with the bundled model (2026-11-29): ARI 0.22 (0.17-0.27 over k-means seeds 0-4);
    # shuffled labels give 0.000 +- 0.006 (max 0.02 over 200 shuffles). 0.1 is far above chance.
    assert adjusted_rand_score(labels, clusters) > 0.1
