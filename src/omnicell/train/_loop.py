"""The training loop and its loss log, shared by ``omnicell pretrain`` and :func:`omnicell.tl.fine_tune`.

A run is a sequence of optimiser steps; what differs between pretraining and fine-tuning is where
a step's batches come from, where it lies in the run (stage, epoch) and what happens after it
(checkpoints, a held-out loss). Those are the callbacks of :func:`train_loop`; the step itself,
its timing, the loss log row, the progress bar and prefetching are the same for both.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from omnicell._core.progress import progress as track_progress
from omnicell.train._masking import MaskedBatch
from omnicell.train._trainer import StepResult, Trainer

__all__ = ["LOG_COLUMNS", "LossLog", "StepPosition", "train_loop"]

LOG_COLUMNS = (
    "step", "stage", "stage_step", "epoch", "lr", "loss", "mlm", "balance", "alpha", "grad_norm", "n_masked",
    "sequences", "tokens", "seconds", "sequences_per_s", "tokens_per_s", "tflops", "mfu",
)  # fmt: skip
"""Columns of the loss log (``loss_log.csv`` of ``omnicell pretrain``), one row per optimiser step.

``tflops`` is the model's matrix-multiply throughput (3x the forward FLOPs of the step's real tokens,
as ``benchmarks/forward.py`` counts them, over all processes); ``mfu`` divides it by the devices'
dense bf16 peak, known for common GPUs or set with ``OMNICELL_PEAK_TFLOPS`` (empty otherwise)."""

logger = logging.getLogger("omnicell")

# Dense bf16 matrix peak (TFLOP/s) of common training GPUs, for the MFU column.
_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L4": 121.0}


def _peak_tflops(device: torch.device) -> float | None:
    if os.environ.get("OMNICELL_PEAK_TFLOPS"):
        return float(os.environ["OMNICELL_PEAK_TFLOPS"])
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in _PEAK_TFLOPS.items() if key in name), None)


StepBatches = tuple[list[MaskedBatch], list[int], int]
"""This process's masked micro-batches of a step, their ids in the global batch, the number of micro-batches."""


@dataclasses.dataclass(frozen=True)
class StepPosition:
    """Where optimiser step ``step`` (counted from the start of the run) lies.

    Attributes
    ----------
    step
        Step of the run.
    stage
        Name of its stage.
    stage_index
        Index of the stage; the step's dropout seed is ``(seed, stage_index, stage_step)``.
    stage_step
        Step within the stage.
    epoch
        Passes over the stage's cells completed before this step.
    """

    step: int
    stage: str
    stage_index: int
    stage_step: int
    epoch: float


