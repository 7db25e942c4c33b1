"""Streaming training cells from many (backed) AnnData files.

Every file is tokenised exactly as for inference (:func:`omnicell.pp.tokenize`, then the
:class:`~omnicell._engine.plan.InferencePlan` that :func:`omnicell.tl.embed_cells` uses), so a
training sequence is the sequence the model will later see for that cell; spatial files give
focal-plus-neighbours windows.

Shuffling across files with bounded memory
------------------------------------------
The rows of every file are cut into contiguous chunks (``chunk_size`` rows). Each epoch the chunks
of all files are permuted together, consecutive runs of ``window_chunks`` chunks form a shuffle
window, and the cells of a window are permuted. Cells therefore mix across files at window scale
while a batch reads rows from a few contiguous chunks (cheap for backed HDF5). Only the chunk table
(a few integers per chunk) and one window of cell indices are ever held, never a permutation of the
whole corpus, and only the rows of the current micro-batch are read.

The order is a pure function of ``(seed, epoch)``: position ``p`` of the stream is cell
``order(p // N)[p % N]`` with ``N`` the number of cells, so a run's data position is one integer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from omnicell._engine.plan import plan_inference
from omnicell._engine.tokenize import tokenize
from omnicell.data import TokenBatch

__all__ = [
    "CellStream",
    "StreamSource",
    "close_training_cells",
    "concat_batches",
    "open_h5ad_source",
    "open_training_cells",
]

logger = logging.getLogger("omnicell")


@dataclasses.dataclass
class StreamSource:
    """One data set to draw training cells from.

    Attributes
    ----------
    plan
        An :class:`~omnicell._engine.plan.InferencePlan` (anything with ``token_batch(rows)``).
    rows
        The rows (focal cells) that take part, e.g. the training split; all rows when None.
    name
        Shown in logs and errors.
    handle
        Object to keep alive while the source is used (the backed AnnData).
    """

    plan: Any
    rows: np.ndarray | None = None
    name: str = ""
    handle: Any = None

    def __post_init__(self) -> None:
        if self.rows is None:
            self.rows = np.arange(self.plan.n_obs, dtype=np.int64)
        self.rows = np.asarray(self.rows, dtype=np.int64)
        if len(self.rows) == 0:
            raise ValueError(f"training source {self.name or '?'} has no cells.")

    @property
    def n_cells(self) -> int:
        return len(self.rows)

    @property
    def spatial(self) -> bool:
        return bool(self.plan.spatial)

    def close(self) -> None:
        close_training_cells(self.handle)


def open_training_cells(spec, *, spatial: bool = False, backed: bool = True):
    """The cells of a recipe's data source, read lazily: an h5ad (backed) or a TileDB-SOMA experiment.

    A SOMA source (``census://...``, a SOMA URI or folder) is read through
    :func:`omnicell.data.read_soma` with the spec's ``measurement``, ``x_layer`` and ``obs_filter``
    (and its ``spatial_key`` coordinates from the measurement's ``obsm`` in spatial mode); its rows
    are read in chunks when a batch needs them, exactly like a backed h5ad.
    """
    import anndata as ad

    from omnicell.data import is_soma_uri, read_soma

    path = os.fspath(spec.path)
    if is_soma_uri(path):
        return read_soma(
            path,
            measurement=getattr(spec, "measurement", "RNA"),
            x_layer=getattr(spec, "x_layer", None),
            obs_value_filter=getattr(spec, "obs_filter", None),
            obsm_keys=[getattr(spec, "spatial_key", "spatial")] if spatial else (),
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"training file {path} does not exist.")
    return ad.read_h5ad(path, backed="r" if backed else None)


def close_training_cells(adata) -> None:
    """Close the file behind a backed AnnData (a SOMA source closes when collected)."""
    file = getattr(adata, "file", None)
    if file is not None and getattr(adata, "isbacked", False):
        file.close()


def open_h5ad_source(
    path: str | os.PathLike | Any,
    model,
    *,
    spatial: bool,
    n_genes: int = 2000,
    strategy: str = "expressed",
    n_neighbors: int = 9,
    layer: str | None = None,
    use_raw: bool = False,
    gene_key: str | None = None,
    species: str = "auto",
    spatial_key: str = "spatial",
    library_key: str | None = None,
    coord_scale: float = 1.0,
    backed: bool = True,
) -> StreamSource:
    """Open an h5ad file (backed) or a SOMA experiment and tokenise it for ``model`` as inference would.

    The AnnData is read in backed mode (a SOMA experiment lazily, see :func:`open_training_cells`;
    pass the recipe's :class:`~omnicell.train.DataFileSpec` as ``path`` for its SOMA options): only
    ``obs``/``var``/``obsm`` live in memory, expression rows are read per batch. The tokenisation
    record lives in the in-memory ``uns`` (the source is not modified).
    """
    spec = path if hasattr(path, "path") else _PathSpec(os.fspath(path), spatial_key)
    path = os.fspath(spec.path)
    adata = open_training_cells(spec, spatial=spatial, backed=backed)
    tokenize(
        adata,
        model,
        n_genes=n_genes,
        strategy=strategy,
        layer=layer,
        use_raw=use_raw,
        gene_key=gene_key,
        species=species,
        spatial=spatial,
        n_neighbors=n_neighbors,
        spatial_key=spatial_key,
        library_key=library_key,
        coord_scale=coord_scale,
    )
    plan = plan_inference(adata, model, batch_size=None, device="cpu", precision="float32")
    plan.where = f"{path} ({plan.where})"
    return StreamSource(plan=plan, name=os.path.basename(path.rstrip("/")), handle=adata)


@dataclasses.dataclass
class _PathSpec:
    path: str
    spatial_key: str = "spatial"


class CellStream:
    """An endless, seeded, cross-file shuffled sequence of ``(source, row)`` pairs.

    Parameters
    ----------
    sources
        Data sets to draw from.
    seed
        Seed of the order.
    chunk_size
        Rows per contiguous chunk.
    window_chunks
        Chunks per shuffle window (cells are permuted within a window).
    """

    def __init__(
        self, sources: Sequence[StreamSource], *, seed: int, chunk_size: int = 256, window_chunks: int = 16
    ) -> None:
        if not sources:
            raise ValueError("a training stage needs at least one data source.")
        if chunk_size < 1 or window_chunks < 1:
            raise ValueError("chunk_size and window_chunks must be positive.")
        self.sources = list(sources)
        self.seed = int(seed)
        self.chunk_size = int(chunk_size)
        self.window_chunks = int(window_chunks)
        parts = []
        for index, source in enumerate(self.sources):
            starts = np.arange(0, source.n_cells, self.chunk_size, dtype=np.int64)
            stops = np.minimum(starts + self.chunk_size, source.n_cells)
            parts.append(np.stack([np.full_like(starts, index), starts, stops], axis=1))
        self._chunks = np.concatenate(parts)  # (n_chunks, 3): source, start, stop (positions in source.rows)
        self.n_cells = int(sum(source.n_cells for source in self.sources))
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._window_cache: dict[tuple[int, int], np.ndarray] = {}

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk order of an epoch and the stream offset at which each window starts."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self._chunks))
            sizes = self._chunks[order, 2] - self._chunks[order, 1]
            window_sizes = np.add.reduceat(sizes, np.arange(0, len(order), self.window_chunks))
            window_starts = np.concatenate([[0], np.cumsum(window_sizes)])
            self._epoch_cache = (epoch, order, window_starts)
        return self._epoch_cache[1], self._epoch_cache[2]

    def _window(self, epoch: int, window: int) -> np.ndarray:
        """(n, 2) ``(source, row)`` pairs of one shuffle window, permuted."""
        key = (epoch, window)
        if key not in self._window_cache:
            order, _ = self._epoch(epoch)
            chunks = self._chunks[order[window * self.window_chunks : (window + 1) * self.window_chunks]]
            pairs = np.concatenate(
                [
                    np.stack([np.full(stop - start, source), self.sources[source].rows[start:stop]], axis=1)
                    for source, start, stop in chunks
                ]
            )
            pairs = pairs[np.random.default_rng([self.seed, epoch, 1, window]).permutation(len(pairs))]
            if len(self._window_cache) >= 2:
                self._window_cache.pop(next(iter(self._window_cache)))
            self._window_cache[key] = pairs
        return self._window_cache[key]

    def take(self, start: int, count: int) -> np.ndarray:
        """The ``(source, row)`` pairs at stream positions ``start .. start + count - 1``."""
        out = np.empty((count, 2), dtype=np.int64)
        filled = 0
        position = int(start)
        while filled < count:
            epoch, offset = divmod(position, self.n_cells)
            _, window_starts = self._epoch(epoch)
            window = int(np.searchsorted(window_starts, offset, side="right") - 1)
            pairs = self._window(epoch, window)
            inner = offset - int(window_starts[window])
            n = min(count - filled, len(pairs) - inner)
            out[filled : filled + n] = pairs[inner : inner + n]
            filled += n
            position += n
        return out

    def batch(self, pairs: np.ndarray) -> TokenBatch:
        """Token batch of the given ``(source, row)`` pairs, in their order."""
        parts, order = [], []
        for source in np.unique(pairs[:, 0]):
            members = np.flatnonzero(pairs[:, 0] == source)
            parts.append(self.sources[int(source)].plan.token_batch(pairs[members, 1]))
            order.append(members)
        combined = concat_batches(parts)
        position = np.empty(len(pairs), dtype=np.int64)
        position[np.concatenate(order)] = np.arange(len(pairs))
        return combined.take(position)

    def close(self) -> None:
        for source in self.sources:
            source.close()


def concat_batches(batches: Sequence[TokenBatch]) -> TokenBatch:
    """Stack token batches along the batch axis, padding sequences at the end to the longest one.

    Padding tokens have value 0, ``cell_index`` -1 and ``padding_mask`` False, as in
    :func:`omnicell.data.build_batch`.
    """
    if len(batches) == 1:
        return batches[0]
    length = max(batch.tokens.shape[1] for batch in batches)
    spatial = any(batch.positions is not None for batch in batches)
    tokens, values, cell_index, padding, positions = [], [], [], [], []
    for batch in batches:
        n, t = batch.tokens.shape
        pad = length - t
        tokens.append(np.pad(batch.tokens, ((0, 0), (0, pad))))
        values.append(np.pad(batch.values, ((0, 0), (0, pad))))
        cell_index.append(np.pad(batch.cell_index, ((0, 0), (0, pad)), constant_values=-1))
        real = np.ones((n, t), dtype=bool) if batch.padding_mask is None else batch.padding_mask
        padding.append(np.pad(real, ((0, 0), (0, pad)), constant_values=False))
        if spatial:
            coords = batch.positions if batch.positions is not None else np.zeros((n, t, 2), dtype=np.float32)
            positions.append(np.pad(coords, ((0, 0), (0, pad), (0, 0))))
    padding_mask = np.concatenate(padding)
    return TokenBatch(
        tokens=np.concatenate(tokens),
        values=np.concatenate(values),
        positions=np.concatenate(positions) if spatial else None,
        cell_index=np.concatenate(cell_index),
        n_blocks=max(batch.n_blocks for batch in batches),
        padding_mask=None if padding_mask.all() else padding_mask,
    )
