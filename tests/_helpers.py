"""Helpers shared by test modules."""

from __future__ import annotations

import numpy as np


def align_signs(actual: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Flip columns (last axis) of ``actual`` to the sign of ``reference``: eigenvectors have no sign."""
    flat_actual = actual.reshape(-1, actual.shape[-1])
    flat_reference = reference.reshape(-1, reference.shape[-1])
    signs = np.sign((flat_actual * flat_reference).sum(0))
    signs[signs == 0] = 1
    return actual * signs
