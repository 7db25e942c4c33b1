"""The plan of a pass of the model over the cells of an AnnData, shared by ``tl``, ``get``, ``train`` and ``cli``.

:func:`plan_inference` validates a tokenised AnnData against the model and the options (writing
nothing) and returns an :class:`InferencePlan`, whose :meth:`~InferencePlan.batches` runs the
model batch by batch; :func:`plan_tokenized` first tokenises with the defaults when the user did
not (:func:`omnicell.pp.tokenize`, which lives in :mod:`omnicell._engine.tokenize` so that
``train`` can use it too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch
from anndata import AnnData

from omnicell._core import keys
from omnicell._core.adata import expression_source
from omnicell._core.checks import check_coordinates, check_count
from omnicell._core.progress import progress as track_progress
from omnicell._core.provenance import obs_names_fingerprint
from omnicell._core.settings import settings
from omnicell._core.tokenize_record import TokenizeRecord
from omnicell._engine.pipeline import auto_batch_size, device_batches
from omnicell._engine.tokenize import tokenize
from omnicell.data import TokenBatch, batch_for_cells
from omnicell.models import OmniCellModel, resolve_device, resolve_model
from omnicell.nn import ForwardOutput

__all__ = [
    "InferencePlan",
    "Precision",
    "check_options",
    "ensure_tokenized",
    "plan_inference",
    "plan_tokenized",
    "restore_on_error",
]

Precision = Literal["auto", "float32", "bfloat16", "float16"]
PRECISIONS = ("auto", "float32", "bfloat16", "float16")


@dataclasses.dataclass
class InferencePlan:
    """Everything needed to run the model over an AnnData that :func:`omnicell.pp.tokenize` prepared.

    Built by :func:`plan_inference`, which validates the AnnData; iterate with :meth:`batches`.
    """

    model: OmniCellModel
    matrix: object
    columns: np.ndarray
    gene_tokens: np.ndarray
    zero_fill: np.ndarray | None
    n_genes: int
    neighbors: np.ndarray | None
    coordinates: np.ndarray | None
    batch_size: int
    device: torch.device
    autocast_dtype: torch.dtype | None
    where: str
    num_workers: int = 0

    @property
    def n_obs(self) -> int:
        return self.matrix.shape[0]

    @property
    def spatial(self) -> bool:
        return self.neighbors is not None

    @property
    def n_blocks(self) -> int:
        """Cell blocks per sequence: 1, or 1 + k in spatial mode."""
        return 1 if self.neighbors is None else 1 + self.neighbors.shape[1]

    @property
    def precision(self) -> str:
        return "float32" if self.autocast_dtype is None else str(self.autocast_dtype).removeprefix("torch.")

    def token_batch(self, focal: np.ndarray, neighborhood: np.ndarray | None = None) -> TokenBatch:
        """Model inputs for the ``focal`` cells (with their neighbours in spatial mode, or ``neighborhood``)."""
        return batch_for_cells(
            self.matrix,
            focal,
            self.columns,
            self.gene_tokens,
            rna_start=self.model.vocab.rna_start,
            rna_end=self.model.vocab.rna_end,
            neighbors=self.neighbors,
            coordinates=self.coordinates,
            zero_fill=self.zero_fill,
            n_genes=self.n_genes,
            where=self.where,
            neighborhood=neighborhood,
        )

    def batches(
        self, *, return_attention: bool = False, description: str = "omnicell", cells: slice | None = None
    ) -> Iterator[tuple[np.ndarray, TokenBatch, dict[str, torch.Tensor | None], ForwardOutput]]:
        """Yield ``(focal cells, token batch, its tensors on the device, model output)`` in cell order.

        ``cells`` restricts the pass to the batches of the full pass that overlap a contiguous range of
        cells (one shard): batches keep the full pass's composition, so every cell's output is bit for bit
        the one of an unsharded run, and the first and last batch may hold cells outside ``cells`` that
        the caller drops. Neighbours are read from the whole AnnData. Runs under ``torch.inference_mode``; the
        forward pass uses autocast when planned, so callers pool in float32 outside it.
        """
        first, stop, _ = (cells or slice(None)).indices(self.n_obs)
        progress = track_progress(total=max(stop - first, 0), unit="cells", desc=description)
        with torch.inference_mode(), progress:
            batches = device_batches(
                self.token_batch,
                range(first - first % self.batch_size, stop, self.batch_size),
                self.n_obs,
                self.batch_size,
                self.device,
                num_workers=self.num_workers,
            )
            for focal, batch, tensors in batches:
                output = self.forward(tensors, return_attention=return_attention)
                yield focal, batch, tensors, output
                progress.update(int(np.count_nonzero((focal >= first) & (focal < stop))))

    def forward(self, tensors: Mapping[str, torch.Tensor | None], *, return_attention: bool = False) -> ForwardOutput:
        """One forward pass over ``tensors`` (:meth:`TokenBatch.to_torch` on the device), with the planned autocast.

        For callers that build or edit their own batches (e.g. in-silico perturbation); run it under
        ``torch.inference_mode``.
        """
        network = self.model.network
        network.to(self.device).eval()
        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            return network(
                tensors["tokens"],
                tensors["values"],
                tensors["positions"],
                tensors["padding_mask"],
                return_attention=return_attention,
            )


def check_options(
    *, batch_size: int | None, device: str | torch.device | None, precision: Precision
) -> tuple[int, torch.device, torch.dtype | None]:
    """``(batch size, device, autocast dtype)`` of a pass, or a clear error (before anything is written)."""
    batch_size = check_count(batch_size if batch_size is not None else settings.batch_size, "batch_size")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    torch_device = resolve_device(device)
    if precision == "float16" and torch_device.type == "cpu":
        raise ValueError(
            "precision='float16' is not supported on the CPU (half-precision matmuls); use 'float32' or 'bfloat16' "
            "there, or 'auto'."
        )
    if precision == "auto":
        autocast_dtype = torch.bfloat16 if torch_device.type == "cuda" else None
    else:
        autocast_dtype = None if precision == "float32" else getattr(torch, precision)
    return batch_size, torch_device, autocast_dtype


_TOKENIZE_VAR = (keys.VAR_GENE_ID, keys.VAR_TOKEN, keys.VAR_SELECTED)


@contextlib.contextmanager
def restore_on_error(adata: AnnData) -> Iterator[None]:
    """Undo what an implicit :func:`omnicell.pp.tokenize` (run by a tool before planning) wrote, on error.

    Tools validate their arguments first, but some inputs (e.g. genes a tokenisation will not
    select) can only be checked after tokenising; wrapped in this, such an error leaves ``adata``
    as it was.
    """
    var = {key: adata.var[key].copy() for key in _TOKENIZE_VAR if key in adata.var}
    neighbors = adata.obsm.get(keys.OBSM_NEIGHBORS)
    had_store = keys.UNS in adata.uns
    store = dict(adata.uns.get(keys.UNS, {}))
    try:
        yield
    except BaseException:
        for key in _TOKENIZE_VAR:
            if key in var:
                adata.var[key] = var[key]
            elif key in adata.var:
                del adata.var[key]
        if neighbors is not None:
            adata.obsm[keys.OBSM_NEIGHBORS] = neighbors
        else:
            adata.obsm.pop(keys.OBSM_NEIGHBORS, None)
        if had_store:
            adata.uns[keys.UNS] = store
        else:
            adata.uns.pop(keys.UNS, None)
        raise


def plan_inference(
    adata: AnnData,
    model: OmniCellModel | str | os.PathLike | None,
    *,
    batch_size: int | None,
    device: str | torch.device | None,
    precision: Precision,
) -> InferencePlan:
    """Validate ``adata`` against its tokenisation and ``model``; writes nothing.

    ``adata`` must have been tokenised (:func:`omnicell.pp.tokenize`); the tools that tokenise
    with the defaults when it was not do so before calling this (``tl._tokenized``).
    """
    given_batch_size = batch_size
    batch_size, torch_device, autocast_dtype = check_options(batch_size=batch_size, device=device, precision=precision)
    loaded = resolve_model(model)
    record = TokenizeRecord.read(adata)
    if record is None:
        raise KeyError("adata has not been tokenised; run oc.pp.tokenize(adata, model) first.")
    if record.vocab_sha256 != loaded.vocab.sha256():
        raise ValueError(
            f"adata was tokenised with model {record.model!r}, whose vocabulary differs from that of "
            f"{loaded.name!r}. Run oc.pp.tokenize(adata, model) with the model you use here."
        )
    matrix, var, where = expression_source(adata, layer=record.layer, use_raw=record.use_raw)
    columns = var.index.get_indexer(record.genes)
    if (columns < 0).any():
        raise ValueError(
            "Some genes chosen by tokenize are no longer in adata.var_names (subset or renamed since?). "
            "Run oc.pp.tokenize again."
        )
    neighbors = coordinates = None
    if record.spatial:
        if keys.OBSM_NEIGHBORS not in adata.obsm:
            raise KeyError(f"Spatial tokenisation left no obsm[{keys.OBSM_NEIGHBORS!r}]; run oc.pp.tokenize again.")
        neighbors = np.asarray(adata.obsm[keys.OBSM_NEIGHBORS], dtype=np.int64)
        if neighbors.shape[0] != adata.n_obs or neighbors.min() < -1 or neighbors.max() >= adata.n_obs:
            raise ValueError(
                f"obsm[{keys.OBSM_NEIGHBORS!r}] does not fit the cells (subset since?); run oc.pp.tokenize again."
            )
        # The neighbours are row indices: any reordering, subsetting or concatenation of the cells since
        # tokenize would silently give every cell another cell's neighbours. The record fingerprints the
        # cell names in order.
        fingerprint = record.obs_names_sha256
        if fingerprint is not None and fingerprint != obs_names_fingerprint(adata.obs_names):
            raise ValueError(
                f"The cells of adata are not those, in that order, that oc.pp.tokenize found the spatial neighbours "
                f"of (obsm[{keys.OBSM_NEIGHBORS!r}]): they were reordered, subset or concatenated since. "
                "Run oc.pp.tokenize(adata, spatial=True, ...) again on the cells as they are now."
            )
        coordinates = check_coordinates(adata, str(record.spatial_key)) * record.coord_scale
    if given_batch_size is None and not settings._batch_size_set and torch_device.type == "cuda":
        # Not given: as many sequences as half the free device memory holds (CPU keeps the setting).
        free_bytes, _ = torch.cuda.mem_get_info(torch_device)
        n_blocks = 1 if neighbors is None else 1 + neighbors.shape[1]
        batch_size = auto_batch_size(
            free_bytes,
            tokens_per_sequence=n_blocks * (record.n_genes + 2),
            d_model=loaded.config.d_model,
            hidden_dim=int(loaded.config.hidden_dim),
            bytes_per_value=4 if autocast_dtype is None else 2,
        )
    return InferencePlan(
        model=loaded,
        matrix=matrix,
        columns=columns,
        gene_tokens=record.token_ids,
        zero_fill=record.zero_fill,
        n_genes=record.n_genes,
        neighbors=neighbors,
        coordinates=coordinates,
        batch_size=batch_size,
        device=torch_device,
        autocast_dtype=autocast_dtype,
        where=where,
        num_workers=settings.num_workers,
    )


def ensure_tokenized(adata: AnnData, model: OmniCellModel | str | os.PathLike | None, **options) -> OmniCellModel:
    """The loaded model, after running :func:`omnicell.pp.tokenize` (its defaults, or ``options``) if it never ran."""
    loaded = resolve_model(model)
    if TokenizeRecord.read(adata) is None:
        tokenize(adata, loaded, **options)
    return loaded


def plan_tokenized(
    adata: AnnData,
    model: OmniCellModel | str | os.PathLike | None,
    *,
    batch_size: int | None,
    device: str | torch.device | None,
    precision: Precision,
    tokenize_options: Mapping[str, Any] | None = None,
) -> InferencePlan:
    """:func:`plan_inference` after tokenising: with ``tokenize_options`` when given, else with the defaults if needed.

    The options of the pass are checked first, so a bad device or precision writes nothing.
    """
    check_options(batch_size=batch_size, device=device, precision=precision)
    if tokenize_options is None:
        loaded = ensure_tokenized(adata, model)
    else:
        loaded = resolve_model(model)
        tokenize(adata, loaded, **tokenize_options)
    return plan_inference(adata, loaded, batch_size=batch_size, device=device, precision=precision)
