"""One optimiser step over a global batch, alone or with DistributedDataParallel.

Loss normalisation (why a run on N processes equals the run on one)
--------------------------------------------------------------------
A step consumes a global batch split into micro-batches of a fixed size; micro-batch ``j`` goes
to process ``j % world_size``. The step's objective is

``L = sum_j H_j / M + sum_j alpha_j * B_j / J``

with ``H_j`` the summed Huber loss of micro-batch ``j``, ``M`` the number of masked positions in
the whole global batch (summed over processes before any backward pass), ``B_j`` the load-balance
loss of micro-batch ``j``, ``J`` the number of micro-batches and ``alpha_j`` the paper's adaptive
weight chosen from micro-batch ``j``'s own mean Huber loss. Each process back-propagates its terms
times ``world_size`` (DDP averages gradients), accumulating without synchronising until its last
micro-batch. The result depends on the global batch and the micro-batch size, not on how many
processes share the work (up to floating-point summation order). Dropout is seeded per micro-batch
from ``(seed, stage, step, j)`` for the same reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import torch
from torch import nn

from omnicell.nn import OmniCell
from omnicell.train._distributed import DistributedContext, all_reduce_sum
from omnicell.train._losses import ObjectiveConfig, adaptive_balance_weight, masked_huber
from omnicell.train._masking import MaskedBatch
from omnicell.train._schedule import WarmupCosine

__all__ = ["OptimizerConfig", "StepResult", "Trainer", "derive_seed"]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW, warm-up + cosine schedule and clipping (paper: betas 0.9/0.99, weight decay 0.01, clip 1.0).

    Parameters
    ----------
    lr
        Peak learning rate (reached at the end of the warm-up).
    min_lr
        Learning rate at the end of the cosine decay (paper: 5e-7).
    warmup_steps
        Optimiser steps of linear warm-up.
    betas, weight_decay, eps
        AdamW parameters. Weight decay applies to matrices and embeddings, not to norm gains.
    clip_norm
        Maximum global gradient norm; None disables clipping.
    """

    lr: float = 1e-4
    min_lr: float = 5e-7
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.01
    eps: float = 1e-8
    clip_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}.")
        if self.min_lr < 0 or self.warmup_steps < 0:
            raise ValueError("min_lr and warmup_steps must be non-negative.")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive or None, got {self.clip_norm!r}.")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))


@dataclasses.dataclass
class StepResult:
    """Statistics of one optimiser step over the global batch (identical on every process)."""

    loss: float
    mlm: float
    balance: float
    alpha: float
    grad_norm: float
    lr: float
    n_masked: int
    n_sequences: int
    n_tokens: int


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence), for torch's global generator."""
    return int(
        np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1
    )


class _Objective(nn.Module):
    """Forward pass returning the head's predictions and the load-balance loss (the module DDP wraps)."""

    def __init__(self, network: OmniCell) -> None:
        super().__init__()
        self.network = network

    def forward(self, tokens, values, positions, padding_mask, cell_index):
        output = self.network(tokens, values, positions, padding_mask)
        return self.network.output(output.hidden, cell_index), output.load_balance_loss


