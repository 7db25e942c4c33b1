"""Fixtures for the training tests: tiny h5ad files and a tiny recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One PyTorch thread: tiny tensors gain nothing from more, and the machine is shared."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def tiny_files(tiny_adata, tmp_path) -> list[Path]:
    """The conformance cells split into two h5ad files (13 and 11 cells), as counts."""
    paths = []
    for index, rows in enumerate((slice(0, 13), slice(13, None))):
        part = tiny_adata[rows].copy()
        part.X = part.X.astype(np.float32)
        path = tmp_path / f"part{index}.h5ad"
        part.write_h5ad(path)
        paths.append(path)
    return paths


def tiny_recipe(files, output, tiny_dir, **overrides) -> dict:
    """A two-stage recipe on the conformance vocabulary with a fresh 1-layer network (dropout on)."""
    recipe = {
        "name": "tiny-test",
        "output": str(output),
        "seed": 3,
        "device": "cpu",
        "model": {
            "vocabulary": str(tiny_dir / "vocab.json"),
            "config": {
                "d_model": 16,
                "heads": 2,
                "dim": 8,
                "num_layers": 1,
                "hidden_dim": 32,
                "num_shared": 1,
                "num_routing": 4,
                "topk": 2,
                "dropout": 0.1,
            },
        },
        "optimizer": {"lr": 3e-3, "min_lr": 1e-5, "warmup_steps": 2},
        "batch": {"cells_per_step": 8, "micro_batch_size": 2},
        "data": {"chunk_size": 4, "window_chunks": 2},
        "checkpoint": {"every": 0, "keep": 3},
        "stages": [
            {"name": "spatial", "kind": "spatial", "steps": 3, "n_neighbors": 3, "files": [str(f) for f in files]},
            {"name": "single_cell", "kind": "single_cell", "steps": 3, "files": [str(f) for f in files]},
        ],
    }
    recipe.update(overrides)
    return recipe


@pytest.fixture
def recipe_factory(tiny_files, tiny_dir):
    def make(output, **overrides):
        return tiny_recipe(tiny_files, output, tiny_dir, **overrides)

    return make
