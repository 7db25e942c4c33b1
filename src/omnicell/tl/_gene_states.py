"""Per-gene, per-cell model states shared by the gene-level tools.

The cell-level gene embedding of gene ``g`` in cell ``c`` is the last-layer state of ``g``'s token
in ``c``'s block, projected onto the spectral basis (as the released code, without normalisation).
For ``n`` cells, ``G`` genes and ``m`` dimensions this is ``n * G * m * 4`` bytes (10,000 cells x
2,000 genes x 316 dimensions: 25 GB), so it is streamed: into an in-memory array when it fits a
budget, else into a temporary gene-major file (or a zarr store the user names), and read back a
few genes at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData

from omnicell._core.groups import group_codes  # re-exported for the gene-level tools
from omnicell._core.tokenize_record import TokenizeRecord
from omnicell._engine.plan import InferencePlan
from omnicell.data import read_csr
from omnicell.nn import pool_cells

__all__ = [
    "CellGeneEmbeddings",
    "GeneIndex",
    "collect_cell_gene_embeddings",
    "expression_columns",
    "gene_index",
    "group_codes",
    "token_genes",
]

logger = logging.getLogger("omnicell")

DEFAULT_MAX_MEMORY = 2 * 1024**3
"""Bytes of cell-level gene embeddings kept in memory before spilling to a temporary file."""

WRITE_BUFFER = 128 * 1024**2
"""Bytes of rows gathered before they are written to a zarr store (one chunk of rows)."""


@dataclasses.dataclass
class GeneIndex:
    """The tokenised genes ("candidates") and where each lives.

    Attributes
    ----------
    names
        Candidate gene names, in the order of the tokenisation record.
    var_rows
        Row of each candidate in ``adata.var`` (-1 for a gene only in ``adata.raw``).
    token_ids
        Vocabulary token of each candidate.
    lookup
        Token id -> candidate index, -1 for tokens that are no candidate.
    fixed
        True when every cell reads all candidates in order (``strategy='hvg'``): slot ``j`` of a
        block is candidate ``j``.
    """

    names: np.ndarray
    var_rows: np.ndarray
    token_ids: np.ndarray
    lookup: np.ndarray
    fixed: bool

    def __len__(self) -> int:
        return len(self.names)


def gene_index(adata: AnnData, plan: InferencePlan) -> GeneIndex:
    """Index the candidates of ``adata``'s tokenisation (run by :func:`plan_inference`)."""
    names = TokenizeRecord.read(adata).genes
    token_ids = np.asarray(plan.gene_tokens, dtype=np.int64)
    lookup = np.full(max(int(token_ids.max(initial=0)), plan.model.vocab.max_token_id) + 1, -1, dtype=np.int64)
    lookup[token_ids] = np.arange(len(token_ids))
    return GeneIndex(
        names=names,
        var_rows=adata.var_names.get_indexer(names),
        token_ids=token_ids,
        lookup=lookup,
        fixed=plan.zero_fill is None,
    )


def token_genes(index: GeneIndex, tokens: np.ndarray, cell_index: np.ndarray) -> np.ndarray:
    """(B, T) candidate index of every gene token of the focal cell's block, -1 elsewhere."""
    focal = cell_index == 0
    if index.fixed:
        # Block 0 is <RNA_START>, the candidates in order, <RNA_END>: slot t is candidate t - 1.
        slots = np.broadcast_to(np.arange(tokens.shape[1]) - 1, tokens.shape)
        return np.where(focal, slots, -1)
    return np.where(focal, index.lookup[np.clip(tokens, 0, len(index.lookup) - 1)], -1)


def expression_columns(plan: InferencePlan, candidates: np.ndarray, *, chunk_rows: int = 4096) -> sp.csc_matrix:
    """(n_obs, len(candidates)) float32 expression of the candidates, from the matrix ``tokenize`` read."""
    columns = plan.columns[candidates]
    blocks = []
    for start in range(0, plan.n_obs, chunk_rows):
        rows = np.arange(start, min(start + chunk_rows, plan.n_obs))
        blocks.append(read_csr(plan.matrix, rows, columns).astype(np.float32))
    return sp.vstack(blocks).tocsc()


