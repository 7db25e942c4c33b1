"""``oc.get.token_batch``: the exact model inputs of some cells, for inspection or custom models."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from omnicell._core.tokenize_record import TokenizeRecord
from omnicell._engine.plan import plan_inference
from omnicell.data import TokenBatch
from omnicell.models import OmniCellModel

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
    if TokenizeRecord.read(adata) is None:
        raise KeyError("adata has not been tokenised; run oc.pp.tokenize(adata) first.")
    try:
        focal = np.atleast_1d(np.arange(adata.n_obs)[cells if cells is not None else slice(None)])
    except IndexError:
        raise IndexError(
            f"cells={cells!r} asks for positions outside the {adata.n_obs} cells of adata (0 to {adata.n_obs - 1})."
        ) from None
    if focal.size == 0:
        raise ValueError(f"cells={cells!r} selects no cell; pass integer positions in 0 to {adata.n_obs - 1}.")
    plan = plan_inference(adata, model, batch_size=None, device="cpu", precision="float32")
    return plan.token_batch(focal)