class Trainer:
    """Optimiser, schedule and the step function for one network.

    Parameters
    ----------
    network
        The network to train (moved to ``context.device``, put in train mode).
    optimizer
        Optimiser and schedule settings.
    total_steps
        Length of the schedule (all stages).
    context
        Distributed context (single process by default).
    objective
        Loss constants.
    precision
        ``"auto"`` (bf16 autocast on CUDA, float32 elsewhere), ``"float32"`` or ``"bfloat16"``.
    """

    def __init__(
        self,
        network: OmniCell,
        optimizer: OptimizerConfig,
        *,
        total_steps: int,
        context: DistributedContext | None = None,
        objective: ObjectiveConfig | None = None,
        precision: str = "auto",
    ) -> None:
        self.context = context or DistributedContext()
        self.device = self.context.device
        self.network = network.to(self.device)
        self.network.train()
        self.config = optimizer
        self.objective = objective or ObjectiveConfig()
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}.")
        if precision == "auto":
            precision = "bfloat16" if self.device.type == "cuda" else "float32"
        if precision == "bfloat16" and self.device.type != "cuda":
            raise ValueError("bfloat16 autocast is supported on CUDA only; use precision='float32' on the CPU.")
        self.precision = precision
        module = _Objective(self.network)
        if self.context.distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = DistributedDataParallel(module, device_ids=device_ids)
        else:
            self.module = module
        decay, no_decay = [], []
        for name, parameter in self.network.named_parameters():
            (no_decay if parameter.ndim < 2 or name.endswith("gamma") else decay).append(parameter)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": optimizer.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=optimizer.lr,
            betas=optimizer.betas,
            eps=optimizer.eps,
        )
        self.scheduler = WarmupCosine(
            self.optimizer, warmup_steps=optimizer.warmup_steps, total_steps=total_steps, min_lr=optimizer.min_lr
        )
        self.step_count = 0

    def _autocast(self):
        if self.precision == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(
        self, micro_batches: list[MaskedBatch], micro_ids: list[int], n_micro: int, seed: tuple[int, ...]
    ) -> StepResult:
        """One optimiser step.

        Parameters
        ----------
        micro_batches
            This process's micro-batches of the global batch.
        micro_ids
            Their indices ``j`` within the global batch.
        n_micro
            Number of micro-batches in the global batch (all processes).
        seed
            Integers identifying the step (run seed, stage, step); dropout of micro-batch ``j`` is
            seeded from ``seed + (j,)``.
        """
        if len(micro_batches) != len(micro_ids):
            raise ValueError("one id per micro-batch is needed.")
        counts = torch.tensor([float(sum(mb.n_masked for mb in micro_batches))], dtype=torch.float64)
        n_masked_global = float(all_reduce_sum(counts, self.context)[0])
        normaliser = max(n_masked_global, 1.0)
        world = float(self.context.world_size)
        totals = torch.zeros(6, dtype=torch.float64)  # huber sum, balance sum, alpha sum, sequences, tokens, loss
        self.optimizer.zero_grad(set_to_none=True)
        for position, (masked, j) in enumerate(zip(micro_batches, micro_ids, strict=True)):
            last = position == len(micro_batches) - 1
            sync = contextlib.nullcontext() if (last or not self.context.distributed) else self.module.no_sync()
            tensors = masked.batch.to_torch(self.device)
            target = torch.from_numpy(masked.target).to(self.device)
            mask = torch.from_numpy(masked.mask).to(self.device)
            devices = [self.device] if self.device.type == "cuda" else []
            with sync, torch.random.fork_rng(devices=devices):
                torch.manual_seed(derive_seed(*seed, j))
                with self._autocast():
                    prediction, balance = self.module(
                        tensors["tokens"], tensors["values"], tensors["positions"], tensors["padding_mask"],
                        tensors["cell_index"],
                    )  # fmt: skip
                huber_sum, n_masked = masked_huber(prediction, target, mask, delta=self.objective.delta)
                own_mean = float(huber_sum.detach()) / max(n_masked, 1)
                alpha = adaptive_balance_weight(own_mean, self.objective)
                loss = huber_sum / normaliser + alpha * balance.float() / n_micro
                (loss * world).backward()
            padding = tensors["padding_mask"]
            n_tokens = int(padding.sum()) if padding is not None else int(tensors["tokens"].numel())
            totals += torch.tensor(
                [float(huber_sum.detach()), float(balance.detach()), alpha, masked.n_sequences, n_tokens,
                 float(loss.detach())],
                dtype=torch.float64,
            )  # fmt: skip
        grad_norm = self._clip()
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        self.step_count += 1
        totals = all_reduce_sum(totals, self.context)
        return StepResult(
            loss=float(totals[5]),
            mlm=float(totals[0]) / normaliser,
            balance=float(totals[1]) / n_micro,
            alpha=float(totals[2]) / n_micro,
            grad_norm=grad_norm,
            lr=lr,
            n_masked=int(n_masked_global),
            n_sequences=int(totals[3]),
            n_tokens=int(totals[4]),
        )

    def _clip(self) -> float:
        parameters = [p for p in self.network.parameters() if p.grad is not None]
        if self.config.clip_norm is None:
            norms = [p.grad.detach().float().norm() for p in parameters]
            return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
        norm = torch.nn.utils.clip_grad_norm_(parameters, self.config.clip_norm)
        value = float(norm)
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the gradient norm is {value} at step {self.step_count}: training diverged. Lower the learning "
                "rate, lengthen the warm-up or check the data."
            )
        return value

    def state_dict(self) -> dict:
        """Optimiser and scheduler state with the step counter."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step_count = int(state["step_count"])


@torch.no_grad()
def evaluate_masked_loss(
    network: OmniCell, batches: list[MaskedBatch], *, device: torch.device, objective: ObjectiveConfig | None = None
) -> float:
    """Mean Huber loss over the masked positions of fixed batches, in eval mode (no dropout)."""
    objective = objective or ObjectiveConfig()
    was_training = network.training
    network.eval()
    total, count = 0.0, 0
    try:
        for masked in batches:
            tensors = masked.batch.to_torch(device)
            output = network(tensors["tokens"], tensors["values"], tensors["positions"], tensors["padding_mask"])
            prediction = network.output(output.hidden, tensors["cell_index"])
            loss, n = masked_huber(
                prediction, torch.from_numpy(masked.target).to(device), torch.from_numpy(masked.mask).to(device),
                delta=objective.delta,
            )  # fmt: skip
            total += float(loss)
            count += n
    finally:
        network.train(was_training)
    return total / max(count, 1)
