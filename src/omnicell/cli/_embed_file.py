"""File to file embedding with memory independent of the number of cells, alone or under ``torchrun``.

``omnicell embed`` runs here for h5ad and TileDB-SOMA inputs. The input is read lazily (an h5ad
in backed mode, a SOMA experiment through :func:`omnicell.data.read_soma`), tokenised with the
chunked passes of :func:`omnicell.pp.tokenize`, and every batch of embeddings is written to the
output file as soon as it is computed; nothing of size (cells x dimensions) is held in memory.

Under ``torchrun`` (``WORLD_SIZE > 1``) rank ``r`` of ``w`` embeds the contiguous share
``shard_slice(n_obs, r, w)`` of the cells (the shard mechanism of ``omnicell embed --shard``) into
a part file; rank 0 then copies the parts, in order, into the output. Every rank tokenises the
whole input itself (the same deterministic gene choice and neighbours, no communication), and a
cell's embedding does not depend on which other cells share its batch, so the output equals the
one-process output.

Output: for an h5ad input, a copy of the input with the embeddings (``obsm``), tokenisation
columns (``var``) and records (``uns['omnicell']``) added, as :func:`omnicell.tl.embed_cells`
writes them; for a SOMA input, the selected cells' ``obs`` (``soma_joinid`` and the requested
columns), the measurement's ``var``, no ``X``, and the same ``obsm``/``uns``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omnicell._core import keys
from omnicell._core.provenance import write_record
from omnicell._engine.embed import embedding_batches, embedding_record, embedding_width, warn_empty_cells
from omnicell._engine.plan import plan_tokenized
from omnicell._engine.split import shard_slice
from omnicell.models import resolve_model
from omnicell.train import init_distributed

__all__ = ["embed_to_file", "open_cells"]

logger = logging.getLogger("omnicell")

_COPY_ROWS = 8192


def _keep_heap_flat() -> None:
    """Fix glibc's mmap threshold, so per-batch arrays do not fragment the heap as cells accumulate.

    glibc raises the threshold above which ``malloc`` uses ``mmap`` each time such a block is freed;
    the per-batch arrays (reads, soft ranks, activations) then come from the heap, whose free space
    fragments, and resident memory creeps up with the number of batches (measured: +0.9 KiB per cell,
    benchmarks/memory.py). A fixed threshold keeps them in ``mmap`` blocks returned to the system when
    freed. Process-wide, so only the command line sets it; other C libraries are unaffected.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl): nothing to do
        pass


def _write_elem(group, key: str, value) -> None:
    try:
        from anndata.io import write_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import write_elem
    if key in group:
        del group[key]
    write_elem(group, key, value)


def _array_dataset(group, key: str, shape: tuple[int, ...]):
    """An float32 array element in anndata's on-disk encoding, filled later."""
    if key in group:
        del group[key]
    chunks = (max(1, min(shape[0], 4096)), *shape[1:]) if shape[0] else None
    dataset = group.create_dataset(key, shape=shape, dtype="float32", chunks=chunks)
    dataset.attrs["encoding-type"] = "array"
    dataset.attrs["encoding-version"] = "0.2.0"
    return dataset


def open_cells(
    source: str | os.PathLike,
    *,
    measurement: str = "RNA",
    x_layer: str | None = None,
    obs_filter: str | None = None,
    obs_columns: Sequence[str] = (),
    obsm_keys: Sequence[str] = (),
):
    """``(AnnData read lazily, "h5ad" or "soma")`` for an h5ad path or a SOMA experiment URI."""
    import anndata as ad

    from omnicell.data import is_soma_uri, read_soma

    text = os.fspath(source)
    if is_soma_uri(text):
        adata = read_soma(
            text, measurement=measurement, x_layer=x_layer, obs_value_filter=obs_filter, obs_columns=obs_columns,
            obsm_keys=obsm_keys,
        )  # fmt: skip
        return adata, "soma"
    if not os.path.exists(text):
        raise FileNotFoundError(f"input {text} does not exist (an .h5ad file or a TileDB-SOMA experiment).")
    if obs_filter or obs_columns or x_layer is not None or measurement != "RNA":
        raise ValueError("--measurement, --x-layer, --obs-filter and --obs-columns apply to a SOMA experiment input.")
    if not text.endswith(".h5ad"):
        raise ValueError(f"input {text} is neither an .h5ad file nor a TileDB-SOMA experiment.")
    return ad.read_h5ad(text, backed="r"), "h5ad"


