"""Training checkpoints: a model folder in omnicell's format plus the state needed to resume.

A checkpoint folder ``OUTPUT/checkpoints/step-00001000/`` holds

- ``config.json``, ``model.safetensors``, ``vocab.json``, ``MODEL_CARD.md``: written by
  :meth:`omnicell.models.OmniCellModel.save`, so ``oc.models.load(folder)`` works on any checkpoint;
- ``training_state.pt``: optimiser and scheduler state, the step, the data position, the random
  number generator states and the recipe, readable with ``torch.load(weights_only=True)``.

``OUTPUT/checkpoints/latest`` names the newest complete checkpoint; a checkpoint is written into a
temporary folder and renamed, so an interrupted save never leaves a half checkpoint behind.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "TRAINING_STATE",
    "find_latest",
    "get_rng_state",
    "load_training_state",
    "save_checkpoint",
    "set_rng_state",
    "weights_sha256",
]

TRAINING_STATE = "training_state.pt"
LATEST = "latest"


def weights_sha256(network: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a network's state (in key order)."""
    digest = hashlib.sha256()
    for key, tensor in network.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def get_rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's (legacy global) and PyTorch's generators, as tensors and ints."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: str | os.PathLike, model, state: dict[str, Any], *, card: str = "") -> Path:
    """Write ``model`` (an :class:`~omnicell.models.OmniCellModel`) and the training ``state`` atomically.

    Returns the checkpoint folder. ``folder/../latest`` is updated to point at it.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    model.save(staging, card=card)
    torch.save(state, staging / TRAINING_STATE)
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    pointer = folder.parent / f".{LATEST}.partial"
    pointer.write_text(folder.name + "\n", encoding="utf-8")
    os.replace(pointer, folder.parent / LATEST)
    return folder


def load_training_state(folder: str | os.PathLike) -> dict[str, Any]:
    """The training state of a checkpoint folder (safe load: tensors and plain containers only)."""
    path = Path(folder) / TRAINING_STATE
    if not path.exists():
        raise FileNotFoundError(
            f"{folder} is not a training checkpoint (no {TRAINING_STATE}); it may be a plain model folder, "
            "which can be fine-tuned or used as model.init in a recipe but not resumed."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def find_latest(checkpoints: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``checkpoints`` (the ``latest`` pointer), or None."""
    checkpoints = Path(checkpoints)
    pointer = checkpoints / LATEST
    if pointer.exists():
        candidate = checkpoints / pointer.read_text(encoding="utf-8").strip()
        if (candidate / TRAINING_STATE).exists():
            return candidate
    found = sorted(p for p in checkpoints.glob("step-*") if (p / TRAINING_STATE).exists())
    return found[-1] if found else None


def prune_checkpoints(checkpoints: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest ``step-*`` checkpoints (0 keeps all)."""
    if keep <= 0:
        return
    found = sorted(p for p in Path(checkpoints).glob("step-*") if p.is_dir())
    for old in found[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
