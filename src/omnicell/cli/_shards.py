"""Scatter/gather for ``omnicell embed --shard I/N`` and ``omnicell merge``.

A shard is the I-th of N contiguous shares of the cells (as :func:`numpy.array_split`: the first
``n_obs % N`` shares get one more cell). Each shard is embedded from the input opened backed, so only
the shard's rows (and, in spatial mode, its cells' neighbours, found over the whole file) are read;
gene selection and neighbour search use the whole file, exactly as an unsharded run does. Merging the
shards gives the AnnData the unsharded run writes: same cells in the same order, the same float32
embeddings, the same provenance.

The shares are the engine's (:func:`omnicell._engine.split.shard_slice`), which ``torchrun`` ranks
use too (:mod:`omnicell.cli._embed_file`); here are the command line's two ends of it:

- :func:`parse_shard` (``--shard I/N``) and :func:`embed_shard` (one shard as an in-memory AnnData),
- :func:`merge_shards` (the shards, as AnnData objects or files, into one AnnData).
"""

from __future__ import annotations

import copy as _copy
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from omnicell._core import keys
from omnicell._core.provenance import write_record
from omnicell._engine.embed import embed_windows, write_embedding
from omnicell._engine.plan import plan_tokenized
from omnicell._engine.split import shard_slice

__all__ = ["SHARD_RECORD", "embed_shard", "merge_shards", "parse_shard"]

#: ``uns['omnicell'][SHARD_RECORD]`` describes the shard a file holds (absent after merging).
SHARD_RECORD = "shard"


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``, checked (I counts from 0)."""
    parts = str(text).strip().split("/")
    try:
        index, count = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"--shard expects I/N with whole numbers, e.g. 0/3, got {text!r}.") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: I must lie in 0..N-1 (shards count from 0: 0/{max(count, 1)} is the first).")
    return index, count


def _names_digest(names: pd.Index) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(str(name).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _rows(matrix: Any, cells: slice) -> Any:
    """Rows ``cells`` of an in-memory or backed matrix, read without loading the rest."""
    if isinstance(matrix, pd.DataFrame):
        return matrix.iloc[cells].copy()
    block = matrix[cells]
    if sp.issparse(block):
        return block.tocsr() if not isinstance(block, sp.csr_matrix) else block.copy()
    return np.array(block)


def _shard_anndata(adata: AnnData, cells: slice) -> AnnData:
    """The shard's cells as an in-memory AnnData; obs keeps all its categories (so shards concatenate)."""
    part = AnnData(
        X=None if adata.X is None else _rows(adata.X, cells),
        obs=adata.obs.iloc[cells].copy(),
        var=adata.var.copy(),
        uns=_copy.deepcopy(dict(adata.uns)),
        obsm={key: _rows(value, cells) for key, value in adata.obsm.items()},
        varm={key: value for key, value in adata.varm.items()},
        layers={key: _rows(value, cells) for key, value in adata.layers.items()},
    )
    if adata.raw is not None:
        raw = AnnData(X=_rows(adata.raw.X, cells), var=adata.raw.var.copy(), varm=dict(adata.raw.varm))
        raw.obs_names = part.obs_names
        part.raw = raw
    return part