class GeneMajorFile:
    """A (n_obs, n_genes, m) float32 array on disk, gene by gene, in one file.

    Each gene's (n_obs, m) values are contiguous, so reading any set of genes reads exactly their
    bytes. Written by blocks of consecutive rows (every gene of those rows at once); used for the
    temporary spill of :func:`collect_cell_gene_embeddings`.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int]) -> None:
        self.path, self.shape = path, shape
        self.handle = open(path, "w+b")  # closed by close()
        self.handle.truncate(int(np.prod(shape)) * 4)

    def write_rows(self, start: int, block: np.ndarray) -> None:
        n_obs, _, width = self.shape
        for gene in range(block.shape[1]):
            self.handle.seek(((gene * n_obs) + start) * width * 4)
            self.handle.write(np.ascontiguousarray(block[:, gene], dtype=np.float32).tobytes())

    def take(self, columns: np.ndarray) -> np.ndarray:
        n_obs, _, width = self.shape
        out = np.empty((n_obs, len(columns), width), dtype=np.float32)
        for i, gene in enumerate(np.asarray(columns, dtype=np.int64)):
            self.handle.seek(int(gene) * n_obs * width * 4)
            out[:, i] = np.frombuffer(self.handle.read(n_obs * width * 4), dtype=np.float32).reshape(n_obs, width)
        return out

    def close(self) -> None:
        self.handle.close()


class CellGeneEmbeddings:
    """(n_obs, n_genes, m) float32 cell-level gene embeddings.

    Held in memory, in a zarr array or in a temporary :class:`GeneMajorFile`; NaN where a gene is
    not in a cell's sequence (``strategy='expressed'``).
    """

    def __init__(self, array, genes: np.ndarray, *, cleanup: Path | None = None) -> None:
        self.array = array
        self.genes = genes  # candidate indices, one per column
        self.cleanup = cleanup  # folder to delete on close (temporary storage)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Embeddings of columns ``start:stop`` for all cells, (n_obs, stop - start, m)."""
        if isinstance(self.array, GeneMajorFile):
            return self.array.take(np.arange(start, stop))
        return np.asarray(self.array[:, start:stop, :], dtype=np.float32)

    def take(self, columns: np.ndarray) -> np.ndarray:
        """Embeddings of the given columns (any order) for all cells, (n_obs, len(columns), m)."""
        columns = np.asarray(columns, dtype=np.int64)
        if isinstance(self.array, (np.ndarray, GeneMajorFile)):
            if isinstance(self.array, GeneMajorFile):
                return self.array.take(columns)
            return np.ascontiguousarray(self.array[:, columns, :])
        unique, inverse = np.unique(columns, return_inverse=True)
        values = np.asarray(self.array.oindex[:, unique, :], dtype=np.float32)
        return values[:, inverse, :]

    def close(self) -> None:
        """Delete temporary storage; a user's zarr store is kept."""
        if isinstance(self.array, GeneMajorFile):
            self.array.close()
        if self.cleanup is not None:
            shutil.rmtree(self.cleanup, ignore_errors=True)
            self.cleanup = None

    def __enter__(self) -> CellGeneEmbeddings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _create_zarr(path: Path, shape: tuple[int, int, int], row_chunk: int, attrs: dict):
    """A float32 zarr array chunked one gene wide (reading any genes reads only their values)."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(attrs)
    create = getattr(group, "create_array", None) or group.create_dataset  # zarr 3, else zarr 2
    # No zarr 3 shards: a partial read of a shard loads the whole shard.
    return create(name="embeddings", shape=shape, chunks=(row_chunk, 1, shape[2]), dtype="float32", fill_value=np.nan)


def collect_cell_gene_embeddings(
    plan: InferencePlan,
    index: GeneIndex,
    basis: torch.Tensor | None,
    *,
    genes: np.ndarray | None = None,
    store: str | os.PathLike | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    obs_names: Sequence[str] | None = None,
    cell_embeddings: bool = False,
    description: str = "omnicell",
) -> tuple[CellGeneEmbeddings, np.ndarray | None]:
    """Run the model once and keep the projected state of every candidate in ``genes`` in every cell.

    Parameters
    ----------
    genes
        Candidate indices to keep (default all).
    store
        Path of a zarr group to write (array ``embeddings`` chunked (rows, 1 gene, m), attributes
        ``genes`` and ``obs_names``). None keeps the array in memory when it needs at most
        ``max_memory`` bytes, else in a temporary gene-major file removed by
        :meth:`CellGeneEmbeddings.close`.
    cell_embeddings
        Also return the (n_obs, m) cell embeddings of the same pass (as ``embed_cells``).
    """
    genes = np.arange(len(index)) if genes is None else np.asarray(genes, dtype=np.int64)
    column_of = np.full(len(index), -1, dtype=np.int64)
    column_of[genes] = np.arange(len(genes))
    width = basis.shape[1] if basis is not None else plan.model.config.d_model
    shape = (plan.n_obs, len(genes), width)
    nbytes = int(np.prod(shape)) * 4
    chunk_rows = plan.n_obs
    if store is not None:
        # As many rows per chunk as a write buffer of WRITE_BUFFER bytes holds: rows are gathered
        # and written a whole chunk at a time.
        chunk_rows = int(max(1, min(plan.n_obs, WRITE_BUFFER // max(1, len(genes) * width * 4))))
        attrs = {"genes": [str(g) for g in index.names[genes]], "n_obs": plan.n_obs, "n_components": width}
        if obs_names is not None:
            attrs["obs_names"] = [str(o) for o in obs_names]
        target = _create_zarr(Path(store), shape, chunk_rows, attrs)
        result = CellGeneEmbeddings(target, genes)
        logger.info("cell-level gene embeddings (%.2f GB) go to the zarr store %s", nbytes / 1024**3, store)
    elif nbytes > max_memory:
        folder = Path(tempfile.mkdtemp(prefix="omnicell_genes_"))
        target = GeneMajorFile(folder / "cells.f32", shape)
        result = CellGeneEmbeddings(target, genes, cleanup=folder)
        logger.info("cell-level gene embeddings (%.2f GB) go to the temporary file %s", nbytes / 1024**3, target.path)
    else:
        target = np.full(shape, np.nan, dtype=np.float32)
        result = CellGeneEmbeddings(target, genes)
    cells = np.zeros((plan.n_obs, width), dtype=np.float32) if cell_embeddings else None
    buffer: np.ndarray | None = None
    buffer_chunk = -1

    def flush() -> None:
        if buffer is not None:
            start = buffer_chunk * chunk_rows
            target[start : start + len(buffer)] = buffer

    try:
        for focal, batch, tensors, output in plan.batches(description=description):
            candidate = token_genes(index, batch.tokens, batch.cell_index)
            column = np.where(candidate >= 0, column_of[np.maximum(candidate, 0)], -1)
            b, t = np.nonzero(column >= 0)
            hidden = output.hidden.float()
            if cells is not None:
                pooled = pool_cells(hidden, tensors["cell_index"], tensors["expressed"], batch.n_blocks)[:, 0]
                cells[focal] = (pooled @ basis if basis is not None else pooled).cpu().numpy()
            states = hidden[torch.from_numpy(b).to(hidden.device), torch.from_numpy(t).to(hidden.device)]
            states = (states @ basis if basis is not None else states).cpu().numpy()
            rows, columns = focal[b], column[b, t]
            if isinstance(target, np.ndarray):
                target[rows, columns] = states
            elif isinstance(target, GeneMajorFile):  # focal cells are consecutive rows
                block = np.full((len(focal), len(genes), width), np.nan, dtype=np.float32)
                block[rows - focal[0], columns] = states
                target.write_rows(int(focal[0]), block)
            else:
                chunk_of = rows // chunk_rows
                for chunk in np.unique(chunk_of):
                    if chunk != buffer_chunk:
                        flush()
                        buffer_chunk = int(chunk)
                        length = min(chunk_rows, plan.n_obs - buffer_chunk * chunk_rows)
                        buffer = np.full((length, len(genes), width), np.nan, dtype=np.float32)
                    here = chunk_of == chunk
                    buffer[rows[here] - buffer_chunk * chunk_rows, columns[here]] = states[here]
        flush()
    except BaseException:
        result.close()
        raise
    return result, cells


def iter_gene_blocks(source: CellGeneEmbeddings, block: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, embeddings[:, start:stop])`` over the columns, ``block`` at a time."""
    n = source.shape[1]
    block = max(1, int(block))
    for start in range(0, n, block):
        stop = min(start + block, n)
        yield start, stop, source.read(start, stop)
