"""Model configuration with the field names of the official ``LMConfig.json``."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any

__all__ = ["OmniCellConfig"]


@dataclasses.dataclass
class OmniCellConfig:
    """Hyper-parameters of an OmniCell network.

    Field names are those of the official ``LMConfig.json`` so that the released file loads as is.
    The defaults are the released ``omnicell-v1`` configuration.

    Parameters
    ----------
    num_gene
        Size of the token vocabulary (genes plus the four special tokens).
    d_model
        Width of the token states.
    heads
        Number of attention heads; ``d_model`` must be divisible by it.
    num_layers
        Number of transformer blocks.
    hidden_dim
        Width of the SwiGLU feed-forward layer. ``None`` derives it from ``d_model`` and
        ``multiple_of`` as LLaMA does (two thirds of ``4 * d_model``, rounded up).
    num_shared
        Number of shared value experts (always active).
    num_routing
        Number of routed value experts.
    topk
        Number of routed experts active per token.
    token_per_cell
        Number of gene tokens per cell used in pretraining (informational).
    dim
        Number of rotary channels per head; must equal the head width (``d_model // heads``).
    base
        Rotary frequency base.
    eps
        RMSNorm epsilon.
    dropout
        Dropout on the residual branches during training.
    rotary
        Whether the 2D rotary position encoding is applied.
    use_flash
        Kept for round-tripping the official file; the attention backend is chosen at run time.
    multiple_of
        Rounding of ``hidden_dim`` when it is derived.
    """

    num_gene: int = 60607
    d_model: int = 512
    heads: int = 8
    num_layers: int = 10
    hidden_dim: int | None = 2048
    num_shared: int = 5
    num_routing: int = 10
    topk: int = 5
    token_per_cell: int = 2000
    dim: int = 64
    base: float = 10000.0
    eps: float = 1e-6
    dropout: float = 0.15
    rotary: bool = True
    use_flash: bool = True
    multiple_of: int = 512

    def __post_init__(self) -> None:
        self.rotary = bool(self.rotary)
        self.use_flash = bool(self.use_flash)
        if self.hidden_dim is None:
            hidden = int(2 * (4 * self.d_model) / 3)
            self.hidden_dim = self.multiple_of * math.ceil(hidden / self.multiple_of)
        problems = []
        for name in ("num_gene", "d_model", "heads", "num_layers", "hidden_dim", "num_shared", "num_routing"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.d_model % self.heads:
            problems.append(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        elif self.rotary and self.dim != self.head_dim:
            problems.append(
                f"dim ({self.dim}) must equal the head width d_model / heads ({self.head_dim}): "
                "the released model rotates every channel of a head"
            )
        if self.rotary and self.dim % 4:
            problems.append(f"dim ({self.dim}) must be a multiple of 4 for 2D rotary encoding")
        if not 1 <= self.topk <= self.num_routing:
            problems.append(f"topk ({self.topk}) must lie in 1..num_routing ({self.num_routing})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout ({self.dropout}) must lie in [0, 1)")
        if problems:
            raise ValueError("Invalid OmniCell configuration: " + "; ".join(problems) + ".")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.heads

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-serialisable dict with the official field names."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> OmniCellConfig:
        """Build a configuration from a dict; unknown fields are ignored with a warning."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            warnings.warn(f"Ignoring unknown OmniCell config fields: {', '.join(unknown)}", stacklevel=2)
        return cls(**{key: value for key, value in values.items() if key in known})

    @classmethod
    def from_json(cls, path: str | Path) -> OmniCellConfig:
        """Read a configuration file such as the official ``LMConfig.json``."""
        with open(path, encoding="utf-8") as handle:
            try:
                values = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON: {error}") from None
        return cls.from_dict(values)

    def to_json(self, path: str | Path) -> None:
        """Write the configuration with the official field names."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2)
            handle.write("\n")
