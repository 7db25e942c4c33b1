"""TileDB-SOMA experiments (and the CELLxGENE Census) as lazy AnnData: rows read on demand, in chunks.

:func:`read_soma` returns an AnnData whose ``X`` is a dask array over the experiment's ``X`` layer;
each dask chunk is ``chunk_rows`` cells read from SOMA when a batch needs them, so tokenisation
(:func:`omnicell.data.read_csr`, the chunked highly-variable-gene pass) and the model read a
SOMA source exactly as they read a backed h5ad, and memory is bounded by a chunk, not by the
number of cells. ``obs`` holds only ``soma_joinid`` and the columns asked for.

``tiledbsoma`` (and ``cellxgene_census`` for ``census://`` URIs) are optional: ``pip install
'omnicell[census]'``; they are imported only here, only when a SOMA source is opened.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["CENSUS_SCHEME", "SomaMatrix", "is_soma_uri", "read_soma"]

CENSUS_SCHEME = "census://"
# var columns tried, in order, for the var names (gene ids): the Census's Ensembl ids first.
VAR_NAME_COLUMNS = ("feature_id", "var_id", "gene_ids", "gene_id")


def _import_tiledbsoma():
    try:
        import tiledbsoma
    except ImportError:
        raise ImportError(
            "Reading a TileDB-SOMA experiment needs tiledbsoma: pip install 'omnicell[census]'."
        ) from None
    return tiledbsoma


def is_soma_uri(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a SOMA experiment: ``census://...``, a remote URI, or a TileDB folder."""
    text = os.fspath(path)
    if text.startswith(CENSUS_SCHEME):
        return True
    if "://" in text and not text.startswith("file://"):
        return not text.endswith((".h5ad", ".h5mu", ".zarr"))
    local = text.removeprefix("file://")
    return os.path.isdir(local) and any(
        os.path.exists(os.path.join(local, n)) for n in ("__group", "__tiledb_group.tdb")
    )


def _open_experiment(uri: str):
    """``(experiment, objects to keep open)``; ``census://[VERSION/]ORGANISM`` opens the Census."""
    if uri.startswith(CENSUS_SCHEME):
        try:
            import cellxgene_census
        except ImportError:
            raise ImportError("Reading the Census needs cellxgene-census: pip install 'omnicell[census]'.") from None
        parts = uri.removeprefix(CENSUS_SCHEME).strip("/").split("/")
        version, organism = (parts[0], parts[1]) if len(parts) == 2 else ("stable", parts[0])
        census = cellxgene_census.open_soma(census_version=version)
        organisms = list(census["census_data"].keys())
        if organism not in organisms:
            census.close()
            raise ValueError(f"The Census {version} has no organism {organism!r}; available: {', '.join(organisms)}.")
        return census["census_data"][organism], census
    tiledbsoma = _import_tiledbsoma()
    try:
        experiment = tiledbsoma.Experiment.open(uri)
    except (tiledbsoma.DoesNotExistError, tiledbsoma.SOMAError) as error:
        raise ValueError(f"{uri} is not a TileDB-SOMA experiment ({error}).") from None
    return experiment, experiment


