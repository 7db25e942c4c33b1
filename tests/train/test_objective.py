"""The objective (Huber at masked positions + adaptive load balance) and the schedule."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

import omnicell as oc
from omnicell.train import (
    MaskingConfig,
    ObjectiveConfig,
    OptimizerConfig,
    Trainer,
    WarmupCosine,
    adaptive_balance_weight,
    evaluate_masked_loss,
    mask_batch,
    masked_huber,
    warmup_cosine_rate,
)


def _masked(adata, model, seed=0, rows=None):
    oc.pp.tokenize(adata, model)
    batch = oc.get.token_batch(adata, rows, model)
    return mask_batch(batch, MaskingConfig.for_stage("single_cell"), np.random.default_rng(seed))


def test_masked_huber_matches_definition():
    rng = np.random.default_rng(0)
    prediction = rng.normal(0, 3, (4, 9))
    target = rng.uniform(0, 5, (4, 9))
    mask = rng.random((4, 9)) < 0.4
    total, count = masked_huber(torch.tensor(prediction), torch.tensor(target), torch.tensor(mask))
    x = np.abs(prediction - target)[mask]
    expected = np.where(x <= 1, 0.5 * x**2, x - 0.5).sum()
    assert count == mask.sum()
    assert float(total) == pytest.approx(expected, rel=1e-6)
    empty, none = masked_huber(torch.tensor(prediction), torch.tensor(target), torch.zeros(4, 9, dtype=torch.bool))
    assert none == 0 and float(empty) == 0.0


def test_adaptive_weight():
    assert adaptive_balance_weight(0.3) == 0.05
    assert adaptive_balance_weight(9.99) == 0.05
    assert adaptive_balance_weight(10.0) == 10.0
    assert adaptive_balance_weight(50.0, ObjectiveConfig(balance_weight=0.1, balance_weight_high=2.0)) == 2.0


def test_step_loss_is_the_head_huber_plus_weighted_balance(tiny_adata, tiny_model):
    network = copy.deepcopy(tiny_model.network)  # dropout 0 in this checkpoint
    masked = _masked(tiny_adata, tiny_model)
    tensors = masked.batch.to_torch("cpu")
    with torch.no_grad():
        output = network(tensors["tokens"], tensors["values"], tensors["positions"], tensors["padding_mask"])
        prediction = network.output(output.hidden, tensors["cell_index"]).numpy()
    x = np.abs(prediction - masked.target)[masked.mask]
    expected_mlm = np.where(x <= 1, 0.5 * x**2, x - 0.5).mean()
    assert evaluate_masked_loss(network, [masked], device=torch.device("cpu")) == pytest.approx(expected_mlm, rel=1e-5)
    trainer = Trainer(network, OptimizerConfig(lr=1e-3, warmup_steps=0), total_steps=2)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    result = trainer.step([masked], [0], 1, seed=(0, 0, 0))
    assert result.mlm == pytest.approx(expected_mlm, rel=1e-5)
    assert result.balance == pytest.approx(float(output.load_balance_loss), rel=1e-5)
    assert result.alpha == 0.05
    assert result.loss == pytest.approx(expected_mlm + 0.05 * float(output.load_balance_loss), rel=1e-5)
    assert result.n_masked == masked.n_masked
    assert any(not torch.equal(before[k], v) for k, v in network.state_dict().items())


def test_large_regression_loss_switches_the_balance_weight(tiny_adata, tiny_model):
    network = copy.deepcopy(tiny_model.network)
    with torch.no_grad():
        network.output.W.mul_(500.0)  # predictions far outside [0, 5]
    masked = _masked(tiny_adata, tiny_model)
    trainer = Trainer(network, OptimizerConfig(lr=1e-4, warmup_steps=0), total_steps=1)
    result = trainer.step([masked], [0], 1, seed=(0, 0, 0))
    assert result.mlm > 10
    assert result.alpha == 10.0


def test_gradient_accumulation_equals_one_big_batch(tiny_adata, tiny_model):
    """Micro-batches of 6 cells accumulate to the update of one 24-cell micro-batch."""
    oc.pp.tokenize(tiny_adata, tiny_model)
    config = MaskingConfig.for_stage("single_cell")
    rows = np.arange(tiny_adata.n_obs)
    whole = oc.get.token_batch(tiny_adata, rows, tiny_model)
    big = mask_batch(whole, config, np.random.default_rng(5))
    parts = []
    for start in range(0, 24, 6):
        part = oc.get.token_batch(tiny_adata, rows[start : start + 6], tiny_model)
        masked = mask_batch(part, config, np.random.default_rng(0))
        masked.mask = big.mask[start : start + 6]
        masked.batch.values = big.batch.values[start : start + 6]
        parts.append(masked)
    # the load-balance term is per micro-batch; switch it off to compare the regression gradients
    objective = ObjectiveConfig(balance_weight=0.0, balance_weight_high=0.0)
    one = Trainer(
        copy.deepcopy(tiny_model.network), OptimizerConfig(warmup_steps=0), total_steps=1, objective=objective
    )
    many = Trainer(
        copy.deepcopy(tiny_model.network), OptimizerConfig(warmup_steps=0), total_steps=1, objective=objective
    )
    r_one = one.step([big], [0], 1, seed=(0, 0, 0))
    r_many = many.step(parts, [0, 1, 2, 3], 4, seed=(0, 0, 0))
    assert r_one.mlm == pytest.approx(r_many.mlm, rel=1e-6)
    assert r_one.grad_norm == pytest.approx(r_many.grad_norm, rel=1e-5)
    for (key, a), b in zip(one.network.state_dict().items(), many.network.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=key)


def test_warmup_cosine_curve():
    rates = [warmup_cosine_rate(s, peak=1e-3, minimum=1e-5, warmup_steps=4, total_steps=20) for s in range(24)]
    assert rates[0] == pytest.approx(2.5e-4) and rates[3] == pytest.approx(1e-3)
    assert all(a < b for a, b in itertools.pairwise(rates[:4]))
    assert all(a >= b for a, b in itertools.pairwise(rates[3:20]))
    assert rates[19] == pytest.approx(1e-5) and rates[23] == pytest.approx(1e-5)
    middle = 4 + (19 - 4) / 2
    assert warmup_cosine_rate(middle, peak=1e-3, minimum=1e-5, warmup_steps=4, total_steps=20) == pytest.approx(
        1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi / 2))
    )


def test_scheduler_follows_the_curve_and_resumes():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1e-3)
    scheduler = WarmupCosine(optimizer, warmup_steps=3, total_steps=10, min_lr=1e-5)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [warmup_cosine_rate(s, peak=1e-3, minimum=1e-5, warmup_steps=3, total_steps=10) for s in range(10)]
    assert seen == pytest.approx(expected)
    resumed_optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    resumed = WarmupCosine(resumed_optimizer, warmup_steps=3, total_steps=10, min_lr=1e-5)
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.get_last_lr() == scheduler.get_last_lr()


def test_bad_optimizer_settings():
    with pytest.raises(ValueError, match="lr"):
        OptimizerConfig(lr=0)
    with pytest.raises(ValueError, match="clip_norm"):
        OptimizerConfig(clip_norm=-1)
    with pytest.raises(ValueError, match="bfloat16"):
        Trainer(torch.nn.Linear(1, 1), OptimizerConfig(), total_steps=1, precision="bfloat16")
