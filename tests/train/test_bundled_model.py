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


def test_embeds_pbmc68k_reduced():
    reduced = sc.datasets.pbmc68k_reduced()
    adata = reduced.raw.to_adata()  # log1p CP10k: same soft ranks as the counts
    adata.obs = reduced.obs
    model = oc.models.load("omnicell-tiny", device="cpu")
    oc.pp.tokenize(adata, model)
    assert adata.uns["omnicell"]["map_genes"]["n_matched"] >= 700  # of 765 symbols
    subset = adata[:64].copy()
    oc.tl.embed_cells(subset, model)
    embedding = subset.obsm["X_omnicell"]
    assert np.isfinite(embedding).all() and embedding.shape[1] < model.config.d_model
    assert np.linalg.matrix_rank(embedding) > 5  # cells are not all mapped to one point