def embed_shard(
    source: str | os.PathLike | AnnData,
    *,
    index: int,
    count: int,
    model: Any = None,
    tokenize: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    device: str | None = None,
    projection: float | None = 0.9,
    key_added: str = keys.EMBEDDING,
    store_window: bool = False,
    precision: str = "auto",
) -> AnnData:
    """Embed shard ``index`` of ``count`` of an h5ad file (opened backed) or of an AnnData.

    Parameters
    ----------
    source
        Path of an ``.h5ad`` file, read backed (the shard's rows and its cells' neighbours only), or an
        AnnData (backed or not; ``tokenize`` writes its records into it).
    index, count
        The shard: ``index`` counts from 0; shares as :func:`shard_slice`.
    model
        Model object, registry name or folder (None: ``oc.settings.default_model``); loaded once.
    tokenize
        Keywords of :func:`omnicell.pp.tokenize`, run over the whole input (gene choice and neighbours
        are those of an unsharded run); None keeps an existing tokenisation (or tokenises with defaults).
    batch_size, device, projection, key_added, store_window, precision
        As in :func:`omnicell.tl.embed_cells`.

    Returns
    -------
    The shard's cells (X, layers, obs, obsm rows; var, varm, uns whole) with the embeddings that
    :func:`omnicell.tl.embed_cells` writes, its record, and ``uns['omnicell']['shard']``: index, count,
    start, stop, the input's ``n_obs`` and a digest of its cell names, and the shard's rows of every
    ``obsp`` graph (merged back by :func:`merge_shards`).
    """
    import anndata as ad

    if projection is not None and not 0.0 < float(projection) <= 1.0:
        raise ValueError(f"projection must lie in (0, 1] or be None, got {projection!r}.")
    if isinstance(source, AnnData):
        adata, name = source, None
    else:
        path = Path(source)
        adata, name = ad.read_h5ad(path, backed="r"), path.name
    try:
        cells = shard_slice(adata.n_obs, index, count)
        plan = plan_tokenized(
            adata, model, batch_size=batch_size, device=device, precision=precision, tokenize_options=tokenize
        )
        window, n_empty = embed_windows(plan, projection, cells=cells)
        part = _shard_anndata(adata, cells)
        write_embedding(
            part, window, plan, key_added=key_added, projection=projection, store_window=store_window, n_empty=n_empty
        )
        write_record(
            part,
            SHARD_RECORD,
            {
                "index": int(index),
                "count": int(count),
                "start": cells.start,
                "stop": cells.stop,
                "n_obs": int(adata.n_obs),
                "obs_names_sha256": _names_digest(adata.obs_names),
                "source": name,
                "obsp": {key: sp.csr_matrix(_rows(graph, cells)) for key, graph in adata.obsp.items()},
            },
        )
    finally:
        if name is not None and adata.isbacked:
            adata.file.close()
    return part


def _read_shard(shard: AnnData | str | os.PathLike) -> tuple[AnnData, str]:
    import anndata as ad

    if isinstance(shard, AnnData):
        return shard, "an AnnData"
    path = Path(shard)
    if not path.is_file():
        raise FileNotFoundError(f"shard file {path} does not exist.")
    return ad.read_h5ad(path), str(path)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[key], b[key]) for key in a)
    if isinstance(a, (np.ndarray, list, tuple)) or isinstance(b, (np.ndarray, list, tuple)):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool((a == b).all()) if a.dtype.kind == b.dtype.kind or a.size == 0 else False
    return bool(a == b)


def _stack(blocks: list[Any]) -> Any:
    if blocks[0] is None:
        return None
    if isinstance(blocks[0], pd.DataFrame):
        return pd.concat(blocks)
    if sp.issparse(blocks[0]):
        stacked = sp.vstack(blocks, format=blocks[0].format)
        return stacked.astype(blocks[0].dtype, copy=False)
    return np.concatenate(blocks, axis=0)


