"""``oc.get.search_results``: the hits ``oc.tl.search`` wrote into an AnnData, as a long table."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from omnicell._core import keys
from omnicell._core.checks import check_adata
from omnicell._core.provenance import get_record
from omnicell.data import ReferenceIndex

__all__ = ["search_results"]


def search_results(
    adata: AnnData,
    index: ReferenceIndex | str | os.PathLike,
    *,
    key: str = keys.SEARCH,
    obs_keys: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """The table :func:`omnicell.tl.search` returns, rebuilt from the slots it wrote.

    Parameters
    ----------
    adata
        An AnnData searched with :func:`omnicell.tl.search`.
    index
        The index it was searched against (a :class:`omnicell.data.ReferenceIndex` or its saved
        folder or tar): the reference cell names and obs columns come from it.
    key
        The search's ``key_added``.
    obs_keys
        Reference ``obs`` columns to add; None: all that the index stores.

    Returns
    -------
    One row per query cell and rank: ``query``, ``rank`` (0 = nearest), ``reference``,
    ``reference_row``, ``distance`` and the ``obs_keys`` columns.
    """
    adata = check_adata(adata, "search_results")
    slots = [key + "_indices", key + "_distances"]
    record = get_record(adata, "search", key=key)
    if record is None or any(slot not in adata.obsm for slot in slots):
        raise KeyError(
            f"search_results: no search results under key {key!r} (obsm {slots}); run oc.tl.search(adata, index) "
            "first, or pass key= its key_added."
        )
    if not isinstance(index, ReferenceIndex):
        index = ReferenceIndex.load(index)
    if str(record.get("sha256")) != index.sha256:
        raise ValueError(
            f"search_results: the hits under {key!r} were found in another reference (SHA-256 "
            f"{str(record.get('sha256'))[:12]}..., this index {index.sha256[:12]}...); "
            "pass the index that was searched."
        )
    indices = np.asarray(adata.obsm[slots[0]])
    return index.table(indices, np.asarray(adata.obsm[slots[1]]), adata.obs_names, obs_keys=obs_keys)
