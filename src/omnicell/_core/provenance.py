"""Provenance records in ``uns['omnicell']``, kept h5ad-writable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from anndata import AnnData

from omnicell._core import keys
from omnicell._version import __version__

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


BY_KEY = "by_key"
"""``uns['omnicell']['by_key'][function][key_added]``: the record of each result key, so that two runs
with different ``key_added`` both keep their provenance (``uns['omnicell'][function]`` is the latest)."""


def write_record(adata: AnnData, function: str, record: Mapping[str, Any]) -> None:
    """Store ``record`` (None values dropped) as ``adata.uns['omnicell'][function]``.

    A record with a ``key_added`` is also kept per key, in ``uns['omnicell']['by_key'][function][key_added]``.
    """
    store = adata.uns.setdefault(keys.UNS, {})
    written = _writable({**record, "omnicell_version": __version__})
    store[function] = written
    key = record.get("key_added")
    if key is not None:
        by_function = store.setdefault(BY_KEY, {}).setdefault(function, {})
        by_function[str(key)] = dict(written)


def get_record(adata: AnnData, function: str, key: str | None = None) -> dict[str, Any] | None:
    """The record a previous call of ``function`` left, or None; with ``key``, the run that wrote ``key``."""
    store = adata.uns.get(keys.UNS, {})
    if key is None:
        return store.get(function)
    by_key = store.get(BY_KEY, {}).get(function, {})
    if str(key) in by_key:
        return by_key[str(key)]
    latest = store.get(function)  # records written before per-key provenance
    return latest if latest is not None and str(latest.get("key_added")) == str(key) else None
