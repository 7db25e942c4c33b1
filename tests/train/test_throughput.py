"""Pretraining logs its throughput, and activation checkpointing changes memory, not results."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from omnicell.train import Recipe, pretrain


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_activation_checkpointing_trains_the_same_and_throughput_is_logged(recipe_factory, tmp_path):
    logger = logging.getLogger("omnicell")
    collect, level = _Collect(), logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    logs = []
    try:
        for checkpointing in (False, True):
            output = tmp_path / f"run-{checkpointing}"
            batch = {"cells_per_step": 8, "micro_batch_size": 2, "activation_checkpointing": checkpointing}
            recipe = Recipe.from_dict(recipe_factory(output, batch=batch))
            assert recipe.activation_checkpointing is checkpointing
            pretrain(recipe)
            logs.append(pd.read_csv(output / "loss_log.csv"))
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    # same dropout masks (the RNG state is replayed in the recomputation), same losses
    np.testing.assert_allclose(logs[1]["loss"], logs[0]["loss"], rtol=1e-5)
    assert (logs[0]["tokens_per_s"] > 0).all() and (logs[0]["tflops"] > 0).all()
    assert logs[0]["mfu"].isna().all()  # no known peak on CPU
    assert any("tokens/s" in message and "TFLOP/s" in message for message in collect.messages)
