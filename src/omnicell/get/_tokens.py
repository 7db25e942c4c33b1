"""``oc.get.token_batch``: the exact model inputs of some cells, for inspection or custom models."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _keys
from .._provenance import get_record
from .._validate import check_coordinates, get_matrix
from ..data import TokenBatch, batch_for_cells
from ..models import OmniCellModel, resolve_model

__all__ = ["token_batch"]


def token_batch(
    adata: AnnData,
    cells: np.ndarray | list[int] | slice | None = None,
    model: OmniCellModel | str | None = None,
) -> TokenBatch:
    """Token ids, soft-rank values and positions that :func:`omnicell.tl.embed_cells` feeds the model.

    Parameters
    ----------
    adata
        An AnnData processed by :func:`omnicell.pp.tokenize`.
    cells
        Integer positions of the (focal) cells; None takes all cells (mind the memory).
    model
        Model whose special tokens are used; None uses ``oc.settings.default_model``.

    Returns
    -------
    A :class:`omnicell.data.TokenBatch` with one sequence per requested cell.
    """
    record = get_record(adata, "tokenize")
    if record is None:
        raise KeyError("adata has not been tokenised; run oc.pp.tokenize(adata) first.")
    loaded = resolve_model(model)
    focal = np.atleast_1d(np.arange(adata.n_obs)[cells if cells is not None else slice(None)])
    spatial = bool(record["spatial"])
    return batch_for_cells(
        get_matrix(adata, record.get("layer")),
        focal,
        adata.var_names.get_indexer(np.asarray(record["genes"], dtype=str)),
        np.asarray(record["token_ids"], dtype=np.int64),
        rna_start=loaded.vocab.rna_start,
        rna_end=loaded.vocab.rna_end,
        neighbors=np.asarray(adata.obsm[_keys.OBSM_NEIGHBORS]) if spatial else None,
        coordinates=check_coordinates(adata, str(record["spatial_key"])) if spatial else None,
    )