def embed_to_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model=None,
    tokenize: dict[str, Any] | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    precision: str = "auto",
    projection: float | None = 0.9,
    key_added: str = keys.EMBEDDING,
    store_window: bool = False,
    measurement: str = "RNA",
    x_layer: str | None = None,
    obs_filter: str | None = None,
    obs_columns: Sequence[str] = (),
) -> dict[str, Any]:
    """Tokenise and embed ``source`` into the h5ad ``output``, streaming; under torchrun, one share per rank.

    ``tokenize`` holds the options of :func:`omnicell.pp.tokenize`; the others are those of
    :func:`omnicell.tl.embed_cells` and :func:`omnicell.data.read_soma`. Returns a summary
    (cells, dimensions, processes) on every rank. The output is written to a temporary file beside
    it and renamed at the end; the input is never modified.
    """
    output = Path(output)
    if output.suffix != ".h5ad":
        raise ValueError(f"the output {output} must be an .h5ad file.")
    if os.path.exists(os.fspath(source)) and output.resolve() == Path(source).resolve():
        raise ValueError("the output must differ from the input (the input is never modified).")
    if projection is not None and not 0.0 < float(projection) <= 1.0:
        raise ValueError(f"projection must lie in (0, 1] or be None, got {projection!r}.")
    _keep_heap_flat()
    options = dict(tokenize or {})
    spatial = bool(options.get("spatial", False))
    # Ranks legitimately wait for rank 0 while it assembles the output (a copy of the input h5ad):
    # a generous collective timeout; torchrun stops every rank anyway when one fails.
    context = init_distributed(device, timeout_s=24 * 3600.0)
    try:
        adata, kind = open_cells(
            source, measurement=measurement, x_layer=x_layer, obs_filter=obs_filter, obs_columns=obs_columns,
            obsm_keys=[options.get("spatial_key", keys.SPATIAL)] if spatial else (),
        )  # fmt: skip
        loaded = resolve_model(model)  # loaded before the clock starts
        started = time.perf_counter()
        plan = plan_tokenized(
            adata, loaded, batch_size=batch_size, device=context.device, precision=precision, tokenize_options=options
        )
        width = embedding_width(plan, projection)
        rows = shard_slice(plan.n_obs, context.rank, context.world_size)
        scratch = output.parent / f".{output.name}.omnicell-parts"
        if context.distributed:
            scratch.mkdir(parents=True, exist_ok=True)
            part = scratch / f"part-{context.rank:05d}-of-{context.world_size:05d}.h5"
            _embed_rows(
                plan, projection, rows, part, width=width, key_added=key_added, store_window=store_window,
                offset=rows.start,
            )  # fmt: skip
            context.barrier()
        if context.is_main:
            n_empty = _assemble(
                source, kind, adata, output, plan, projection, width=width, key_added=key_added,
                store_window=store_window, scratch=scratch if context.distributed else None,
                world_size=context.world_size,
            )  # fmt: skip
        if context.is_main:
            warn_empty_cells(n_empty, len(plan.columns), stacklevel=3)
            _finish(
                output, adata, embedding_record(
                    plan, key_added=key_added, projection=projection, n_components=width, store_window=store_window,
                    n_empty=n_empty,
                ),
            )  # fmt: skip
            shutil.rmtree(scratch, ignore_errors=True)
            logger.info(
                # timing only: the one "wrote" line is the command's result line on standard output
                "embed: %d cells in %.1fs on %d process(es)", plan.n_obs, time.perf_counter() - started,
                context.world_size,
            )  # fmt: skip
        context.barrier()
        return {"n_obs": plan.n_obs, "n_components": width, "world_size": context.world_size, "rank": context.rank}
    finally:
        context.close()


def _temporary(output: Path) -> Path:
    return output.parent / f".{output.name}.omnicell-tmp.h5ad"


