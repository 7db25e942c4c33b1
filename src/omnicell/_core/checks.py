"""Argument and AnnData checks shared by the public functions. Each raises before anything is written."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

if TYPE_CHECKING:
    pass


__all__ = [
    "check_adata",
    "check_coordinates",
    "check_count",
    "check_dtype",
    "check_key_added",
    "check_libraries",
    "check_number",
    "check_unique_obs_names",
    "check_unique_var_names",
    "describe_var_names",
    "read_graph",
    "resolve_random_state",
]

_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")


def check_adata(adata: object, function: str, *, genes: bool = True) -> AnnData:
    """Ensure ``adata`` is an AnnData object with cells (and genes, unless ``genes=False``: embeddings only)."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"{function} expects an AnnData object, got {type(adata).__name__}.")
    if adata.n_obs == 0 or (genes and adata.n_vars == 0):
        raise ValueError(f"{function} got an empty AnnData ({adata.n_obs} cells x {adata.n_vars} genes).")
    return adata


def check_count(value: object, name: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` as an int >= ``minimum``; a TypeError/ValueError naming ``name`` otherwise (bools refused)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_number(
    value: object,
    name: str,
    *,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    allow_none: bool = False,
) -> float | None:
    """``value`` as a finite float (optionally > 0 or within bounds); an error naming ``name`` otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if positive and value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value!r}.")
    return value


def check_key_added(value: object, name: str = "key_added") -> str:
    """A non-empty string key."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
    return value


def check_dtype(matrix, where: str) -> None:
    """Refuse matrices that do not hold numbers (strings, objects), naming the slot."""
    dtype = getattr(matrix, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind not in "biuf":
        raise TypeError(
            f"{where} holds values of dtype {dtype}, not numbers; store numeric expression values there "
            "(e.g. adata.X = adata.X.astype('float32'))."
        )


def resolve_random_state(random_state: object, function: str) -> int:
    """The seed to use: ``random_state`` (scanpy's name), or ``oc.settings.seed`` when it is None."""
    from omnicell._core.settings import settings

    if random_state is None:
        return int(settings.seed)
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer) or random_state < 0:
        raise TypeError(f"{function}: random_state must be a non-negative integer or None, got {random_state!r}.")
    return int(random_state)


def read_graph(adata: AnnData, neighbors_key: str, *, function: str, kind: str = "kNN") -> sp.csr_matrix:
    """The connectivities named by ``neighbors_key``, in any of the conventions of scanpy and squidpy.

    Tried in order: an ``obsp`` key (``'connectivities'``, ``'spatial_connectivities'``); the ``uns``
    record scanpy and squidpy write (``'neighbors'``, ``'spatial_neighbors'``: its
    ``connectivities_key``); squidpy-style prefixes (``'knn9'`` -> ``obsp['knn9_connectivities']``);
    scanpy's default ``neighbors_key='neighbors'`` -> ``obsp['connectivities']``.
    """
    if not isinstance(neighbors_key, str) or not neighbors_key:
        raise TypeError(f"{function}: neighbors_key must be a non-empty string, got {neighbors_key!r}.")
    record = adata.uns.get(neighbors_key)
    candidates = [neighbors_key]
    if isinstance(record, dict) and "connectivities_key" in record:
        candidates.append(str(record["connectivities_key"]))
    candidates.append(f"{neighbors_key}_connectivities")
    if neighbors_key == "neighbors":
        candidates.append("connectivities")
    for key in candidates:
        if key in adata.obsp:
            graph = sp.csr_matrix(adata.obsp[key])
            if graph.shape != (adata.n_obs, adata.n_obs):
                raise ValueError(
                    f"{function}: adata.obsp[{key!r}] has shape {graph.shape}, not (n_obs, n_obs) = "
                    f"({adata.n_obs}, {adata.n_obs}); rebuild the graph on these cells."
                )
            return graph
    raise KeyError(
        f"{function}: no {kind} graph {neighbors_key!r} (looked for adata.obsp keys {candidates}; obsp keys: "
        f"{list(adata.obsp) or 'none'}). "
        + (
            "Build one with squidpy, e.g. sq.gr.spatial_neighbors_knn(adata, n_neighs=9), then pass "
            "neighbors_key='spatial_connectivities', or leave neighbors_key=None for a k-nearest search."
            if kind == "spatial"
            else "Build one first (sc.pp.neighbors(adata, use_rep=...)), or leave neighbors_key=None to build it here."
        )
    )


def check_unique_var_names(names: pd.Index, label: str = "adata.var_names") -> None:
    """Duplicate gene names make token assignment ambiguous: refuse them."""
    _refuse_duplicates(
        names,
        label,
        ". Make them unique (adata.var_names_make_unique()) or sum the duplicated genes, then try again.",
    )


def check_unique_obs_names(names: pd.Index) -> None:
    """Spatial neighbours refer to cells by position and name: duplicate names are refused."""
    _refuse_duplicates(
        names,
        "adata.obs_names",
        "; spatial neighbours need unique cell names. Run adata.obs_names_make_unique() first (after "
        "concatenating sections, ad.concat(..., index_unique='-') does it).",
    )


def _refuse_duplicates(names: pd.Index, label: str, remedy: str) -> None:
    """ValueError naming how many of ``names`` are duplicated, a few examples, then ``remedy``."""
    duplicated = names[names.duplicated()]
    if len(duplicated):
        examples = ", ".join(map(str, pd.unique(duplicated)[:5]))
        raise ValueError(f"{label} has {len(duplicated)} duplicate names (e.g. {examples}){remedy}")


def describe_var_names(var: pd.DataFrame) -> str:
    """A hint about what the var names look like and where Ensembl ids may be."""
    examples = ", ".join(map(str, var.index[:5]))
    hint = f"var names look like: {examples}."
    for column in var.columns:
        values = var[column]
        if values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype):
            sample = values.astype(str).head(50)
            if sample.str.match(_ENSEMBL).mean() > 0.8:
                hint += (
                    f" Column var[{column!r}] holds Ensembl ids: adata.var_names = adata.var[{column!r}].astype(str)."
                )
                break
    return hint


def check_coordinates(adata: AnnData, spatial_key: str) -> np.ndarray:
    """(n_obs, 2) finite float coordinates from ``obsm[spatial_key]``.

    OmniCell's positions are two-dimensional: a third column (z) is refused rather than dropped,
    since cells at the same (x, y) on different planes would be read as neighbours.
    """
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"Spatial mode needs coordinates in adata.obsm[{spatial_key!r}] (squidpy's convention), "
            f"found obsm keys: {list(adata.obsm) or 'none'}. Store them as an (n_obs, 2) array or pass spatial_key=."
        )
    try:
        coordinates = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"adata.obsm[{spatial_key!r}] must hold numeric (x, y) coordinates, "
            f"got dtype {np.asarray(adata.obsm[spatial_key]).dtype}."
        ) from None
    if coordinates.ndim != 2 or coordinates.shape[1] != 2:
        shape = coordinates.shape
        hint = (
            f" It has {shape[1]} columns: OmniCell reads 2-D positions. For one plane of 3-D data store "
            f"its (x, y) columns under another key, e.g. "
            f"adata.obsm['spatial_xy'] = adata.obsm[{spatial_key!r}][:, :2], "
            "and pass spatial_key='spatial_xy' (with library_key= naming the plane of each cell)."
            if coordinates.ndim == 2 and shape[1] > 2
            else ""
        )
        raise ValueError(f"adata.obsm[{spatial_key!r}] must have shape (n_obs, 2), got {shape}.{hint}")
    if not np.isfinite(coordinates).all():
        raise ValueError(f"adata.obsm[{spatial_key!r}] contains NaN or infinite coordinates; fix or drop those cells.")
    return coordinates


def check_libraries(adata: AnnData, library_key: str | None) -> np.ndarray | None:
    """Section label of each cell from ``obs[library_key]`` (as str), or None without a key."""
    if library_key is None:
        return None
    if library_key not in adata.obs:
        raise KeyError(f"library_key {library_key!r} is not an obs column; available: {list(adata.obs.columns)}.")
    return adata.obs[library_key].astype(str).to_numpy()
