"""``torchrun -m omnicell embed`` on two CPU processes (gloo) writes what one process writes."""

from __future__ import annotations

import os
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest
import torch.distributed as dist

from conftest import STARMAP
from omnicell.cli import main

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    # 91 cells: shards of 46 and 45, neither on the batch grid of 16
    adata = ad.read_h5ad(STARMAP)[:91].copy()
    folder = tmp_path_factory.mktemp("torchrun")
    adata.write_h5ad(folder / "cells.h5ad")
    paths = {"h5ad": str(folder / "cells.h5ad")}
    try:
        import tiledbsoma.io
    except ImportError:
        pass
    else:
        paths["soma"] = tiledbsoma.io.from_anndata(str(folder / "soma"), adata, measurement_name="RNA")
    return paths


def _torchrun(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "omnicell", *args],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "spatial"), [("h5ad", False), ("soma", True)], ids=["h5ad-single-cell", "soma-spatial"]
)
def test_two_ranks_equal_one_process(inputs, tmp_path, kind, spatial):
    if kind not in inputs:
        pytest.skip("tiledbsoma is not installed (pip install 'omnicell[census]')")
    options = ["--model", "omnicell-tiny", "--n-genes", "32", "--batch-size", "16", "--device", "cpu", "--quiet",
               "--threads", "1"]  # fmt: skip
    if spatial:
        options += ["--spatial", "--n-neighbors", "3", "--store-window"]
    two = tmp_path / "two.h5ad"
    completed = _torchrun(["embed", inputs[kind], "-o", str(two), *options])
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("wrote") == 1 and "on 2 processes" in completed.stdout  # rank 0 reports
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.h5ad"]  # parts and temporary files removed

    one = tmp_path / "one.h5ad"
    assert main(["embed", inputs[kind], "-o", str(one), *options]) == 0
    a, b = ad.read_h5ad(two), ad.read_h5ad(one)
    assert list(a.obs_names) == list(b.obs_names) and a.n_obs == 91
    assert set(a.obsm) == set(b.obsm)
    for key in b.obsm:
        np.testing.assert_array_equal(np.asarray(a.obsm[key]), np.asarray(b.obsm[key]), err_msg=key)
    assert a.uns["omnicell"]["embed_cells"]["n_empty_cells"] == b.uns["omnicell"]["embed_cells"]["n_empty_cells"]
    if spatial:
        assert {"X_omnicell_niche", "X_omnicell_window", "omnicell_neighbors"} <= set(a.obsm)
