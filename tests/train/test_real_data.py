"""Pretraining on the committed real-data subsets: STARmap (spatial stage) then PBMC CITE-seq (single-cell stage)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd

import omnicell as oc
from conftest import CITE, STARMAP
from omnicell.train import Recipe, build_vocabulary, pretrain


def test_vocabulary_from_mouse_and_human_files():
    vocab = build_vocabulary([STARMAP, CITE], min_cells=5)
    genes = vocab.genes
    assert all(gene.startswith("ENSG") for gene in genes)
    assert vocab.rna_start == len(genes) and vocab.rna_end == len(genes) + 1
    # mouse symbols reach their human orthologs (Slc17a7 -> SLC17A7), human symbols their ids (CD3E)
    assert "ENSG00000104888" in vocab and "ENSG00000198851" in vocab
    cite = ad.read_h5ad(CITE, backed="r")
    expressed = np.asarray((cite.X[:] > 0).sum(0)).ravel()
    cite.file.close()
    n_starmap = ad.read_h5ad(STARMAP, backed="r").n_vars
    # expressed genes only, both species; most of the human genes in 5 or more cells map to an id
    assert 0.85 * int((expressed >= 5).sum()) < len(genes) < int((expressed >= 1).sum()) + n_starmap
    stricter = build_vocabulary([STARMAP, CITE], min_cells=50)
    assert set(stricter.genes) < set(genes)


def test_two_stage_pretraining_on_real_files(tmp_path):
    recipe = Recipe.from_dict(
        {
            "name": "real-small",
            "output": str(tmp_path / "run"),
            "device": "cpu",
            "model": {
                "vocabulary": "data",
                "vocabulary_min_cells": 20,
                "config": {
                    "d_model": 16,
                    "heads": 2,
                    "dim": 8,
                    "num_layers": 1,
                    "hidden_dim": 32,
                    "num_shared": 1,
                    "num_routing": 4,
                    "topk": 2,
                    "dropout": 0.0,
                },
            },
            "optimizer": {"lr": 1e-3, "warmup_steps": 1},
            "batch": {"cells_per_step": 4, "micro_batch_size": 2},
            "data": {"chunk_size": 64, "window_chunks": 4},
            "stages": [
                {
                    "name": "spatial",
                    "kind": "spatial",
                    "steps": 2,
                    "n_genes": 24,
                    "n_neighbors": 9,
                    "files": [{"path": str(STARMAP), "coord_scale": 0.01}],
                },
                {"name": "single_cell", "kind": "single_cell", "steps": 2, "n_genes": 64, "files": [str(CITE)]},
            ],
        }
    )
    model = pretrain(recipe)
    log = pd.read_csv(tmp_path / "run" / "loss_log.csv")
    assert list(log["stage"]) == ["spatial", "spatial", "single_cell", "single_cell"]
    assert np.isfinite(log[["loss", "mlm", "balance", "grad_norm"]].to_numpy()).all()
    assert (log["n_masked"] > 0).all()
    # a window is 10 blocks of up to 24 genes + 2 markers; a single cell is one block of up to 64 + 2
    assert log["tokens"].iloc[0] <= 4 * 10 * 26 and log["tokens"].iloc[0] > 4 * 26
    assert log["tokens"].iloc[2] <= 4 * 66
    loaded = oc.models.load(tmp_path / "run" / "model")
    assert loaded.vocab == model.vocab
    section = ad.read_h5ad(STARMAP)[:60].copy()
    oc.pp.tokenize(section, loaded, spatial=True, n_neighbors=4, n_genes=24, strategy="expressed")
    oc.tl.embed_cells(section, loaded, projection=None)
    assert section.obsm["X_omnicell"].shape == (60, 16)
