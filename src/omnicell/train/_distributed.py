"""Process-group helpers: the same training entry point alone or under ``torchrun``.

``torchrun --nproc-per-node N -m omnicell pretrain RECIPE`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and joins
the group with NCCL on CUDA and gloo on CPU. Without them the run is a single process.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "all_reduce_sum", "init_distributed"]


@dataclasses.dataclass
class DistributedContext:
    """Where this process stands in the run.

    Attributes
    ----------
    rank, world_size, local_rank
        As set by ``torchrun`` (0, 1, 0 for a single process).
    device
        This process's device (``cuda:LOCAL_RANK`` under torchrun with GPUs).
    backend
        ``"nccl"``, ``"gloo"`` or None for a single process.
    owns_group
        Whether :func:`init_distributed` created the process group (and must destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: str | torch.device | None = None, *, timeout_s: float = 1800.0) -> DistributedContext:
    """Join the ``torchrun`` process group if the environment describes one.

    Parameters
    ----------
    device
        ``"auto"``/None: CUDA if available, else CPU. Under torchrun with CUDA each process takes
        ``cuda:LOCAL_RANK``.
    timeout_s
        Collective timeout.
    """
    from omnicell.models import resolve_device

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if world_size <= 1:
        return DistributedContext(device=resolved)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=_dt.timedelta(seconds=timeout_s),
            device_id=resolved if resolved.type == "cuda" else None,
        )
        owns = True
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=resolved,
        backend=dist.get_backend(),
        owns_group=owns,
    )


def all_reduce_sum(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum ``values`` over all processes (returned as a new tensor; a copy when single-process)."""
    values = values.clone()
    if context.distributed:
        # NCCL reduces on the GPU; gloo on the CPU.
        device = context.device if context.backend == "nccl" else torch.device("cpu")
        moved = values.to(device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        values = moved.to(values.device)
    return values
