"""Reading and writing network weights: the official ``backbone.pth`` and safetensors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

__all__ = ["file_sha256", "load_state_dict", "read_official", "read_safetensors", "write_safetensors"]


def file_sha256(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_official(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official ``backbone.pth`` (a plain state_dict) safely with ``weights_only=True``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or pickled files
        raise ValueError(
            f"Could not read {path} as a PyTorch state_dict with weights_only=True ({error}). "
            "Official OmniCell checkpoints are plain state_dicts; re-download the file if it is truncated."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a plain state_dict of tensors.")
    if state and all(key.startswith("module.") for key in state):
        # written from a DistributedDataParallel wrapper
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors weight file onto the CPU."""
    from safetensors.torch import load_file

    return load_file(str(path), device="cpu")


def write_safetensors(network: nn.Module, path: str | Path, *, metadata: dict[str, str] | None = None) -> None:
    """Write the persistent weights of ``network`` as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save_file

    state = {key: value.detach().to("cpu").contiguous() for key, value in network.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def load_state_dict(network: nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Copy ``state`` into ``network``, failing on any missing, unexpected or mis-shaped tensor.

    The official loader silently skips mismatches, which yields a model that runs but is wrong;
    here every difference is named.
    """
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{key} {tuple(state[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in set(expected) & set(state)
        if state[key].shape != expected[key].shape
    )
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if names:
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ValueError(
            f"The weights in {source} do not match the model configuration ({'; '.join(problems)}). "
            "Check that the config file belongs to these weights."
        )
    with torch.no_grad():
        for key, tensor in expected.items():
            tensor.copy_(state[key].to(tensor.dtype))
