"""A deep snapshot of an AnnData, to assert that a function that raised left it unchanged."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData


def _freeze(value):
    """A comparable deep copy: arrays, sparse matrices, frames and nested mappings."""
    if isinstance(value, AnnData):
        return snapshot(value)
    if isinstance(value, Mapping):
        return {"__mapping__": {str(k): _freeze(v) for k, v in value.items()}}
    if sp.issparse(value):
        csr = sp.csr_matrix(value)
        return ("sparse", csr.shape, str(csr.dtype), csr.indptr.copy(), csr.indices.copy(), csr.data.copy())
    if isinstance(value, pd.DataFrame):
        return ("frame", value.copy(deep=True))
    if isinstance(value, pd.Series | pd.Index):
        return ("series", value.copy(deep=True))
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.copy())
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # backed dataset
        return ("array", np.dtype(value.dtype).str, np.asarray(value[()]).copy())
    return ("value", copy.deepcopy(value))


def snapshot(adata: AnnData) -> dict:
    """Everything an AnnData holds: X, layers, obs, var, obsm, varm, obsp, varp, uns (recursively), raw."""
    x = adata.X
    if adata.isbacked:
        x = adata.X[:]  # read the backed matrix
    state = {
        "shape": adata.shape,
        "X": _freeze(x) if x is not None else None,
        "obs": ("frame", adata.obs.copy(deep=True)),
        "var": ("frame", adata.var.copy(deep=True)),
        "obs_names": list(adata.obs_names),
        "var_names": list(adata.var_names),
    }
    for slot in ("layers", "obsm", "varm", "obsp", "varp", "uns"):
        state[slot] = _freeze(dict(getattr(adata, slot)))
    if adata.raw is not None:
        state["raw"] = {"X": _freeze(adata.raw.X), "var": ("frame", adata.raw.var.copy(deep=True))}
    else:
        state["raw"] = None
    return state


def _equal(a, b, where: str) -> list[str]:
    if type(a) is not type(b):
        return [f"{where}: type {type(a).__name__} != {type(b).__name__}"]
    if isinstance(a, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [problem for key in a for problem in _equal(a[key], b[key], f"{where}.{key}")]
    if isinstance(a, tuple) and a and a[0] == "frame":
        try:
            pd.testing.assert_frame_equal(a[1], b[1], check_exact=True)
        except AssertionError as error:
            return [f"{where}: {str(error).splitlines()[0]}"]
        return []
    if isinstance(a, tuple) and a and a[0] == "series":
        return [] if a[1].equals(b[1]) and a[1].dtype == b[1].dtype else [f"{where}: differs"]
    if isinstance(a, tuple) and a and a[0] in ("array", "sparse"):
        if len(a) != len(b) or a[:-1][:2] != b[:-1][:2]:
            if a[0] == "array" and a[1] != b[1]:
                return [f"{where}: dtype {a[1]} != {b[1]}"]
        for x, y in zip(a[1:], b[1:], strict=True):
            if isinstance(x, np.ndarray):
                if x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
                    return [f"{where}: values differ"]
            elif x != y:
                return [f"{where}: {x} != {y}"]
        return []
    if isinstance(a, tuple) and a and a[0] == "value":
        try:
            same = bool(a[1] == b[1]) if not isinstance(a[1], list | tuple) else a[1] == b[1]
        except Exception:
            same = repr(a[1]) == repr(b[1])
        return [] if same else [f"{where}: {a[1]!r} != {b[1]!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def assert_unchanged(before: dict, adata: AnnData) -> None:
    """Fail naming every slot where ``adata`` differs from ``before`` (a :func:`snapshot`)."""
    problems = _equal(before, snapshot(adata), "adata")
    assert not problems, "the AnnData was changed:\n" + "\n".join(problems[:20])
