"""Masking of soft-rank values for the pretraining objective.

How a masked position is shown to the model
-------------------------------------------
The paper masks values but does not say what the model sees in their place. Here the gene token
stays (the head must know *which* gene to predict, and the gene identity is the routing input of
the value experts) and its value is replaced by ``mask_value``, by default ``-1``:

* ``0`` is not an option: it means "not expressed", a real and frequent input (the zero genes of
  every sequence). Masking to 0 would make a masked expressed gene look unexpressed and teach the
  model that an observed 0 may be anything, which is exactly what inference must not believe.
* A learned ``[MASK]`` embedding would add a tensor that the released ``state_dict`` (and the
  official loader) does not have, so trained checkpoints would no longer be in the official layout.
* A value outside the soft-rank range ``[0, 5]`` needs no new parameter and is never produced by
  real data. The value embedding is linear in the value (``E[g] + v * d(g)``), so ``-1`` gives
  ``E[g] - d(g)``: one soft-rank unit below "not expressed", on the far side of every real input,
  and the layers that follow are free to treat the negative side as "unknown". It is the same
  convention as the ``-1`` "missing" value of scGPT-style masked value modelling.

``mask_value`` is configurable (:class:`MaskingConfig`) for experiments.

Masking is drawn per gene token, independently, from a :class:`numpy.random.Generator`, so a batch's
mask is a pure function of its seed: the training loop derives that seed from (run seed, stage,
step, micro-batch), which makes runs resumable bit for bit and independent of the number of processes.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from omnicell.data import MASK_VALUE, TokenBatch

__all__ = ["MaskedBatch", "MaskingConfig", "StageKind", "mask_batch"]

StageKind = Literal["spatial", "single_cell"]
STAGE_KINDS = ("spatial", "single_cell")


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """Masking rates by position kind, and the value shown at masked positions.

    Focal cell means the first cell block of a sequence (the only block in single-cell mode);
    neighbours are the other blocks of a spatial window.

    Parameters
    ----------
    nonzero
        Rate for expressed genes (soft rank > 0) of the focal cell.
    zero
        Rate for unexpressed genes of the focal cell.
    neighbor_nonzero
        Rate for expressed genes of neighbour cells.
    neighbor_zero
        Rate for unexpressed genes of neighbour cells.
    mask_value
        Value fed to the model at masked positions (see the module docstring); the target is
        the true soft rank.
    """

    nonzero: float = 0.3
    zero: float = 0.1
    neighbor_nonzero: float = 0.05
    neighbor_zero: float = 0.0
    mask_value: float = MASK_VALUE

    def __post_init__(self) -> None:
        for name in ("nonzero", "zero", "neighbor_nonzero", "neighbor_zero"):
            rate = getattr(self, name)
            if not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"masking rate {name} must lie in [0, 1], got {rate!r}.")
        if not np.isfinite(self.mask_value):
            raise ValueError(f"mask_value must be finite, got {self.mask_value!r}.")

    @classmethod
    def for_stage(cls, kind: StageKind, **overrides: float) -> MaskingConfig:
        """The paper's rates for a stage, with optional overrides.

        ``"spatial"``: expressed genes of the focal cell at 0.3, of neighbours at 0.05, zeros kept.
        ``"single_cell"``: expressed genes at 0.3, unexpressed genes at 0.1.
        """
        if kind == "spatial":
            base = {"nonzero": 0.3, "zero": 0.0, "neighbor_nonzero": 0.05, "neighbor_zero": 0.0}
        elif kind == "single_cell":
            base = {"nonzero": 0.3, "zero": 0.1, "neighbor_nonzero": 0.0, "neighbor_zero": 0.0}
        else:
            raise ValueError(f"stage kind must be one of {', '.join(STAGE_KINDS)}, got {kind!r}.")
        unknown = set(overrides) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown masking options: {', '.join(sorted(unknown))}.")
        return cls(**{**base, **{key: float(value) for key, value in overrides.items()}})


@dataclasses.dataclass
class MaskedBatch:
    """A token batch prepared for the objective.

    Attributes
    ----------
    batch
        The model inputs, with ``values`` replaced by ``mask_value`` at masked positions.
    target
        (B, T) float32 true soft ranks.
    mask
        (B, T) True at masked gene tokens (never at markers or padding).
    """

    batch: TokenBatch
    target: np.ndarray
    mask: np.ndarray

    @property
    def n_masked(self) -> int:
        return int(self.mask.sum())

    @property
    def n_sequences(self) -> int:
        return int(self.target.shape[0])


def mask_batch(batch: TokenBatch, config: MaskingConfig, rng: np.random.Generator) -> MaskedBatch:
    """Draw masked positions for ``batch`` and hide their values.

    Parameters
    ----------
    batch
        Sequences from :func:`omnicell.data.batch_for_cells` (padding allowed: ``cell_index`` is
        -1 on markers and padding, which are never masked).
    config
        Rates and mask value.
    rng
        Source of randomness; the same generator state gives the same mask.

    Returns
    -------
    A :class:`MaskedBatch`; ``batch`` itself is not modified.
    """
    values = np.asarray(batch.values, dtype=np.float32)
    cell_index = np.asarray(batch.cell_index)
    gene = cell_index >= 0
    if batch.padding_mask is not None:
        gene &= np.asarray(batch.padding_mask, dtype=bool)
    focal = gene & (cell_index == 0)
    neighbor = gene & (cell_index > 0)
    expressed = values > 0
    rate = np.zeros(values.shape, dtype=np.float64)
    rate[focal & expressed] = config.nonzero
    rate[focal & ~expressed] = config.zero
    rate[neighbor & expressed] = config.neighbor_nonzero
    rate[neighbor & ~expressed] = config.neighbor_zero
    mask = rng.random(values.shape) < rate
    inputs = np.where(mask, np.float32(config.mask_value), values).astype(np.float32)
    return MaskedBatch(batch=dataclasses.replace(batch, values=inputs), target=values.copy(), mask=mask)
