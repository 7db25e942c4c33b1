"""Provenance records in ``uns['omnicell']``, kept h5ad-writable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from anndata import AnnData

from . import _keys
from ._version import __version__

__all__ = ["get_record", "obs_names_fingerprint", "write_record"]


def _writable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _writable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def obs_names_fingerprint(names) -> str:
    """SHA-256 of the cell names in order: ties stored per-cell indices (spatial neighbours) to their cells.

    Reordering, subsetting or concatenating cells changes it.
    """
    import hashlib

    return hashlib.sha256("\0".join(map(str, names)).encode("utf-8")).hexdigest()


def write_record(adata: AnnData, function: str, record: Mapping[str, Any]) -> None:
    """Store ``record`` (None values dropped) as ``adata.uns['omnicell'][function]``."""
    store = adata.uns.setdefault(_keys.UNS, {})
    store[function] = _writable({**record, "omnicell_version": __version__})


def get_record(adata: AnnData, function: str) -> dict[str, Any] | None:
    """The record a previous call of ``function`` left, or None."""
    return adata.uns.get(_keys.UNS, {}).get(function)