def merge_shards(shards: Sequence[AnnData | str | os.PathLike]) -> AnnData:
    """Gather the shards of one ``embed --shard`` run into the AnnData the unsharded run writes.

    Parameters
    ----------
    shards
        All N shards (files or AnnData objects) in any order.

    Returns
    -------
    One AnnData: the shards' cells in the input's order, their embeddings and records
    (``uns['omnicell']['embed_cells']['n_empty_cells']`` summed), the ``obsp`` graphs rebuilt,
    and no shard record. Raises a ValueError, naming the shard, when one is missing, duplicated,
    from another input or embedded with other parameters.
    """
    if len(shards) == 0:
        raise ValueError("merge needs the shard files (all N of them, e.g. out.0.h5ad out.1.h5ad out.2.h5ad).")
    parts: dict[int, tuple[AnnData, str]] = {}
    reference: tuple[dict, str] | None = None
    for shard in shards:
        adata, label = _read_shard(shard)
        store = adata.uns.get(keys.UNS, {})
        record = store.get(SHARD_RECORD)
        if record is None or "embed_cells" not in store:
            raise ValueError(f"{label} is not a shard of `omnicell embed --shard I/N` (no uns['omnicell']['shard']).")
        index = int(record["index"])
        if reference is None:
            reference = (record, label)
        else:
            first, first_label = reference
            for field in ("count", "n_obs", "obs_names_sha256"):
                if not _equal(record[field], first[field]):
                    raise ValueError(
                        f"{label} does not belong with {first_label}: their {field} differ "
                        f"({record[field]} vs {first[field]}); merge the shards of one run."
                    )
            other = parts[next(iter(parts))][0].uns[keys.UNS]
            for function in ("tokenize", "embed_cells"):
                mine = {k: v for k, v in store.get(function, {}).items() if k != "n_empty_cells"}
                theirs = {k: v for k, v in other.get(function, {}).items() if k != "n_empty_cells"}
                if not _equal(mine, theirs):
                    raise ValueError(
                        f"{label} was made with other {function} parameters than {first_label}; "
                        "embed every shard with the same options and model."
                    )
        if index in parts:
            raise ValueError(f"shard {index}/{record['count']} given twice ({parts[index][1]} and {label}).")
        parts[index] = (adata, label)
    first, _ = reference
    count = int(first["count"])
    missing = sorted(set(range(count)) - set(parts))
    if missing:
        listed = ", ".join(f"{i}/{count}" for i in missing)
        raise ValueError(f"shard(s) {listed} missing: merge needs all {count} shards of the run.")
    ordered = [parts[i][0] for i in range(count)]
    for i, adata in enumerate(ordered):
        expected = shard_slice(int(first["n_obs"]), i, count)
        if adata.n_obs != expected.stop - expected.start:
            raise ValueError(
                f"{parts[i][1]} holds {adata.n_obs} cells; shard {i}/{count} should hold "
                f"{expected.stop - expected.start}."
            )
    return _concatenate(ordered)


def _concatenate(parts: list[AnnData]) -> AnnData:
    head = parts[0]
    uns = _copy.deepcopy(dict(head.uns))
    store = uns[keys.UNS]
    shard_records = [part.uns[keys.UNS][SHARD_RECORD] for part in parts]
    del store[SHARD_RECORD]
    store["embed_cells"]["n_empty_cells"] = type(store["embed_cells"]["n_empty_cells"])(
        sum(int(part.uns[keys.UNS]["embed_cells"]["n_empty_cells"]) for part in parts)
    )
    merged = AnnData(
        X=_stack([part.X for part in parts]),
        obs=pd.concat([part.obs for part in parts]),
        var=head.var.copy(),
        uns=uns,
        obsm={key: _stack([part.obsm[key] for part in parts]) for key in head.obsm},
        varm=dict(head.varm),
        layers={key: _stack([part.layers[key] for part in parts]) for key in head.layers},
        obsp={
            key: _stack([record["obsp"][key] for record in shard_records]).astype(
                shard_records[0]["obsp"][key].dtype, copy=False
            )
            for key in shard_records[0].get("obsp", {})
        },
    )
    if head.raw is not None:
        raw = AnnData(X=_stack([part.raw.X for part in parts]), var=head.raw.var.copy(), varm=dict(head.raw.varm))
        raw.obs_names = merged.obs_names
        merged.raw = raw
    if _names_digest(merged.obs_names) != shard_records[0]["obs_names_sha256"]:
        raise ValueError("the merged cells are not those of the input (shards edited since?); embed the shards again.")
    return merged