class SomaMatrix:
    """Rows of one SOMA ``X`` layer, in the order of ``obs_joinids``, read a chunk of rows at a time.

    A small cache keeps the last chunks read, so consecutive batches inside one chunk read it once.
    """

    def __init__(self, array, obs_joinids: np.ndarray, var_joinids: np.ndarray, *, dtype=np.float32, cache: int = 2):
        self.array = array
        self.obs_joinids = np.asarray(obs_joinids, dtype=np.int64)
        self.var_joinids = np.asarray(var_joinids, dtype=np.int64)
        self.shape = (len(self.obs_joinids), len(self.var_joinids))
        self.dtype = np.dtype(dtype)
        self._var_identity = bool((self.var_joinids == np.arange(len(self.var_joinids))).all())
        self._cache: OrderedDict[tuple[int, int], sp.csr_matrix] = OrderedDict()
        self._cache_size = cache
        self._lock = threading.Lock()

    def read_rows(self, start: int, stop: int) -> sp.csr_matrix:
        """Rows ``start:stop`` as a CSR matrix."""
        key = (int(start), int(stop))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        joinids = self.obs_joinids[start:stop]
        table = self.array.read(coords=(joinids,)).tables().concat()
        rows = np.searchsorted(joinids, table.column("soma_dim_0").to_numpy())
        columns = table.column("soma_dim_1").to_numpy()
        if not self._var_identity:
            columns = np.searchsorted(self.var_joinids, columns)
        data = table.column("soma_data").to_numpy().astype(self.dtype, copy=False)
        block = sp.csr_matrix((data, (rows, columns)), shape=(len(joinids), self.shape[1]))
        with self._lock:
            self._cache[key] = block
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return block

    def to_dask(self, chunk_rows: int):
        """A dask array over the rows (chunks of ``chunk_rows`` cells, every gene), with CSR chunks."""
        import dask.array as da

        n_obs, n_var = self.shape
        sizes = [min(chunk_rows, n_obs - start) for start in range(0, n_obs, chunk_rows)] or [0]

        def chunk(block_info=None):
            start, stop = block_info[None]["array-location"][0]
            return self.read_rows(start, stop)

        return da.map_blocks(
            chunk, chunks=(tuple(sizes), (n_var,)), meta=sp.csr_matrix((0, 0), dtype=self.dtype), dtype=self.dtype
        )


def _choose_layer(measurement, x_layer: str | None, where: str) -> str:
    layers = list(measurement.X.keys())
    if x_layer is not None:
        if x_layer not in layers:
            raise KeyError(f"{where} has no X layer {x_layer!r}; layers: {', '.join(layers) or 'none'}. Pass x_layer=.")
        return x_layer
    if len(layers) == 1:
        return layers[0]
    if "raw" in layers:
        return "raw"
    raise ValueError(f"{where} has several X layers ({', '.join(layers)}); choose one with x_layer= (--x-layer).")


