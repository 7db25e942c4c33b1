"""``oc.get.perturbation_df``: the per-gene effects of a perturbation as one sorted table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from omnicell._core import keys

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
    result = adata.uns.get(key)
    if not isinstance(result, dict) or "effects" not in result:
        raise KeyError(f"No perturbation in adata.uns[{key!r}]; run oc.tl.perturb_genes or oc.tl.perturb_niche first.")
    if sort_by not in ("pval", "effect"):
        raise ValueError(f"sort_by must be 'pval' or 'effect', got {sort_by!r}.")
    table = pd.DataFrame(result["effects"])
    order = list(dict.fromkeys(table["group"].astype(str)))
    if group is not None:
        wanted = [group] if isinstance(group, str) else list(group)
        unknown = [g for g in wanted if g not in order]
        if unknown:
            raise ValueError(f"groups {unknown} are not in the perturbation's table; groups: {order}.")
        order = wanted
    table = table[table["group"].astype(str).isin(order)]
    if not include_perturbed:
        table = table[~table["perturbed"].astype(bool)]
    if qval_cutoff is not None:
        table = table[table["qval"] <= qval_cutoff]
    distance = np.abs(table["effect"] - table["null_mean"]) if sort_by == "pval" else np.abs(table["effect"])
    table = table.assign(
        _group=pd.Categorical(table["group"].astype(str), categories=order),
        _first=table["pval"].fillna(np.inf) if sort_by == "pval" else -distance,
        _second=-distance,
    )
    table = table.sort_values(["_group", "_first", "_second"], kind="stable")
    return table.drop(columns=["_group", "_first", "_second"]).reset_index(drop=True)
