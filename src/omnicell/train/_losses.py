"""The pretraining objective: masked soft-rank regression plus the MoE load-balance loss.

``L = L_MLM + alpha * L_balance`` with ``L_MLM`` the Huber loss (delta 1) between the bilinear
head's prediction and the true soft rank at masked positions, and ``alpha = 0.05`` while
``L_MLM < 10``, else 10 (paper, eq. 18-20).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

__all__ = ["ObjectiveConfig", "adaptive_balance_weight", "masked_huber"]


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Constants of the objective.

    Parameters
    ----------
    delta
        Huber threshold (1 in the paper).
    balance_weight
        ``alpha_0``, the load-balance weight while the regression loss is below ``threshold``.
    balance_weight_high
        The weight at or above ``threshold`` (10 in the paper).
    threshold
        Regression loss at which the weight switches.
    """

    delta: float = 1.0
    balance_weight: float = 0.05
    balance_weight_high: float = 10.0
    threshold: float = 10.0

    def __post_init__(self) -> None:
        if self.delta <= 0:
            raise ValueError(f"delta must be positive, got {self.delta!r}.")
        if self.balance_weight < 0 or self.balance_weight_high < 0:
            raise ValueError("balance weights must be non-negative.")


def masked_huber(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *, delta: float = 1.0
) -> tuple[torch.Tensor, int]:
    """Sum of the Huber loss over masked positions, and their number.

    Computed in float32 whatever the autocast dtype. Divide the sum by the number of masked
    positions of the whole (global) batch to get the paper's ``L_MLM``.
    """
    selected = mask.bool()
    n_masked = int(selected.sum())
    if n_masked == 0:
        return prediction.float().sum() * 0.0, 0
    loss = F.huber_loss(prediction.float()[selected], target.float()[selected], delta=delta, reduction="sum")
    return loss, n_masked


def adaptive_balance_weight(regression_loss: float, config: ObjectiveConfig = ObjectiveConfig()) -> float:
    """``alpha``: ``config.balance_weight`` while ``regression_loss < config.threshold``, else the high weight."""
    return config.balance_weight if float(regression_loss) < config.threshold else config.balance_weight_high