def _embed_rows(
    plan,
    projection,
    rows: slice,
    path: Path,
    *,
    width: int,
    key_added: str,
    store_window: bool,
    offset: int,
    handle=None,
) -> int:
    """Embed ``rows`` into ``obsm`` datasets of ``path`` (or the open h5py ``handle``), row ``r`` at ``r - offset``."""
    import h5py

    n = rows.stop - rows.start
    owned = handle is None
    handle = h5py.File(path, "w") if owned else handle
    try:
        group = handle.require_group("obsm")
        embedding = _array_dataset(group, key_added, (n, width))
        niche = _array_dataset(group, key_added + keys.NICHE_SUFFIX, (n, width)) if plan.spatial else None
        window = (
            _array_dataset(group, key_added + keys.WINDOW_SUFFIX, (n, plan.n_blocks, width))
            if plan.spatial and store_window
            else None
        )
        n_empty = 0
        for focal, block, empty in embedding_batches(plan, projection, cells=rows):
            where = slice(int(focal[0]) - offset, int(focal[-1]) + 1 - offset)
            embedding[where] = block[:, 0]
            if niche is not None:
                niche[where] = np.nanmean(block, axis=1)
            if window is not None:
                window[where] = block
            n_empty += empty
        handle.attrs["n_empty"] = n_empty
        return n_empty
    finally:
        if owned:
            handle.close()


def _assemble(
    source,
    kind: str,
    adata,
    output: Path,
    plan,
    projection,
    *,
    width: int,
    key_added: str,
    store_window: bool,
    scratch: Path | None,
    world_size: int,
) -> int:
    """Write the output's base (input copy or SOMA skeleton) and its embeddings (computed here or from the parts)."""
    import h5py

    temporary = _temporary(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "h5ad":
            shutil.copyfile(os.fspath(source), temporary)  # the input as it is, X included, in constant memory
        else:
            from anndata import AnnData

            AnnData(obs=adata.obs, var=adata.var, obsm=dict(adata.obsm)).write_h5ad(temporary)
        with h5py.File(temporary, "a") as handle:
            for suffix in ("", keys.NICHE_SUFFIX, keys.WINDOW_SUFFIX):
                if key_added + suffix in handle.get("obsm", {}):
                    del handle["obsm"][key_added + suffix]
            if scratch is None:
                return _embed_rows(
                    plan, projection, slice(0, plan.n_obs), temporary, width=width, key_added=key_added,
                    store_window=store_window, offset=0, handle=handle,
                )  # fmt: skip
            return _copy_parts(
                handle,
                scratch,
                plan,
                world_size=world_size,
                width=width,
                key_added=key_added,
                store_window=store_window,
            )
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _copy_parts(handle, scratch: Path, plan, *, world_size: int, width: int, key_added: str, store_window: bool) -> int:
    """Copy the ranks' part files into the output's obsm, in rank (= cell) order; the summed empty-cell count."""
    import h5py

    names = [key_added] + ([key_added + keys.NICHE_SUFFIX] if plan.spatial else [])
    names += [key_added + keys.WINDOW_SUFFIX] if plan.spatial and store_window else []
    group = handle.require_group("obsm")
    targets = {}
    for key in names:
        shape = (plan.n_obs, plan.n_blocks, width) if key.endswith(keys.WINDOW_SUFFIX) else (plan.n_obs, width)
        targets[key] = _array_dataset(group, key, shape)
    n_empty = 0
    for rank in range(world_size):
        part = scratch / f"part-{rank:05d}-of-{world_size:05d}.h5"
        if not part.exists():
            raise RuntimeError(f"rank {rank} left no embeddings ({part}); see its log.")
        rows = shard_slice(plan.n_obs, rank, world_size)
        with h5py.File(part, "r") as piece:
            n_empty += int(piece.attrs["n_empty"])
            for key, target in targets.items():
                values = piece["obsm"][key]
                for start in range(0, values.shape[0], _COPY_ROWS):
                    stop = min(start + _COPY_ROWS, values.shape[0])
                    target[rows.start + start : rows.start + stop] = values[start:stop]
        part.unlink()
    return n_empty


def _finish(output: Path, adata, record: dict) -> None:
    """Write var, uns and the spatial neighbours next to the embeddings and move the file into place."""
    import h5py

    temporary = _temporary(output)
    try:
        write_record(adata, "embed_cells", record)
        with h5py.File(temporary, "a") as handle:
            var = adata.var.copy()
            adata.strings_to_categoricals(var)  # as write_h5ad does, so the file equals an in-memory run's
            _write_elem(handle, "var", var)
            _write_elem(handle, "uns", dict(adata.uns))
            if keys.OBSM_NEIGHBORS in adata.obsm:
                _write_elem(handle["obsm"], keys.OBSM_NEIGHBORS, np.asarray(adata.obsm[keys.OBSM_NEIGHBORS]))
            elif keys.OBSM_NEIGHBORS in handle["obsm"]:
                del handle["obsm"][keys.OBSM_NEIGHBORS]
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
