"""Tools that read the cells through the model tokenise them first when the user did not.

:func:`omnicell.pp.tokenize` sits beside ``tl``, above the loader, so the loader never calls it:
the tools do, here, after their options were checked (a bad device or precision writes nothing).
"""

from __future__ import annotations

import os

import torch
from anndata import AnnData

from .._loader import InferencePlan, Precision, check_options, plan_inference
from .._tokenization import TokenizeRecord
from ..models import OmniCellModel, resolve_model
from ..pp import tokenize

__all__ = ["ensure_tokenized", "plan_tokenized"]


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
) -> InferencePlan:
    """:func:`~omnicell._loader.plan_inference`, tokenising with the defaults first when needed."""
    check_options(batch_size=batch_size, device=device, precision=precision)
    loaded = ensure_tokenized(adata, model)
    return plan_inference(adata, loaded, batch_size=batch_size, device=device, precision=precision)
