"""Learning-rate schedule: linear warm-up, then cosine decay to a minimum rate."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["WarmupCosine", "warmup_cosine_rate"]


def warmup_cosine_rate(step: int, *, peak: float, minimum: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based).

    Steps ``0 .. warmup_steps - 1`` rise linearly to ``peak`` (step ``warmup_steps - 1`` uses the
    peak); the remaining steps follow half a cosine from ``peak`` down to ``minimum``, reached at
    the last step, and stay there if training runs longer.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return minimum + (peak - minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine(LRScheduler):
    """:func:`warmup_cosine_rate` as a PyTorch scheduler; call ``step()`` after each optimiser step.

    The peak of each parameter group is its initial learning rate. ``state_dict`` holds the step
    counter, so a resumed run continues on the same curve.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        warmup_steps: int,
        total_steps: int,
        min_lr: float,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0 or total_steps < 1:
            raise ValueError(f"need warmup_steps >= 0 and total_steps >= 1, got {warmup_steps} and {total_steps}.")
        if min_lr < 0:
            raise ValueError(f"min_lr must be non-negative, got {min_lr}.")
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr = float(min_lr)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [
            warmup_cosine_rate(
                self.last_epoch,
                peak=base,
                minimum=min(self.min_lr, base),
                warmup_steps=self.warmup_steps,
                total_steps=self.total_steps,
            )
            for base in self.base_lrs
        ]
