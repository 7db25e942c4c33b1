"""Fine-tuning: continued masked-gene training of a model on the cells of one planned pass.

:func:`omnicell.tl.fine_tune` checks the user's options, tokenises and plans the pass over the AnnData,
then calls :func:`fine_tune_network` here and records the result in ``uns``. The objective, optimiser,
schedule and loop are those of pretraining (:func:`train_loop`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os

import numpy as np
import torch

from omnicell._engine.plan import InferencePlan
from omnicell.models import OmniCellModel
from omnicell.train._distributed import DistributedContext
from omnicell.train._loop import LossLog, StepPosition, train_loop
from omnicell.train._losses import ObjectiveConfig
from omnicell.train._masking import MaskingConfig, mask_batch
from omnicell.train._pretrain import step_batches
from omnicell.train._stream import CellStream, StreamSource
from omnicell.train._trainer import OptimizerConfig, StepResult, Trainer, evaluate_masked_loss
from omnicell.train._training_state import weights_sha256

__all__ = ["MAX_VALIDATION_CELLS", "FineTuneResult", "fine_tune_network"]

logger = logging.getLogger("omnicell")

MAX_VALIDATION_CELLS = 2048


@dataclasses.dataclass
class FineTuneResult:
    """What :func:`fine_tune_network` returns: the tuned model and the losses and counts to record."""

    model: OmniCellModel
    heldout_loss: list[float]
    train_loss: list[float]
    n_train: int
    n_validation: int
    steps: int
    warmup_steps: int
    precision: str


def fine_tune_network(
    plan: InferencePlan,
    base: OmniCellModel,
    *,
    kind: str,
    masking: MaskingConfig,
    optimizer: OptimizerConfig,
    epochs: int,
    batch_size: int,
    micro: int,
    warmup_steps: int | None,
    validation_fraction: float,
    seed: int,
    device: torch.device,
    precision: str,
    log: str | os.PathLike | None,
    name: str | None,
    backed: bool,
) -> FineTuneResult:
    """Train a copy of ``base``'s network on the cells of ``plan``; ``base`` is not modified.

    A share ``validation_fraction`` of the cells (at most :data:`MAX_VALIDATION_CELLS`) is held out
    with fixed masks; its masked loss is measured before training and after every epoch. ``kind``
    (``"single_cell"`` or ``"spatial"``) names the stage in the loss log; ``precision`` is the
    :class:`Trainer`'s (``"auto"``, ``"float32"`` or ``"bfloat16"``); ``micro`` cells go through
    each forward pass (``batch_size`` per optimiser step); a ``backed`` AnnData is shuffled in
    chunks of rows, so reads stay sequential.
    """
    # Split the cells.
    order = np.random.default_rng([seed, 1]).permutation(plan.n_obs)
    n_validation = min(round(float(validation_fraction) * plan.n_obs), MAX_VALIDATION_CELLS)
    if validation_fraction > 0 and plan.n_obs >= 2:
        n_validation = max(n_validation, 1)
    validation_rows, train_rows = np.sort(order[:n_validation]), np.sort(order[n_validation:])
    if len(train_rows) == 0:
        raise ValueError(f"no cells left to train on ({plan.n_obs} cells, validation_fraction={validation_fraction}).")
    stream = CellStream(
        [StreamSource(plan, rows=train_rows, name="adata")],
        seed=int(np.random.SeedSequence([seed, 2]).generate_state(1)[0]),
        chunk_size=256 if backed else 1,
        window_chunks=16 if backed else len(train_rows),
    )
    validation = [
        mask_batch(plan.token_batch(validation_rows[start : start + micro]), masking,
                   np.random.default_rng([seed, 3, start]))
        for start in range(0, len(validation_rows), micro)
    ]  # fmt: skip

    steps_per_epoch = math.ceil(len(train_rows) / int(batch_size))
    total = int(epochs) * steps_per_epoch
    warmup = int(warmup_steps) if warmup_steps is not None else max(0, total // 10)
    optimizer = dataclasses.replace(optimizer, warmup_steps=warmup)
    network = copy.deepcopy(base.network).to(device)
    trainer = Trainer(network, optimizer, total_steps=total, precision=precision,
                      context=DistributedContext(device=device))  # fmt: skip
    objective = ObjectiveConfig()

    heldout = [evaluate_masked_loss(network, validation, device=device, objective=objective)] if validation else []
    train_loss: list[float] = []
    losses: list[float] = []

    def locate(step: int) -> StepPosition:
        return StepPosition(step, kind, 0, step, step * int(batch_size) / len(train_rows))

    def end_of_epoch(position: StepPosition, result: StepResult) -> dict[str, str] | None:
        """The held-out loss after the last step of each epoch (a column of that step's log row)."""
        losses.append(result.mlm)
        if (position.step + 1) % steps_per_epoch:
            return None
        train_loss.append(float(np.mean(losses)))
        losses.clear()
        if validation:
            heldout.append(evaluate_masked_loss(network, validation, device=device, objective=objective))
        logger.info(
            "fine_tune: epoch %d: train masked loss %.4f%s", len(train_loss), train_loss[-1],
            f", held-out {heldout[-1]:.4f} (before: {heldout[0]:.4f})" if heldout else "",
        )  # fmt: skip
        return {"heldout_mlm": f"{heldout[-1]:.6f}"} if validation else None

    with contextlib.ExitStack() as stack:
        loss_log = stack.enter_context(LossLog(log, extra_columns=("heldout_mlm",))) if log is not None else None
        train_loop(
            trainer, start=0, end=total, seed=seed, locate=locate, log=loss_log, evaluate=end_of_epoch,
            batches=lambda step: step_batches(
                stream, masking, seed=seed, stage_index=0, stage_step=step,
                cells_per_step=int(batch_size), micro_batch_size=micro,
            ),
            description="fine_tune",
        )  # fmt: skip
    network.eval()
    tuned = OmniCellModel(
        network,
        base.vocab,
        name=name or f"{base.name}-finetuned",
        sha256=weights_sha256(network),
        source=f"fine_tune of {base.name} (sha256 {base.sha256})",
    )
    return FineTuneResult(
        model=tuned,
        heldout_loss=heldout,
        train_loss=train_loss,
        n_train=len(train_rows),
        n_validation=len(validation_rows),
        steps=total,
        warmup_steps=warmup,
        precision=trainer.precision,
    )
