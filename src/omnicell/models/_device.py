"""Device choice: ``"auto"`` and None (from ``oc.settings.device``) turned into a concrete torch device."""

from __future__ import annotations

import torch

from omnicell._core.settings import settings

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn ``"auto"``/None (from settings) into a concrete torch device."""
    device = device if device is not None else settings.device
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a device PyTorch knows; use 'cpu', 'cuda', 'cuda:1' or 'auto'."
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={device!r} was asked for but PyTorch sees no CUDA GPU; use device='cpu' or 'auto'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device={device!r}: PyTorch sees {torch.cuda.device_count()} CUDA GPU(s) (cuda:0 ...); "
                "pick one of them."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device={device!r} was asked for but MPS is not available; use device='cpu' or 'auto'.")
    return resolved
