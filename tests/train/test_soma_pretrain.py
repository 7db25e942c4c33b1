"""Pretraining from a TileDB-SOMA experiment: same stream as the h5ad of the same cells; 2 ranks resume exactly."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file

from omnicell.train import Recipe, pretrain

tiledbsoma_io = pytest.importorskip(
    "tiledbsoma.io", reason="tiledbsoma is not installed (pip install 'omnicell[census]')"
)

FILTER = "part == 'train'"


@pytest.fixture
def sources(tiny_adata, tmp_path):
    """The conformance cells as a SOMA experiment (4 of them held out by obs['part']) and as an h5ad of the rest."""
    adata = tiny_adata.copy()
    adata.X = adata.X.astype(np.float32)
    held_out = np.zeros(adata.n_obs, dtype=bool)
    held_out[[1, 7, 8, 20]] = True
    adata.obs["part"] = np.where(held_out, "test", "train")
    uri = tiledbsoma_io.from_anndata(str(tmp_path / "soma"), adata, measurement_name="RNA")
    kept = adata[~held_out].copy()
    kept.write_h5ad(tmp_path / "train.h5ad")
    return uri, tmp_path / "train.h5ad"


def _recipe(recipe_factory, output, files) -> dict:
    values = recipe_factory(output)
    for stage in values["stages"]:
        stage["files"] = files
    return values


def _weights(folder):
    return load_file(str(folder / "model" / "model.safetensors"))


def test_soma_source_trains_like_the_h5ad_of_its_cells(sources, recipe_factory, tmp_path):
    uri, h5ad = sources
    soma_spec = {"path": uri, "obs_filter": FILTER}
    runs = {}
    for name, spec in (("soma", soma_spec), ("h5ad", str(h5ad))):
        values = _recipe(recipe_factory, tmp_path / name, [spec])
        values["model"]["vocabulary"] = "data"  # built from the source's genes and expressing cells
        pretrain(Recipe.from_dict(values))
        runs[name] = _weights(tmp_path / name)
    assert runs["soma"].keys() == runs["h5ad"].keys()
    for key in runs["h5ad"]:
        assert torch.equal(runs["soma"][key], runs["h5ad"][key]), key
    log = pd.read_csv(tmp_path / "soma" / "loss_log.csv")
    assert (log["sequences"] == 8).all() and log["epoch"].iloc[-1] == pytest.approx(2 * 8 / 20)


def _torchrun(args, env):
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "omnicell", "pretrain", *args, "--quiet", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo needed")
def test_two_ranks_from_soma_resume_exactly(sources, recipe_factory, tmp_path):
    uri, _ = sources
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    paths = {}
    for name in ("straight", "interrupted"):
        values = _recipe(recipe_factory, tmp_path / name, [{"path": uri, "obs_filter": FILTER}])
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(values))
    completed = _torchrun([str(paths["straight"])], env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    completed = _torchrun([str(paths["interrupted"]), "--max-steps", "4"], env)  # stops in the second stage
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert not (tmp_path / "interrupted" / "model").exists()
    completed = _torchrun([str(paths["interrupted"]), "--resume"], env)
    assert completed.returncode == 0, completed.stderr[-3000:]

    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "interrupted")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    log_a, log_b = (
        pd.read_csv(tmp_path / "straight" / "loss_log.csv"),
        pd.read_csv(tmp_path / "interrupted" / "loss_log.csv"),
    )
    np.testing.assert_array_equal(log_a["loss"].to_numpy(), log_b["loss"].to_numpy())
    assert list(log_b["step"]) == list(range(6)) and (log_a["sequences"] == 8).all()
    assert log_a["loss"].iloc[2] < log_a["loss"].iloc[0]  # it trains
