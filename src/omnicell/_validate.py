"""Input checks shared by the public functions. Each raises before anything is written."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from .data import check_values, read_csr

__all__ = [
    "check_adata",
    "check_coordinates",
    "check_libraries",
    "check_matrix_values",
    "check_unique_var_names",
    "describe_var_names",
    "expression_source",
    "get_matrix",
    "resolve_modality",
    "update_mudata",
]

_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")


def check_adata(adata: object, function: str) -> AnnData:
    """Ensure ``adata`` is an AnnData object."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"{function} expects an AnnData object, got {type(adata).__name__}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"{function} got an empty AnnData ({adata.n_obs} cells x {adata.n_vars} genes).")
    return adata


def get_matrix(adata: AnnData, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, with a clear error when absent."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer= naming the layer with expression values.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found; available layers: {list(adata.layers) or 'none'}.")
    return adata.layers[layer]


def resolve_modality(data: object, mod: str, function: str) -> tuple[MuData | None, AnnData]:
    """``(MuData or None, the AnnData to work on)`` for an AnnData or a MuData's modality ``mod``."""
    container = None
    if type(data).__name__ == "MuData":
        if mod not in data.mod:
            raise KeyError(f"{function}: the MuData has no modality {mod!r}; modalities: {list(data.mod)}. Pass mod=.")
        container, data = data, data.mod[mod]
    return container, check_adata(data, function)


def update_mudata(container: MuData | None) -> None:
    """``mdata.update()`` after a modality changed, without mudata's notice about its future default."""
    if container is None:
        return
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="mudata")
        container.update()


def expression_source(adata: AnnData, *, layer: str | None, use_raw: bool) -> tuple[object, pd.DataFrame, str]:
    """The matrix to read, its var table and how to name it in messages."""
    if use_raw:
        if adata.raw is None:
            raise ValueError("use_raw=True but adata.raw is empty; use layer= or .X instead.")
        if layer is not None:
            raise ValueError("Pass either use_raw=True or layer=, not both.")
        return adata.raw.X, adata.raw.var, "adata.raw.X"
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    return get_matrix(adata, layer), adata.var, where


def check_unique_var_names(names: pd.Index, label: str = "adata.var_names") -> None:
    """Duplicate gene names make token assignment ambiguous: refuse them."""
    duplicated = names[names.duplicated()]
    if len(duplicated):
        examples = ", ".join(map(str, pd.unique(duplicated)[:5]))
        raise ValueError(
            f"{label} has {len(duplicated)} duplicate names (e.g. {examples}). Make them unique "
            "(adata.var_names_make_unique()) or sum the duplicated genes, then try again."
        )


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
    """(n_obs, 2) finite float coordinates from ``obsm[spatial_key]``."""
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"Spatial mode needs coordinates in adata.obsm[{spatial_key!r}] (squidpy's convention), "
            f"found obsm keys: {list(adata.obsm) or 'none'}. Store them as an (n_obs, 2) array or pass spatial_key=."
        )
    coordinates = np.asarray(adata.obsm[spatial_key], dtype=np.float64)
    if coordinates.ndim != 2 or coordinates.shape[1] < 2:
        raise ValueError(f"adata.obsm[{spatial_key!r}] must have shape (n_obs, 2), got {coordinates.shape}.")
    coordinates = coordinates[:, :2]
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


def check_matrix_values(matrix, columns: np.ndarray, *, where: str, chunk_rows: int = 2048) -> None:
    """Refuse negative or non-finite values in the given columns, reading the matrix in row chunks."""
    if sp.issparse(matrix):
        check_values(matrix[:, columns].data, where=where)
        return
    for start in range(0, matrix.shape[0], chunk_rows):
        rows = np.arange(start, min(start + chunk_rows, matrix.shape[0]))
        check_values(read_csr(matrix, rows, columns), where=where)
