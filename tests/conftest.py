"""Shared fixtures: the official conformance checkpoint and AnnData built from it."""

from __future__ import annotations

import os
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import omnicell as oc

SHARED = Path(os.environ.get("OMNICELL_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()
OFFICIAL_TINY = SHARED / "conformance" / "official_tiny"


@pytest.fixture(autouse=True)
def _quiet_settings():
    """No progress bars in tests; restore settings changed by a test."""
    saved = (oc.settings.progress_bar, oc.settings.batch_size, oc.settings.device, oc.settings.attention_backend)
    oc.settings.progress_bar = False
    yield
    oc.settings.progress_bar, oc.settings.batch_size, oc.settings.device, oc.settings.attention_backend = saved


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    if not (OFFICIAL_TINY / "expected.npz").exists():
        pytest.skip(f"conformance fixture not found at {OFFICIAL_TINY} (set OMNICELL_SHARED)")
    return OFFICIAL_TINY


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
def official_vocab_model(tiny_dir) -> oc.models.OmniCellModel:
    """A very small random network over the released 60,603-gene vocabulary (for gene mapping at scale)."""
    import torch

    vocabulary_file = SHARED / "assets" / "omnicell-v1" / "Vocabulary.json"
    if not vocabulary_file.exists():
        pytest.skip(f"official vocabulary not found at {vocabulary_file}")
    vocab = oc.data.Vocabulary.from_json(vocabulary_file)
    config = oc.model.OmniCellConfig(d_model=8, heads=2, dim=4, num_layers=1, hidden_dim=16, num_shared=1, num_routing=2, topk=1)
    torch.manual_seed(0)
    return oc.models.OmniCellModel(oc.model.OmniCell(config), vocab, name="random-official-vocab", sha256="none")
