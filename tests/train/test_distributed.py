"""Two CPU processes under torchrun (gloo) give the single-process result on the same global batch."""

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

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)


def test_two_processes_equal_one(recipe_factory, tmp_path):
    # 8 cells per step in micro-batches of 2: each of two processes takes two micro-batches, one process four
    values = recipe_factory(tmp_path / "ddp")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(values))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "omnicell", "pretrain", str(path), "--quiet", "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("trained tiny-test") == 1  # rank 0 reports

    pretrain(Recipe.from_dict(recipe_factory(tmp_path / "single")))

    two, one = (
        load_file(str(tmp_path / "ddp" / "model" / "model.safetensors")),
        load_file(str(tmp_path / "single" / "model" / "model.safetensors")),
    )
    assert two.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=key)
    log_two, log_one = pd.read_csv(tmp_path / "ddp" / "loss_log.csv"), pd.read_csv(tmp_path / "single" / "loss_log.csv")
    np.testing.assert_allclose(log_two["loss"], log_one["loss"], rtol=1e-5)
    np.testing.assert_allclose(log_two["grad_norm"], log_one["grad_norm"], rtol=1e-4)
    np.testing.assert_array_equal(log_two["n_masked"], log_one["n_masked"])
    np.testing.assert_array_equal(log_two["sequences"], log_one["sequences"])
    assert (log_one["sequences"] == 8).all()
    assert log_one["loss"].iloc[-1] < log_one["loss"].iloc[0]  # it did train
