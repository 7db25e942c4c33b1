"""Spectral projection of cell states onto the leading eigenvectors of the output matrix."""

from __future__ import annotations

import torch

__all__ = ["spectral_basis"]


def spectral_basis(w: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal basis (d, m) of ``W_sym = (W + W^T) / 2`` that holds a share ``tau`` of its spectrum.

    Eigenvectors are sorted by descending ``|eigenvalue|`` and kept until the cumulative share of
    ``|eigenvalue|`` reaches ``tau``, that one included (the released code's rule). Each
    eigenvector's sign is fixed so that its largest-magnitude entry is positive, which makes the
    basis reproducible across machines and LAPACK builds.

    Returns the basis and all eigenvalues in the sorted order.
    """
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"projection must lie in (0, 1] (the share of spectral energy kept), got {tau!r}.")
    w64 = w.detach().double().cpu()
    eigenvalues, eigenvectors = torch.linalg.eigh((w64 + w64.T) / 2)
    order = torch.argsort(eigenvalues.abs(), descending=True, stable=True)
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    share = torch.cumsum(eigenvalues.abs(), 0) / eigenvalues.abs().sum()
    n_components = min(int((share < tau).sum()) + 1, len(eigenvalues))
    basis = eigenvectors[:, :n_components]
    pivot = basis.abs().argmax(0)
    signs = torch.sign(basis[pivot, torch.arange(n_components)])
    return (basis * signs).to(w.dtype), eigenvalues.to(w.dtype)
