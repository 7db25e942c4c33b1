"""The paper's cell-type classifier on embeddings: the network, its training and its probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from omnicell._core.progress import progress

__all__ = ["DEFAULT_HIDDEN", "MLPClassifier", "check_training", "fit_classifier", "predict_proba"]

DEFAULT_HIDDEN = (512, 256)


class MLPClassifier(torch.nn.Module):
    """The paper's cell-type classifier: three linear layers, layer norm and ReLU after the first two."""

    def __init__(self, n_inputs: int, n_classes: int, hidden_sizes: Sequence[int] = DEFAULT_HIDDEN) -> None:
        super().__init__()
        if len(hidden_sizes) != 2 or min(hidden_sizes) < 1:
            raise ValueError(f"hidden_sizes must be two positive layer widths, got {tuple(hidden_sizes)!r}.")
        first, second = (int(h) for h in hidden_sizes)
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(n_inputs, first), torch.nn.LayerNorm(first), torch.nn.ReLU(),
            torch.nn.Linear(first, second), torch.nn.LayerNorm(second), torch.nn.ReLU(),
            torch.nn.Linear(second, n_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def fit_classifier(
    features: np.ndarray,
    targets: np.ndarray,
    n_classes: int,
    *,
    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN,
    epochs: int = 20,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | None = None,
    description: str = "annotate",
) -> tuple[MLPClassifier, float]:
    """Train :class:`MLPClassifier` with AdamW and cross-entropy; returns it and the last epoch's mean loss.

    Initialisation and shuffling draw from generators seeded with ``seed`` (the global torch
    random state is left as it was), so a seed gives the same classifier on the same device.
    """
    device = device if device is not None else torch.device("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = MLPClassifier(features.shape[1], n_classes, hidden_sizes)
    network.to(device).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=weight_decay)
    x = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32), device=device)
    y = torch.as_tensor(np.asarray(targets, dtype=np.int64), device=device)
    generator = torch.Generator().manual_seed(seed)
    loss_value = float("nan")
    for _ in progress(range(epochs), desc=description, unit="epochs"):
        order = torch.randperm(len(x), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(x), batch_size):
            rows = order[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(network(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        loss_value = total / len(x)
    return network.eval(), loss_value


def predict_proba(network: MLPClassifier, features: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
    """(n, n_classes) float32 class probabilities."""
    device = next(network.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            x = torch.as_tensor(
                np.ascontiguousarray(features[start : start + batch_size], dtype=np.float32), device=device
            )
            out.append(torch.softmax(network(x), dim=1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, network.layers[-1].out_features), dtype=np.float32)


def check_training(epochs: int, lr: float, batch_size: int, hidden_sizes: Sequence[int]) -> None:
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    if float(lr) <= 0:
        raise ValueError(f"lr must be positive, got {lr}.")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if len(hidden_sizes) != 2 or min(int(h) for h in hidden_sizes) < 1:
        raise ValueError(f"hidden_sizes must be two positive layer widths, got {tuple(hidden_sizes)!r}.")