class LossLog:
    """CSV loss log, one row per step (:data:`LOG_COLUMNS` plus ``extra_columns``), flushed every row.

    Parameters
    ----------
    path
        The CSV file (replaced).
    keep_before
        On resume: keep the rows of an existing log for steps before this one, drop the others.
    extra_columns
        Further columns (e.g. ``heldout_mlm``), empty unless a row gives them.
    """

    def __init__(self, path: str | os.PathLike, *, keep_before: int = 0, extra_columns: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.columns = (*LOG_COLUMNS, *extra_columns)
        rows = []
        if keep_before > 0 and self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) < keep_before]
        self.handle = open(self.path, "w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.handle, fieldnames=self.columns, restval="")
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.handle.flush()

    def write(
        self, position: StepPosition, result: StepResult, seconds: float, extra: Mapping[str, object] | None = None
    ) -> None:
        """Append the row of one step."""
        self.writer.writerow(
            {
                "step": position.step, "stage": position.stage, "stage_step": position.stage_step,
                "epoch": f"{position.epoch:.4f}", "lr": f"{result.lr:.6g}", "loss": f"{result.loss:.6f}",
                "mlm": f"{result.mlm:.6f}", "balance": f"{result.balance:.6f}", "alpha": f"{result.alpha:.4g}",
                "grad_norm": f"{result.grad_norm:.4f}", "n_masked": result.n_masked, "sequences": result.n_sequences,
                "tokens": result.n_tokens, "seconds": f"{seconds:.4f}",
                "sequences_per_s": f"{result.n_sequences / max(seconds, 1e-9):.3f}",
                "tokens_per_s": f"{result.n_tokens / max(seconds, 1e-9):.1f}",
                **dict(extra or {}),
            }
        )  # fmt: skip
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> LossLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def train_loop(
    trainer: Trainer,
    *,
    start: int,
    end: int,
    seed: int,
    locate: Callable[[int], StepPosition],
    batches: Callable[[int], StepBatches],
    log: LossLog | None = None,
    evaluate: Callable[[StepPosition, StepResult], Mapping[str, object] | None] | None = None,
    after_step: Callable[[StepPosition, StepResult], None] | None = None,
    prefetch: bool = False,
    description: str = "train",
    progress: bool = True,
) -> StepResult | None:
    """Run optimiser steps ``start`` to ``end - 1`` of a run; return the last step's statistics.

    Parameters
    ----------
    trainer
        Optimiser, schedule and step function of the network.
    start, end
        First step and the step after the last (counted from the start of the run).
    seed
        Run seed; step ``s`` is seeded ``(seed, stage_index, stage_step)`` of ``locate(s)``.
    locate
        Position (stage, epoch) of a step; called after the step's batches were built.
    batches
        This process's masked micro-batches of a step (see :func:`omnicell.train.step_batches`).
    log
        Loss log to append one row per step to.
    evaluate
        Called after each step, before its log row: extra columns of that row (e.g. a held-out loss).
    after_step
        Called after each step's log row (e.g. to write a checkpoint).
    prefetch
        Build the next step's batches in a background thread while this step runs (only within a stage).
    description
        Label of the progress bar.
    progress
        Show progress: a bar on an interactive terminal or in Jupyter (when ``oc.settings.progress_bar``
        allows), else a log line every tenth of the steps or 30 s.
    """
    bar = track_progress(total=end, initial=start, unit="steps", desc=description, disable=not progress)
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1) if prefetch else None
    pending: dict[int, concurrent.futures.Future] = {}
    last: StepResult | None = None
    network = getattr(trainer.network, "module", trainer.network)  # unwrapped from DistributedDataParallel
    peak = _peak_tflops(next(network.parameters()).device)
    world_size = trainer.context.world_size
    log_every = max(1, (end - start) // 20)  # about 20 throughput lines per run
    try:
        for step in range(start, end):
            started = time.perf_counter()
            future = pending.pop(step, None)
            micro_batches, ids, n_micro = future.result() if future is not None else batches(step)
            position = locate(step)
            if executor is not None and step + 1 < end and locate(step + 1).stage_index == position.stage_index:
                pending[step + 1] = executor.submit(batches, step + 1)
            last = trainer.step(micro_batches, ids, n_micro, seed=(seed, position.stage_index, position.stage_step))
            elapsed = time.perf_counter() - started
            extra = dict(evaluate(position, last) or {}) if evaluate is not None else {}
            # training ~ 3x the forward FLOPs (the backward twice the forward), over the real tokens of
            # all processes (the step's statistics are summed over them)
            tflops = 3 * network.forward_flops(last.n_tokens, last.n_sequences) / max(elapsed, 1e-9) / 1e12
            mfu = None if peak is None else tflops / (peak * world_size)
            extra.update(tflops=f"{tflops:.4g}", mfu="" if mfu is None else f"{mfu:.4f}")
            if log is not None:
                log.write(position, last, elapsed, extra)
            if progress and ((step - start) % log_every == 0 or step + 1 == end):
                logger.info(
                    "%s: step %d/%d loss %.4f, %.0f tokens/s, %.3g TFLOP/s%s", description, step + 1, end, last.loss,
                    last.n_tokens / max(elapsed, 1e-9), tflops, "" if mfu is None else f", MFU {mfu:.1%}",
                )  # fmt: skip
            bar.set_postfix(
                stage=position.stage, loss=f"{last.loss:.4f}", mlm=f"{last.mlm:.4f}",
                cells_s=f"{last.n_sequences / max(elapsed, 1e-9):.1f}", refresh=False,
            )  # fmt: skip
            bar.update(1)
            if after_step is not None:
                after_step(position, last)
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
    return last
