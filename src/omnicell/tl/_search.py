"""``oc.tl.build_index`` and ``oc.tl.search``: nearest reference cells of query cells, for references of any size.

The index itself (exact or pynndescent search, the folder format) is :class:`omnicell.data.ReferenceIndex`;
here it meets AnnData: embeddings read from ``obsm`` (in chunks from an h5ad file, without ``X``),
obs columns kept for the results, and the search results written back into the query AnnData.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish
from omnicell._core.checks import check_adata, check_count, check_key_added, resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.provenance import write_record
from omnicell.data import ReferenceIndex, is_index_folder, is_index_tar, is_soma_uri, read_soma
from omnicell.tl._cell_tasks import get_representation

__all__ = ["build_index", "load_index", "search"]  # load_index: for tl (map_query), not exported

INDICES_SUFFIX = "_indices"
DISTANCES_SUFFIX = "_distances"
# Rows of obsm read at a time from an h5ad file: 16 MiB of float32 at 256 dimensions.
DEFAULT_CHUNK_SIZE = 16_384


def build_index(
    adata: AnnData | str | os.PathLike,
    path: str | os.PathLike | None = None,
    *,
    use_rep: str = keys.EMBEDDING,
    obs_keys: str | Sequence[str] | None = None,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    method: Literal["auto", "exact", "pynndescent"] = "auto",
    random_state: int | None = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ReferenceIndex:
    """Index the embedded cells of a reference for :func:`search` (and reference mapping).

    Parameters
    ----------
    adata
        The embedded reference: an AnnData (in memory or backed), the path of an ``.h5ad`` file
        (``obsm[use_rep]`` is read ``chunk_size`` rows at a time; ``X`` is never read), or a
        TileDB-SOMA experiment URI whose ``RNA`` measurement holds ``obsm[use_rep]``. (``omnicell
        embed`` on a SOMA experiment writes its embeddings to an h5ad file: index that file.)
    path
        Folder to save the index to (see :meth:`omnicell.data.ReferenceIndex.save`); None keeps it
        in memory only. An existing folder that is not an index is refused.
    use_rep
        ``obsm`` key of the embeddings.
    obs_keys
        ``obs`` columns to keep with the index (labels and metadata the search results report);
        None keeps all of them (of a SOMA experiment, only ``soma_joinid``: name the columns).
    metric
        ``"euclidean"`` or ``"cosine"``.
    method
        ``"exact"`` (blocked brute force), ``"pynndescent"`` (approximate), or ``"auto"``: exact up
        to 100,000 cells, approximate above.
    random_state
        Seed of the approximate index; None uses ``oc.settings.seed``.
    chunk_size
        Rows of ``obsm`` read at a time from an h5ad file.

    Returns
    -------
    The :class:`omnicell.data.ReferenceIndex` (also saved to ``path`` when given). Nothing is
    written into ``adata``.
    """
    seed = resolve_random_state(random_state, "build_index")
    chunk_size = check_count(chunk_size, "chunk_size")
    check_key_added(use_rep, "use_rep")
    if path is not None:
        _check_index_path(Path(path))
    embeddings, obs, source = _read_reference(adata, use_rep, obs_keys, chunk_size)
    index = ReferenceIndex.build(
        embeddings, obs, metric=metric, method=method, random_state=seed, use_rep=use_rep, source=source
    )
    if path is not None:
        index.save(path)
    return index


def load_index(
    source: ReferenceIndex | AnnData | str | os.PathLike,
    *,
    use_rep: str = keys.EMBEDDING,
    obs_keys: str | Sequence[str] | None = None,
    metric: Literal["euclidean", "cosine"] = "euclidean",
) -> ReferenceIndex:
    """A :class:`omnicell.data.ReferenceIndex` from an index folder, or built from a reference.

    ``source`` is an index (returned as is), a folder written by :func:`build_index` (loaded,
    memory-mapped; ``use_rep``, ``obs_keys`` and ``metric`` are then those it was built with), an
    uncompressed tar of such a folder (as the Galaxy tool writes), or a reference that
    :func:`build_index` accepts (indexed in memory with these options and ``method="auto"``).
    """
    if isinstance(source, ReferenceIndex):
        return source
    if isinstance(source, str | os.PathLike) and not is_soma_uri(source):
        path = Path(source)
        if is_index_folder(path) or is_index_tar(path):
            return ReferenceIndex.load(path)
        if path.is_dir() or path.suffix == ".tar":
            raise ValueError(
                f"{path} is not a reference index (it holds no manifest.json); build one with oc.tl.build_index()."
            )
    return build_index(source, use_rep=use_rep, obs_keys=obs_keys, metric=metric)


@doc_params
def search(
    adata: AnnData,
    index: ReferenceIndex | str | os.PathLike,
    *,
    k: int = 10,
    use_rep: str = keys.EMBEDDING,
    key_added: str = keys.SEARCH,
    obs_keys: str | Sequence[str] | None = None,
    batch_size: int | None = None,
    copy: bool = False,
) -> pd.DataFrame | AnnData:
    """The ``k`` nearest reference cells of each cell, with their metadata (as SCimilarity's cell search).

    Unlike most tools, ``search`` returns a table when ``copy=False`` (the hits are what one looks at),
    and writes the hits into ``adata`` as well, so that they travel with it.

    Parameters
    ----------
    {doc_adata}
    index
        The reference index: a folder (or .tar) written by :func:`build_index`, the index it
        returned, or an embedded reference (in memory, or an .h5ad file) to index now.
    k
        Reference cells per query cell (at most the reference's size).
    use_rep
        ``obsm`` key of the query embeddings; they must come from the same model (and projection)
        as the reference's.
    key_added
        Prefix of the ``obsm`` keys and key of the record.
    obs_keys
        Reference ``obs`` columns to put in the table; None: all that the index stores.
    batch_size
        Query cells searched at a time (bounds memory; the result does not depend on it); None: 1024.
    {doc_copy}

    Returns
    -------
    With ``copy=False``, a :class:`pandas.DataFrame` with one row per query cell and rank: ``query``
    (query cell name), ``rank`` (0 = nearest), ``reference`` (reference cell name),
    ``reference_row``, ``distance`` and the ``obs_keys`` columns. With ``copy=True``, a copy of
    ``adata`` holding the slots below (the table is then :func:`omnicell.get.search_results`).
    Writes

    ``adata.obsm[key_added + '_indices']``
        (n_obs, k) int64 rows of the nearest reference cells in the index, nearest first.
    ``adata.obsm[key_added + '_distances']``
        (n_obs, k) float32 distances to them (the index's metric), ascending.
    ``adata.uns['omnicell']['search']``
        ``k``, ``use_rep``, ``key_added``, the index's ``metric``, ``method``, ``n_cells`` and
        ``sha256`` (the reference hash), and its ``source``.
    """
    adata = check_adata(adata, "search")
    k = check_count(k, "k")
    check_key_added(key_added)
    if batch_size is not None:
        batch_size = check_count(batch_size, "batch_size")
    index = load_index(index, use_rep=use_rep)
    queries = get_representation(adata, use_rep, "search")
    if queries.shape[1] != index.dim:
        raise ValueError(
            f"search: adata.obsm[{use_rep!r}] has {queries.shape[1]} dimensions but the reference index has "
            f"{index.dim}; embed query and reference with the same model and projection."
        )
    if k > index.n_cells:
        raise ValueError(
            f"search: k={k} is more than the reference's {index.n_cells} cells; choose k <= {index.n_cells}."
        )
    obs_keys = index.check_obs_keys(obs_keys)
    if index.use_rep is not None and index.use_rep != use_rep:
        warnings.warn(
            f"search: the reference index was built from obsm[{index.use_rep!r}], the query is obsm[{use_rep!r}].",
            UserWarning,
            stacklevel=2,
        )
    options = {} if batch_size is None else {"batch_size": batch_size}
    indices, distances = index.query(queries, k, **options)
    table = None if copy else index.table(indices, distances, adata.obs_names, obs_keys=obs_keys)
    if copy:
        _, adata = copy_target(None, adata, "")
    adata.obsm[key_added + INDICES_SUFFIX] = indices
    adata.obsm[key_added + DISTANCES_SUFFIX] = distances
    write_record(
        adata,
        "search",
        {
            "k": k,
            "use_rep": use_rep,
            "key_added": key_added,
            "metric": index.metric,
            "method": index.method,
            "n_cells": index.n_cells,
            "sha256": index.sha256,
            "source": index.source,
        },
    )
    return finish(None, adata, copy=True) if copy else table


def _check_index_path(path: Path) -> None:
    if path.suffix == ".tar":
        if path.exists() and not is_index_tar(path):
            raise FileExistsError(f"{path} exists and is not a reference index; choose another path for the index.")
        return
    if path.exists() and not (path.is_dir() and (is_index_folder(path) or not any(path.iterdir()))):
        raise FileExistsError(
            f"{path} exists and is not a reference index folder; choose a new (or empty) folder for the index."
        )


def _read_reference(reference, use_rep: str, obs_keys, chunk_size: int) -> tuple[np.ndarray, pd.DataFrame, str | None]:
    """``(embeddings, obs columns, source)`` of the reference, checked (missing key, NaN rows, empty)."""
    if isinstance(reference, AnnData):
        if reference.n_obs == 0:
            raise ValueError("build_index: the reference has no cells.")
        source = str(reference.filename) if reference.isbacked else None
        embeddings = get_representation(reference, use_rep, "build_index")
        return embeddings, _obs_columns(reference.obs, obs_keys), source
    if not isinstance(reference, str | os.PathLike):
        raise TypeError(
            "build_index: the reference must be an AnnData, an .h5ad path or a SOMA URI, "
            f"got {type(reference).__name__}."
        )
    if is_soma_uri(reference):
        columns = () if obs_keys is None else ([obs_keys] if isinstance(obs_keys, str) else list(obs_keys))
        cells = read_soma(os.fspath(reference), obs_columns=columns, obsm_keys=[use_rep])
        obs = cells.obs if obs_keys is not None else cells.obs[["soma_joinid"]]
        return get_representation(cells, use_rep, "build_index"), obs, os.fspath(reference)
    path = Path(reference)
    if not path.is_file():
        raise FileNotFoundError(f"build_index: no reference file at {path}.")
    return _read_h5ad_embeddings(path, use_rep, obs_keys, chunk_size), _read_h5ad_obs(path, obs_keys), str(path)


def _obs_columns(obs: pd.DataFrame, obs_keys) -> pd.DataFrame:
    if obs_keys is None:
        return obs
    obs_keys = [obs_keys] if isinstance(obs_keys, str) else list(obs_keys)
    missing = [c for c in obs_keys if c not in obs.columns]
    if missing:
        raise KeyError(f"build_index: obs_keys {missing} are not obs columns; available: {list(obs.columns)}.")
    return obs[obs_keys]


def _read_h5ad_embeddings(path: Path, use_rep: str, obs_keys, chunk_size: int) -> np.ndarray:
    """``obsm[use_rep]`` of an h5ad file as float32, ``chunk_size`` rows at a time, NaN rows refused."""
    import h5py

    with h5py.File(path, "r") as handle:
        obsm = handle.get("obsm")
        if obsm is None or use_rep not in obsm:
            available = list(obsm.keys()) if obsm is not None else []
            raise KeyError(
                f"build_index: {path} has no obsm[{use_rep!r}] (obsm keys: {available or 'none'}). Embed it first "
                "(omnicell embed, or oc.tl.embed_cells) or pass use_rep= another key."
            )
        stored = obsm[use_rep]
        if not isinstance(stored, h5py.Dataset) or stored.ndim != 2:
            raise ValueError(f"build_index: obsm[{use_rep!r}] of {path} is not a dense (cells x dimensions) array.")
        n_cells, dim = stored.shape
        if n_cells == 0 or dim == 0:
            raise ValueError(
                f"build_index: the reference {path} is empty (obsm[{use_rep!r}] has shape {stored.shape})."
            )
        out = np.empty((n_cells, dim), dtype=np.float32)
        n_bad = 0
        for start in range(0, n_cells, chunk_size):
            block = stored[start : start + chunk_size]
            out[start : start + len(block)] = block
            n_bad += int((~np.isfinite(out[start : start + len(block)]).all(axis=1)).sum())
    if n_bad:
        raise ValueError(
            f"build_index: obsm[{use_rep!r}] of {path} has NaN or infinite values in {n_bad} of {n_cells} cells; "
            "subset the reference to the cells that have an embedding (or embed them again) before indexing."
        )
    return out


def _read_h5ad_obs(path: Path, obs_keys) -> pd.DataFrame:
    """The obs index and the ``obs_keys`` columns (None: all) of an h5ad file, nothing else."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        group = handle["obs"]
        if not isinstance(group, h5py.Group):  # h5ad written before anndata 0.8: obs as one table
            from anndata import read_h5ad

            return _obs_columns(read_h5ad(path, backed="r").obs, obs_keys)
        index_key = group.attrs.get("_index", "_index")
        names = pd.Index(np.asarray(read_elem(group[index_key])).astype(str))
        available = [c for c in group.attrs.get("column-order", []) if c != index_key]
        wanted = available if obs_keys is None else ([obs_keys] if isinstance(obs_keys, str) else list(obs_keys))
        missing = [c for c in wanted if c not in available]
        if missing:
            raise KeyError(f"build_index: obs_keys {missing} are not obs columns of {path}; available: {available}.")
        return pd.DataFrame({c: read_elem(group[c]) for c in wanted}, index=names)
