"""``oc.get.perturbation_df``: the per-gene effects of a perturbation as one sorted table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd
from anndata import AnnData

from omnicell._core import keys
from omnicell._engine.perturb import ranked_effects

__all__ = ["perturbation_df"]


def perturbation_df(
    adata: AnnData,
    group: str | Sequence[str] | None = None,
    *,
    key: str = keys.PERTURB,
    sort_by: Literal["pval", "effect"] = "pval",
    qval_cutoff: float | None = None,
    include_perturbed: bool = True,
) -> pd.DataFrame:
    """The effects table of :func:`omnicell.tl.perturb_genes` or :func:`omnicell.tl.perturb_niche`, sorted.

    Like :func:`scanpy.get.rank_genes_groups_df`: one row per group and decoded gene, the groups in their
    order, genes sorted within each group.

    Parameters
    ----------
    adata
        AnnData after a perturbation.
    group
        Group(s) to return (default all).
    key
        ``key_added`` of the perturbation.
    sort_by
        ``"pval"``: increasing p-value (the perturbed genes, which have none, last), ties by the absolute
        difference from the null mean; ``"effect"``: decreasing absolute effect.
    qval_cutoff
        Keep the rows with a q-value at most this.
    include_perturbed
        Keep the perturbed genes' own rows (their change is the intervention).

    Returns
    -------
    DataFrame with the columns of ``adata.uns[key]['effects']``.
    """
    return ranked_effects(
        adata, group, key=key, sort_by=sort_by, qval_cutoff=qval_cutoff, include_perturbed=include_perturbed
    )
