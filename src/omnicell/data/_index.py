"""A nearest-neighbour index over an embedded reference, saved to a folder and memory-mapped on load.

Exact search is blocked brute force in float32: queries are taken ``batch_size`` rows at a time and
the reference :data:`REFERENCE_BLOCK` rows at a time, so memory depends on neither the number of
queries nor the size of the reference. Each block proposes candidates by the fast matrix-product form
of the distance; the final distances of the candidates are recomputed from the differences (float64,
one pair at a time), so they do not depend on how the work was blocked, and ties are broken by the
smaller row number. Above ``exact_max_cells`` cells the default is an approximate index
(pynndescent), whose candidates are re-ranked the same way.

A saved index is a folder::

    manifest.json     format, version, metric, method, n_cells, dim, sha256 of the embeddings, use_rep, source
    embeddings.npy    (n_cells, dim) float32, C order (memory-mapped on load)
    obs.h5ad          the stored obs columns (an AnnData with no X), index = reference cell names
    ann.pkl           the pynndescent index (method "pynndescent" only)

The same files at the top level of an uncompressed tar (``save("index.tar")``) form an index too,
read in place (the embeddings memory-mapped within the tar): one file, for workflow systems that
pass files rather than folders. ``ann.pkl`` is a pickle: load indexes only from sources you trust, as with any pickle.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["INDEX_FORMAT", "ReferenceIndex", "is_index_folder", "is_index_tar"]

INDEX_FORMAT = "omnicell-reference-index"
INDEX_VERSION = 1
MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
OBS = "obs.h5ad"
ANN = "ann.pkl"
METRICS = ("euclidean", "cosine")
METHODS = ("exact", "pynndescent")
# Below this many cells "auto" searches exactly (benchmarks/reference_index.py measures the crossover).
EXACT_MAX_CELLS = 100_000
# Reference rows per block of exact search: with the default query batch the distance block is
# 1024 x 4096 float32 (16 MiB, and 32 MiB of argpartition indices), whatever the size of the reference.
REFERENCE_BLOCK = 4096
DEFAULT_BATCH_SIZE = 1024
# Extra candidates kept per query before the exact re-ranking: rounding in the float32 matrix-product
# distances (about 1e-7 of the squared norms) can then push a true neighbour out at the k-th place only
# when more than 8 other reference cells lie within that rounding of it.
CANDIDATE_MARGIN = 8
# Search effort of pynndescent queries (its default is 0.1). On 10^6 clustered cells (100 clusters, 64
# dimensions) recall@10 of the 18 candidates was 0.92 at 0.1, 0.97 at 0.15, 0.99 at 0.2 and 0.999 at 0.3,
# the speed falling by a third per step (benchmarks/reference_index.py).
ANN_EPSILON = 0.2
HASH_CHUNK_BYTES = 64 << 20
# Bound of the float64 candidate rows gathered at a time by the exact re-ranking.
RERANK_BYTES = 32 << 20


def is_index_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a saved :class:`ReferenceIndex` (it has a manifest)."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


class ReferenceIndex:
    """Nearest reference cells of query embeddings, by exact or approximate (pynndescent) search.

    Make one with :meth:`build` (from an array) or :meth:`load` (from a folder written by :meth:`save`);
    :func:`omnicell.tl.build_index` builds one from an AnnData, an h5ad or a SOMA experiment.

    Attributes
    ----------
    n_cells, dim
        Reference cells and embedding width.
    metric
        ``"euclidean"`` or ``"cosine"`` (``1 - cosine similarity``).
    method
        ``"exact"`` or ``"pynndescent"``: the search that was built.
    obs
        The stored obs columns; index = the reference cell names, one row per reference cell.
    embeddings
        ``(n_cells, dim)`` float32; a read-only :class:`numpy.memmap` when loaded with ``mmap=True``.
    use_rep, source
        Where the embeddings came from (recorded in the manifest; ``None`` when unknown).
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        obs: pd.DataFrame,
        *,
        metric: str,
        method: str,
        sha256: str,
        ann=None,
        use_rep: str | None = None,
        source: str | None = None,
    ):
        self.embeddings = embeddings
        self.obs = obs
        self.metric = metric
        self.method = method
        self.use_rep = use_rep
        self.source = source
        self._sha256 = sha256
        self._ann = ann
        self._sq_norms = _row_sq_norms(embeddings)
        if metric == "cosine" and np.any(self._sq_norms == 0):
            raise ValueError("The cosine metric needs non-zero embeddings; some reference rows are all zero.")

    @property
    def n_cells(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def sha256(self) -> str:
        """SHA-256 of the embeddings (float32, C order): the reference hash mapping records cite."""
        return self._sha256

    def __repr__(self) -> str:
        return f"ReferenceIndex(n_cells={self.n_cells}, dim={self.dim}, metric={self.metric!r}, method={self.method!r})"

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        obs: pd.DataFrame | None = None,
        *,
        metric: str = "euclidean",
        method: str = "auto",
        random_state: int = 0,
        exact_max_cells: int = EXACT_MAX_CELLS,
        use_rep: str | None = None,
        source: str | None = None,
    ) -> ReferenceIndex:
        """Index ``embeddings`` (one row per reference cell).

        Parameters
        ----------
        embeddings
            ``(n_cells, dim)`` array; stored as float32. Rows must be finite.
        obs
            Columns to keep with the index, one row per cell; its index names the cells (unique).
            ``None``: cells named ``"0" ... "n-1"``, no columns.
        metric
            ``"euclidean"`` or ``"cosine"``.
        method
            ``"exact"``, ``"pynndescent"``, or ``"auto"``: exact up to ``exact_max_cells`` cells.
        random_state
            Seed of the approximate index (the same seed builds the same index).
        exact_max_cells
            Threshold of ``method="auto"``.
        use_rep, source
            Recorded in the manifest: the obsm key and the file the embeddings were read from.
        """
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
        if method not in (*METHODS, "auto"):
            raise ValueError(f"method must be 'auto' or one of {METHODS}, got {method!r}.")
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must be 2-D (cells x dimensions), got shape {embeddings.shape}.")
        n_cells = embeddings.shape[0]
        if n_cells == 0 or embeddings.shape[1] == 0:
            raise ValueError(f"Cannot index an empty reference (embeddings of shape {embeddings.shape}).")
        bad = ~np.isfinite(embeddings).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} of {n_cells} reference rows hold NaN or infinite values; "
                "drop those cells (or embed them again) before indexing."
            )
        obs = _check_obs(obs, n_cells)
        if method == "auto":
            method = "exact" if n_cells <= exact_max_cells else "pynndescent"
        if method == "pynndescent" and n_cells < 3:
            raise ValueError(
                f"An approximate index needs at least 3 reference cells, got {n_cells}; use method='exact'."
            )
        sha = _sha256(embeddings)
        index = cls(embeddings, obs, metric=metric, method=method, sha256=sha, use_rep=use_rep, source=source)
        if method == "pynndescent":
            index._ann = _build_ann(index._unit_rows(embeddings, index._sq_norms), random_state=random_state)
        return index

    def query(self, X: np.ndarray, k: int, *, batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest reference cells of each row of ``X``, nearest first.

        Returns
        -------
        ``(indices, distances)``: ``(n, k)`` int64 row numbers into the reference and ``(n, k)``
        float32 distances (Euclidean, or ``1 - cosine similarity``), ascending, ties by row number.
        The result does not depend on ``batch_size``, which bounds memory (``batch_size`` queries at a time).
        """
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        if k > self.n_cells:
            raise ValueError(f"k={k} is more than the {self.n_cells} reference cells; choose k <= {self.n_cells}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"Query embeddings must have shape (n, {self.dim}) to match the reference; got {X.shape}.")
        n = X.shape[0]
        indices = np.empty((n, k), dtype=np.int64)
        distances = np.empty((n, k), dtype=np.float32)
        for start in range(0, n, int(batch_size)):
            stop = min(start + int(batch_size), n)
            queries = np.ascontiguousarray(X[start:stop], dtype=np.float32)
            bad = ~np.isfinite(queries).all(axis=1)
            if bad.any():
                raise ValueError(
                    f"Query row {start + int(np.flatnonzero(bad)[0])} holds NaN or infinite values; "
                    "drop such cells before searching."
                )
            q_norms = _row_sq_norms(queries)
            if self.metric == "cosine" and np.any(q_norms == 0):
                raise ValueError("The cosine metric needs non-zero query embeddings; some query rows are all zero.")
            queries = self._unit_rows(queries, q_norms)
            if self.metric == "cosine":
                q_norms = np.ones_like(q_norms)
            n_candidates = min(k + CANDIDATE_MARGIN, self.n_cells)
            if self.method == "exact":
                candidates = self._exact_candidates(queries, q_norms, n_candidates)
            else:
                candidates = self._ann_candidates(queries, n_candidates)
            indices[start:stop], distances[start:stop] = self._rerank(queries, candidates, k)
        return indices, distances

    def table(
        self,
        indices: np.ndarray,
        distances: np.ndarray,
        query_names,
        *,
        obs_keys=None,
    ) -> pd.DataFrame:
        """The hits of :meth:`query` as a long table: one row per (query cell, rank).

        Columns: ``query`` (the query cell's name), ``rank`` (0 = nearest), ``reference`` (the
        reference cell's name), ``reference_row`` (its row in the index), ``distance``, then the
        ``obs_keys`` columns of the reference cell (None: every stored column).
        """
        indices = np.asarray(indices)
        n, k = indices.shape
        if len(query_names) != n or np.shape(distances) != (n, k):
            raise ValueError(
                f"table: indices {indices.shape}, distances {np.shape(distances)} and {len(query_names)} query names "
                "must describe the same (query cells, k) hits."
            )
        columns = self.check_obs_keys(obs_keys)
        rows = indices.ravel()
        table = pd.DataFrame(
            {
                "query": np.repeat(np.asarray(query_names, dtype=object), k),
                "rank": np.tile(np.arange(k, dtype=np.int64), n),
                "reference": self.obs.index.to_numpy()[rows],
                "reference_row": rows,
                "distance": np.asarray(distances, dtype=np.float32).ravel(),
            }
        )
        for column in columns:  # keeps the column's dtype (categories, nullable integers)
            table[column] = self.obs[column].iloc[rows].reset_index(drop=True)
        return table

    def check_obs_keys(self, obs_keys) -> list[str]:
        """``obs_keys`` as a list of stored obs columns (None: all); a KeyError naming the stored ones otherwise."""
        if obs_keys is None:
            return list(self.obs.columns)
        obs_keys = [obs_keys] if isinstance(obs_keys, str) else list(obs_keys)
        missing = [c for c in obs_keys if c not in self.obs.columns]
        if missing:
            raise KeyError(
                f"The reference index stores no obs column {missing}; it stores {list(self.obs.columns) or 'none'}. "
                "Build the index with obs_keys= including them."
            )
        return obs_keys

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to the folder ``path``, or to an uncompressed tar when ``path`` ends in ``.tar``.

        An existing index (folder or tar) is replaced; any other existing file, or a non-empty folder
        that is not an index, is an error, so nothing else is overwritten. A tar holds the folder's
        files at its top level and is read in place by :meth:`load` (one file for workflow systems
        such as Galaxy that pass files, not folders).
        """
        path = Path(path)
        if path.suffix == ".tar":
            if path.exists() and not is_index_tar(path):
                raise FileExistsError(f"{path} exists and is not a reference index; choose another path.")
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as folder:
                self._save_folder(Path(folder))
                part = Path(folder) / "index.tar"
                with tarfile.open(part, "w", format=tarfile.PAX_FORMAT) as archive:
                    for name in self._files():  # the manifest last: a cut-short tar has none
                        archive.add(Path(folder) / name, arcname=name)
                os.replace(part, path)
            return
        if path.exists():
            if not path.is_dir():
                raise FileExistsError(f"{path} exists and is not a folder; choose another path for the index.")
            if any(path.iterdir()) and not is_index_folder(path):
                raise FileExistsError(
                    f"{path} is a folder that does not hold a reference index; choose a new or empty folder."
                )
        path.mkdir(parents=True, exist_ok=True)
        self._save_folder(path)

    def _files(self) -> list[str]:
        return [EMBEDDINGS, OBS, *([ANN] if self._ann is not None else []), MANIFEST]

    def _save_folder(self, path: Path) -> None:
        # The manifest is removed first and written last, so a folder left by an interrupted save
        # is not mistaken for a complete index.
        (path / MANIFEST).unlink(missing_ok=True)
        (path / ANN).unlink(missing_ok=True)
        tmp = path / (EMBEDDINGS + ".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(self.embeddings, dtype=np.float32))
        os.replace(tmp, path / EMBEDDINGS)
        _write_obs(self.obs, path / OBS)
        if self._ann is not None:
            with open(path / ANN, "wb") as fh:
                pickle.dump(self._ann, fh, protocol=pickle.HIGHEST_PROTOCOL)
        manifest = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "metric": self.metric,
            "method": self.method,
            "n_cells": self.n_cells,
            "dim": self.dim,
            "sha256": self.sha256,
            "use_rep": self.use_rep,
            "source": self.source,
        }
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True, verify: bool = False) -> ReferenceIndex:
        """Read an index written by :meth:`save`: a folder, or its uncompressed tar.

        Parameters
        ----------
        path
            The folder (or ``.tar`` file).
        mmap
            Memory-map the embeddings (read-only; from within the tar for a tar) instead of reading them.
        verify
            Recompute the SHA-256 of the embeddings and compare it with the manifest (reads them all once).
        """
        path = Path(path)
        if path.is_file() and tarfile.is_tarfile(path):
            with _TarFiles(path) as files:
                return cls._load(files, mmap=mmap, verify=verify)
        if not path.is_dir():
            raise FileNotFoundError(f"No reference index at {path}; build one with omnicell.tl.build_index.")
        return cls._load(_FolderFiles(path), mmap=mmap, verify=verify)

    @classmethod
    def _load(cls, files: _FolderFiles | _TarFiles, *, mmap: bool, verify: bool) -> ReferenceIndex:
        where = files.where
        if not files.has(MANIFEST):
            raise ValueError(f"{where} holds no {MANIFEST}: it is not a reference index (or its save was cut short).")
        try:
            manifest = json.loads(files.read(MANIFEST))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"The {MANIFEST} of {where} is not valid JSON ({err}).") from None
        if not isinstance(manifest, dict) or manifest.get("format") != INDEX_FORMAT:
            raise ValueError(f"The {MANIFEST} of {where} is not the manifest of an omnicell reference index.")
        if manifest.get("version") != INDEX_VERSION:
            raise ValueError(
                f"{where} is a reference index of format version {manifest.get('version')}; this omnicell reads "
                f"version {INDEX_VERSION}. Build the index again with this version."
            )
        missing = [k for k in ("metric", "method", "n_cells", "dim", "sha256") if k not in manifest]
        if missing:
            raise ValueError(f"The {MANIFEST} of {where} lacks {missing}.")
        if manifest["metric"] not in METRICS or manifest["method"] not in METHODS:
            raise ValueError(
                f"The {MANIFEST} of {where} names an unknown metric or method: "
                f"{manifest['metric']!r}, {manifest['method']!r}."
            )
        for name in (EMBEDDINGS, OBS) + ((ANN,) if manifest["method"] == "pynndescent" else ()):
            if not files.has(name):
                raise ValueError(f"The reference index at {where} lacks {name}.")
        embeddings = files.array(EMBEDDINGS, mmap=mmap)
        expected = (manifest["n_cells"], manifest["dim"])
        if embeddings.dtype != np.float32 or embeddings.shape != expected:
            raise ValueError(
                f"{EMBEDDINGS} of {where} holds {embeddings.dtype} {embeddings.shape}; "
                f"the manifest says float32 {expected}."
            )
        if verify and _sha256(embeddings) != manifest["sha256"]:
            raise ValueError(f"{EMBEDDINGS} of {where} does not match the SHA-256 in its manifest; it was altered.")
        obs = files.obs(OBS)
        if len(obs) != expected[0]:
            raise ValueError(f"{OBS} of {where} has {len(obs)} rows; the manifest says {expected[0]} cells.")
        ann = pickle.loads(files.read(ANN)) if manifest["method"] == "pynndescent" else None
        return cls(
            embeddings,
            obs,
            metric=manifest["metric"],
            method=manifest["method"],
            sha256=manifest["sha256"],
            ann=ann,
            use_rep=manifest.get("use_rep"),
            source=manifest.get("source"),
        )

    def _unit_rows(self, rows: np.ndarray, sq_norms: np.ndarray) -> np.ndarray:
        """Rows scaled to unit length under the cosine metric (where distance = half the squared chord)."""
        if self.metric != "cosine":
            return rows
        return (rows / np.sqrt(sq_norms)[:, None]).astype(np.float32)

    def _reference_block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        block = np.asarray(self.embeddings[start:stop], dtype=np.float32)
        norms = self._sq_norms[start:stop]
        if self.metric == "cosine":
            return self._unit_rows(block, norms), np.ones_like(norms)
        return block, norms

    def _exact_candidates(self, queries: np.ndarray, q_norms: np.ndarray, n_candidates: int) -> np.ndarray:
        """The ``n_candidates`` nearest rows by the matrix-product distance, scanning the reference in blocks."""
        n = queries.shape[0]
        best_d = np.full((n, 0), np.inf, dtype=np.float32)
        best_i = np.empty((n, 0), dtype=np.int64)
        for start in range(0, self.n_cells, REFERENCE_BLOCK):
            stop = min(start + REFERENCE_BLOCK, self.n_cells)
            block, r_norms = self._reference_block(start, stop)
            d = queries @ block.T
            d *= -2
            d += q_norms[:, None]
            d += r_norms[None, :]
            take = min(n_candidates, stop - start)
            part = (
                np.argpartition(d, take - 1, axis=1)[:, :take]
                if take < stop - start
                else np.broadcast_to(np.arange(stop - start), (n, stop - start))
            )
            best_d = np.concatenate([best_d, np.take_along_axis(d, part, axis=1)], axis=1)
            best_i = np.concatenate([best_i, part + start], axis=1)
            if best_d.shape[1] > n_candidates:
                keep = np.argpartition(best_d, n_candidates - 1, axis=1)[:, :n_candidates]
                best_d = np.take_along_axis(best_d, keep, axis=1)
                best_i = np.take_along_axis(best_i, keep, axis=1)
        return best_i

    def _ann_candidates(self, queries: np.ndarray, n_candidates: int) -> np.ndarray:
        # One query per call: pynndescent draws random starting points from one generator per call,
        # shared by the rows of that call, so a row's answer would depend on the rows queried with it.
        out = np.empty((queries.shape[0], n_candidates), dtype=np.int64)
        for row in range(queries.shape[0]):
            out[row] = self._ann.query(queries[row : row + 1], k=n_candidates, epsilon=ANN_EPSILON)[0][0]
        return out

    def _rerank(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances of the candidates, from the differences; the ``k`` smallest, ties by row number."""
        n, m = candidates.shape
        # Sorted candidates fix the tie order (a stable sort on distance keeps the smaller row first).
        candidates = np.sort(candidates, axis=1)
        dist = np.empty((n, m), dtype=np.float32)
        step = max(1, RERANK_BYTES // (m * self.dim * 8))
        for start in range(0, n, step):
            part = candidates[start : start + step]
            rows = np.asarray(self.embeddings[part.ravel()], dtype=np.float64).reshape(*part.shape, self.dim)
            if self.metric == "cosine":
                rows /= np.sqrt(self._sq_norms[part].astype(np.float64))[:, :, None]
            rows -= queries[start : start + step].astype(np.float64)[:, None, :]
            sq = np.einsum("nmd,nmd->nm", rows, rows)
            dist[start : start + step] = sq / 2 if self.metric == "cosine" else np.sqrt(sq)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(dist, order, axis=1)


def _row_sq_norms(rows: np.ndarray) -> np.ndarray:
    """Squared row norms, computed in blocks (the rows may be a memory map larger than memory)."""
    out = np.empty(rows.shape[0], dtype=np.float32)
    for start in range(0, rows.shape[0], REFERENCE_BLOCK):
        block = np.asarray(rows[start : start + REFERENCE_BLOCK], dtype=np.float64)
        out[start : start + len(block)] = np.einsum("nd,nd->n", block, block)
    return out


def _sha256(embeddings: np.ndarray) -> str:
    """SHA-256 of the float32 C-order bytes, read in chunks."""
    digest = hashlib.sha256()
    rows = max(1, HASH_CHUNK_BYTES // max(1, embeddings.shape[1] * 4))
    for start in range(0, embeddings.shape[0], rows):
        digest.update(np.ascontiguousarray(embeddings[start : start + rows], dtype=np.float32).tobytes())
    return digest.hexdigest()


def _check_obs(obs: pd.DataFrame | None, n_cells: int) -> pd.DataFrame:
    if obs is None:
        obs = pd.DataFrame(index=pd.RangeIndex(n_cells))
    if not isinstance(obs, pd.DataFrame):
        raise TypeError(f"obs must be a pandas DataFrame (or None), got {type(obs).__name__}.")
    if len(obs) != n_cells:
        raise ValueError(f"obs has {len(obs)} rows but there are {n_cells} embeddings; give one row per cell.")
    names = obs.index.astype(str).rename(None)
    if names.has_duplicates:
        dup = names[names.duplicated()].unique()
        raise ValueError(
            f"{len(dup)} reference cell names occur more than once (e.g. {dup[0]!r}); make them unique "
            "(AnnData.obs_names_make_unique()) before indexing."
        )
    obs = obs.copy()
    obs.index = names
    # Column names as the saved obs (an AnnData's) will have them, so a loaded index equals the built one.
    obs.columns = obs.columns.astype(str)
    return obs


def _write_obs(obs: pd.DataFrame, path: Path) -> None:
    from anndata import AnnData

    tmp = path.with_name(path.name + ".tmp")
    AnnData(obs=obs).write_h5ad(tmp)
    os.replace(tmp, path)


def _read_obs(path: Path) -> pd.DataFrame:
    import anndata

    obs = anndata.read_h5ad(path).obs
    obs.index.name = None
    return obs


def _build_ann(data: np.ndarray, *, random_state: int):
    """A pynndescent index over ``data`` (Euclidean; cosine data arrive unit-normalised), ready to query."""
    from pynndescent import NNDescent

    # Eight search-tree leaves seed each query (pynndescent's default is one): with one, a query whose
    # leaf falls in a neighbouring cluster cannot leave it, and recall@10 on 100 clusters of 50 cells
    # was 0.93; with eight it is 0.998, at about the same speed (benchmarks/reference_index.py).
    ann = NNDescent(
        data,
        metric="euclidean",
        n_neighbors=min(30, data.shape[0] - 1),
        random_state=random_state,
        low_memory=True,
        search_tree_leaf_budget=8,
        verbose=False,
    )
    ann.prepare()
    return ann


def is_index_tar(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a tar holding a saved :class:`ReferenceIndex` (it has a manifest at its top level)."""
    path = Path(path)
    if not (path.is_file() and tarfile.is_tarfile(path)):
        return False
    with tarfile.open(path, "r:") as archive:
        return MANIFEST in archive.getnames()


class _FolderFiles:
    """The files of an index folder."""

    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def array(self, name: str, *, mmap: bool) -> np.ndarray:
        return np.load(self.path / name, mmap_mode="r" if mmap else None)

    def obs(self, name: str) -> pd.DataFrame:
        return _read_obs(self.path / name)


class _TarFiles:
    """The files of an index tar, read in place: the embeddings are memory-mapped at their offset in the tar."""

    def __init__(self, path: Path):
        self.path = path
        self.where = str(path)
        try:
            self.archive = tarfile.open(path, "r:")  # uncompressed only: a compressed tar cannot be mapped
        except tarfile.ReadError:
            raise ValueError(
                f"{path} is a compressed tar; a reference index tar must be uncompressed (tar -cf, not -czf)."
            ) from None
        self.members = {m.name: m for m in self.archive.getmembers() if m.isfile()}

    def __enter__(self) -> _TarFiles:
        return self

    def __exit__(self, *exc) -> None:
        self.archive.close()

    def has(self, name: str) -> bool:
        return name in self.members

    def read(self, name: str) -> bytes:
        return self.archive.extractfile(self.members[name]).read()

    def array(self, name: str, *, mmap: bool) -> np.ndarray:
        handle = self.archive.extractfile(self.members[name])
        if not mmap:
            return np.load(handle)
        version = np.lib.format.read_magic(handle)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f"{name} in {self.path} is a .npy file of unsupported version {version}.")
        shape, fortran_order, dtype = readers[version](handle)
        if fortran_order:
            raise ValueError(f"{name} in {self.path} is not in C order.")
        offset = self.members[name].offset_data + handle.tell()
        return np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=shape)

    def obs(self, name: str) -> pd.DataFrame:
        import anndata

        obs = anndata.read_h5ad(io.BytesIO(self.read(name))).obs
        obs.index.name = None
        return obs