def read_soma(
    experiment,
    *,
    measurement: str = "RNA",
    x_layer: str | None = None,
    obs_value_filter: str | None = None,
    obs_columns: Sequence[str] = (),
    var_name_column: str | None = None,
    obsm_keys: Sequence[str] = (),
    chunk_rows: int = 2048,
):
    """A SOMA experiment's cells as an AnnData with a lazy ``X`` (nothing but ``obs``/``var`` is read now).

    Parameters
    ----------
    experiment
        A ``tiledbsoma.Experiment``, its URI (local folder, ``s3://...``, ``tiledb://...``) or
        ``census://[VERSION/]ORGANISM`` for the CELLxGENE Census (e.g. ``census://stable/homo_sapiens``,
        which needs network access).
    measurement
        Measurement to read (``ms``).
    x_layer
        ``X`` layer; None: the measurement's only layer, else ``"raw"`` (the Census's counts).
    obs_value_filter
        SOMA ``value_filter`` on ``obs`` (e.g. ``"tissue_general == 'blood' and is_primary_data == True"``);
        only the matching cells are read.
    obs_columns
        ``obs`` columns to keep besides ``soma_joinid``.
    var_name_column
        ``var`` column used as var names; None: the first of ``feature_id``, ``var_id``, ``gene_ids``,
        ``gene_id`` present (else ``soma_joinid``). Other var columns stay available for ``gene_key``.
    obsm_keys
        Measurement ``obsm`` arrays to read for the selected cells (e.g. ``"spatial"`` coordinates).
    chunk_rows
        Cells per chunk read from SOMA.

    Returns
    -------
    AnnData with ``X`` a dask array (CSR chunks), ``obs`` indexed by ``obs_id`` (or the joinid), with
    ``soma_joinid`` and ``obs_columns``, ``var`` of the measurement, ``obsm`` as asked, and
    ``uns['omnicell_source']`` naming the experiment, measurement, layer and filter.
    """
    from anndata import AnnData

    if int(chunk_rows) < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}.")
    obs_columns = [str(c) for c in obs_columns]
    tiledbsoma = _import_tiledbsoma()
    if isinstance(experiment, (str, os.PathLike)):
        uri = os.fspath(experiment)
        experiment, handle = _open_experiment(uri)
    else:
        uri, handle = getattr(experiment, "uri", "<experiment>"), experiment
    if not isinstance(experiment, tiledbsoma.Experiment):
        raise TypeError(f"expected a tiledbsoma.Experiment or its URI, got {type(experiment).__name__}.")
    if measurement not in experiment.ms:
        raise KeyError(f"{uri} has no measurement {measurement!r}; measurements: {', '.join(experiment.ms.keys())}.")
    ms = experiment.ms[measurement]
    layer = _choose_layer(ms, x_layer, f"{uri} (measurement {measurement!r})")

    obs_schema = experiment.obs.schema.names
    missing = [c for c in obs_columns if c not in obs_schema]
    if missing:
        raise KeyError(f"obs of {uri} has no column(s) {', '.join(missing)}; columns: {', '.join(obs_schema)}.")
    wanted = [
        "soma_joinid",
        *[c for c in ("obs_id",) if c in obs_schema],
        *[c for c in obs_columns if c != "soma_joinid"],
    ]
    try:
        obs = (
            experiment.obs.read(value_filter=obs_value_filter, column_names=list(dict.fromkeys(wanted)))
            .concat()
            .to_pandas()
        )
    except (tiledbsoma.SOMAError, ValueError) as error:
        raise ValueError(f"obs value filter {obs_value_filter!r} cannot be applied to {uri}: {error}") from None
    if len(obs) == 0:
        raise ValueError(f"no cell of {uri} matches the obs filter {obs_value_filter!r}.")
    obs = obs.sort_values("soma_joinid", kind="stable")
    index = obs.pop("obs_id") if "obs_id" in obs and "obs_id" not in obs_columns else obs["soma_joinid"]
    obs.index = pd.Index(np.asarray(index).astype(str), name=None)

    var = ms.var.read().concat().to_pandas().sort_values("soma_joinid", kind="stable")
    if var_name_column is None:
        var_name_column = next((c for c in VAR_NAME_COLUMNS if c in var.columns), "soma_joinid")
    elif var_name_column not in var.columns:
        raise KeyError(f"var of {uri} has no column {var_name_column!r}; columns: {', '.join(var.columns)}.")
    var.index = pd.Index(var[var_name_column].astype(str).to_numpy(), name=None)
    if var_name_column != "soma_joinid":
        var = var.drop(columns=[var_name_column])

    matrix = SomaMatrix(ms.X[layer], obs["soma_joinid"].to_numpy(), var["soma_joinid"].to_numpy())
    obsm = {}
    for key in obsm_keys:
        if "obsm" not in ms or key not in ms.obsm:
            available = list(ms.obsm.keys()) if "obsm" in ms else []
            raise KeyError(f"measurement {measurement!r} of {uri} has no obsm {key!r}; obsm: {available or 'none'}.")
        obsm[key] = _read_obsm(ms.obsm[key], matrix.obs_joinids)
    adata = AnnData(X=matrix.to_dask(int(chunk_rows)), obs=obs, var=var, obsm=obsm)
    adata.uns["omnicell_source"] = {
        "soma_experiment": uri,
        "measurement": measurement,
        "x_layer": layer,
        "obs_value_filter": obs_value_filter or "",
    }
    # The dask graph holds the open X array; the handle must outlive it (closed when collected).
    matrix.handle = handle
    return adata


def _read_obsm(array, joinids: np.ndarray) -> np.ndarray:
    """(n, d) float rows of an obsm array (sparse or dense ND) for the given cells."""
    width = int(array.shape[1])
    if type(array).__name__ == "DenseNDArray":
        # dense reads take slices: read the joinid span once and pick the rows
        low, high = int(joinids.min()), int(joinids.max())
        block = array.read(coords=(slice(low, high), slice(None))).to_numpy()
        return np.asarray(block[joinids - low, :], dtype=np.float64)
    table = array.read(coords=(joinids,)).tables().concat()
    rows = np.searchsorted(joinids, table.column("soma_dim_0").to_numpy())
    out = np.zeros((len(joinids), width), dtype=np.float64)
    out[rows, table.column("soma_dim_1").to_numpy()] = table.column("soma_data").to_numpy()
    return out
