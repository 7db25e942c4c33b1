"""``oc.tl.perturb_niche``: edit cells' spatial neighbourhoods and read the focal cells' change, against a null."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.checks import check_count, check_key_added, check_libraries, resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.provenance import get_record
from omnicell._core.tokenize_record import TokenizeRecord
from omnicell._engine.perturb import N_FOLDS, distance_matched, level_matched_draws
from omnicell._engine.plan import InferencePlan, Precision, plan_tokenized, restore_on_error
from omnicell.models import OmniCellModel
from omnicell.tl._gene_states import gene_index
from omnicell.tl._perturb import (
    cell_groups,
    effect_tables,
    embedding_projection,
    gene_names,
    mean_levels,
    projection_basis,
    run_states,
    select_cells,
    write_results,
)

__all__ = ["perturb_niche"]

logger = logging.getLogger("omnicell")

NULL_CANDIDATES = 5
"""A null replacement is one of this many cells whose distance best matches the removed neighbour's."""


def _label_list(value: object, name: str, categories: pd.Index, groupby: str) -> list[str]:
    labels = [value] if isinstance(value, str) else list(value)
    if not labels or not all(isinstance(label, str) for label in labels):
        raise TypeError(f"{name}= must be a label or a list of labels of obs[{groupby!r}], got {value!r}.")
    unknown = [label for label in labels if label not in categories]
    if unknown:
        raise ValueError(f"{name}= holds {unknown}, not labels of obs[{groupby!r}]; labels: {list(categories)}.")
    return labels


@doc_params
def perturb_niche(
    adata: AnnData | MuData,
    *,
    cells: Sequence[str] | np.ndarray | None = None,
    remove: str | Sequence[str] | bool | None = None,
    replace_with: str | None = None,
    knockout_in_neighbors: str | Sequence[str] | None = None,
    groupby: str | None = None,
    library_key: str | None = None,
    domain_key: str = keys.DOMAIN,
    n_null: int = 20,
    random_state: int | None = 0,
    key_added: str = keys.NICHE_PERTURB,
    store_cells: bool = True,
    model: OmniCellModel | str | os.PathLike | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "auto",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Edit each selected cell's spatial neighbourhood, re-encode its window and read what changes, against a null.

    Spatial mode (:func:`omnicell.pp.tokenize` with ``spatial=True``, run here with the model's spatial
    defaults if ``adata`` was not tokenised; an AnnData tokenised for single cells is refused): a cell is
    read with its neighbours,
    so the model's view of it depends on them. One kind of edit per call, the focal cell itself unchanged:

    * ``remove``: the neighbours whose ``groupby`` label is in ``remove`` (``True``: all) leave the window.
    * ``replace_with``: the removed neighbours (all, when ``remove`` is None) are replaced by cells of that
      label from the same section (``library_key``), each the cell whose distance to the focal cell best
      matches the removed neighbour's (not already in the window; ties in a seeded order).
    * ``knockout_in_neighbors``: these genes are knocked out (soft rank 0) in the neighbours only.

    The focal cell's genes are decoded before and after as in :func:`omnicell.tl.perturb_genes` (each gene
    masked in one of 4 decoding folds, the neighbours unmasked), and its niche embedding (the mean of its
    window's block embeddings, as ``X_omnicell_niche``) is compared. A cell whose window does not change is
    not re-encoded (exact 0). The null: ``n_null`` draws that remove the same number of random neighbours
    of each cell (replaced, with ``replace_with``, by random cells of the section at matched distances:
    one of the 5 best matches), or knock out level-matched random genes in the neighbours; p-values and
    q-values as in :func:`omnicell.tl.perturb_genes`.

    Parameters
    ----------
    adata
        Cells x genes with coordinates, tokenised with ``spatial=True`` (or not tokenised yet).
    cells
        Focal cells: a boolean mask or obs names; None for all.
    remove
        Label(s) of ``groupby`` whose neighbours are removed, or True for all neighbours.
    replace_with
        Label of ``groupby`` whose cells replace the removed neighbours.
    knockout_in_neighbors
        Gene(s) (``adata.var_names``) to knock out in the neighbours.
    groupby
        ``obs`` column of the labels of ``remove`` and ``replace_with`` (required with labels); the
        tables are per group of the focal cells' label in it (None: one group ``"all"``).
    library_key
        ``obs`` column of each cell's section; None uses the tokenisation's (or one section).
    domain_key
        ``obs`` column of :func:`omnicell.tl.spatial_domains`; when present, each cell's domain before and
        after is the nearest domain centroid in the representation the domains were found in.
    n_null
        Null draws (at least 2).
    random_state
        Seed of the edits' tie-breaks, the null draws and the decoding folds; None uses ``oc.settings.seed``.
    key_added
        Key of the results (below).
    store_cells
        Write the per-cell change of each decoded gene as a sparse layer.
    {doc_model}
    {doc_batch_size}
    {doc_device}
    {doc_precision}
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.obs[key_added + '_shift']``
        Cosine distance between each cell's niche embedding before and after; NaN for cells not selected,
        exactly 0 for selected cells whose window does not change.
    ``adata.obsm[key_added]``
        (n_obs, m) float32 edited niche embeddings; NaN rows for cells not selected.
    ``adata.obs[key_added + '_domain_before']``, ``adata.obs[key_added + '_domain_after']``
        (with ``obs[domain_key]``) the nearest domain centroid before and after (NaN for cells not selected).
    ``adata.layers[key_added]``
        (``store_cells``) sparse CSR float32 change of the decoded value of each of the focal cell's genes.
    ``adata.uns[key_added]``
        ``effects`` and ``shift`` as in :func:`omnicell.tl.perturb_genes`; ``edit``: DataFrame per
        group: ``group``, ``n_cells``, ``n_affected``, ``n_removed`` and ``n_replaced`` (mean per
        cell) or, for a knockout, ``genes`` as in :func:`omnicell.tl.perturb_genes` over the
        neighbours; ``params``.
    ``adata.uns['omnicell']['perturb_niche']``
        Parameters and the model identity.
    """
    container, adata = resolve_modality(adata, mod, "perturb_niche")
    record = TokenizeRecord.read(adata)
    if record is not None and not record.spatial:
        raise ValueError(
            "perturb_niche edits spatial neighbourhoods, but adata was tokenised for single cells: run "
            "oc.pp.tokenize(adata, model, spatial=True) first."
        )
    edits_window = remove is not None or replace_with is not None
    if edits_window == (knockout_in_neighbors is not None):
        raise ValueError(
            "Pass remove= and/or replace_with= (edit the neighbours) or knockout_in_neighbors= (genes in the "
            "neighbours): one kind of edit per call."
        )
    if remove is False:
        raise ValueError("remove= must be True (all neighbours), a label or a list of labels, or None.")
    needs_labels = (remove is not None and remove is not True) or replace_with is not None
    if needs_labels and groupby is None:
        raise ValueError("groupby= must name the obs column of the labels given to remove= / replace_with=.")
    codes, labels = cell_groups(adata, groupby)
    label_of = adata.obs[groupby].astype(str).to_numpy() if groupby is not None else None
    categories = pd.Index(pd.unique(label_of)) if label_of is not None else pd.Index([])
    removed_labels = _label_list(remove, "remove", categories, groupby) if needs_labels and remove is not None else None
    if replace_with is not None:
        _label_list(replace_with, "replace_with", categories, groupby)
        if not isinstance(replace_with, str):
            raise TypeError(f"replace_with= must be one label, got {replace_with!r}.")
    names = gene_names(adata, knockout_in_neighbors) if knockout_in_neighbors is not None else None
    selected = select_cells(adata, cells)
    sections = check_libraries(adata, library_key if library_key is not None or record is None else record.library_key)
    n_null = check_count(n_null, "n_null", minimum=2)
    seed = resolve_random_state(random_state, "perturb_niche")
    check_key_added(key_added)
    domains = _domain_source(adata, domain_key)
    if copy:
        container, adata = copy_target(container, adata, mod)
    started = time.perf_counter()
    with restore_on_error(adata):
        plan = plan_tokenized(
            adata, model, batch_size=batch_size, device=device, precision=precision,
            tokenize_options=None if record is not None else {"spatial": True},
        )  # fmt: skip
        index = gene_index(adata, plan)
        projection = embedding_projection(adata)
        basis = projection_basis(plan, projection)
        rows = np.flatnonzero(selected)
        tables = {}
        if names is not None:
            targets = pd.Index(index.names).get_indexer(names)
            tokenised = targets[targets >= 0]
            levels = mean_levels(plan, index.lookup, rows, len(index), 0.0, neighbors=True)
            rng = np.random.default_rng(seed)
            draws = level_matched_draws(levels.mean, tokenised, n_null, rng) if len(tokenised) else []
            states = [tokenised, *draws] if len(tokenised) else [tokenised] * (1 + n_null)
            edit = _neighbor_knockout(states, index.lookup)
            tables["genes"] = pd.DataFrame(
                {
                    "gene": names,
                    "tokenized": targets >= 0,
                    "n_cells": np.where(targets >= 0, levels.n_cells[np.maximum(targets, 0)], 0).astype(np.int64),
                    "n_perturbed": np.where(targets >= 0, levels.n_changed[np.maximum(targets, 0)], 0).astype(np.int64),
                    "mean_level": np.where(targets >= 0, levels.mean[np.maximum(targets, 0)], np.nan),
                }
            )
            excluded = states
        else:
            in_section = sections if sections is not None else np.zeros(adata.n_obs, dtype=np.int64)
            windows = _WindowEdit(plan, in_section, label_of, removed_labels, replace_with, seed)
            edit = windows.edit
            excluded = [np.empty(0, dtype=np.int64)] * (1 + n_null)
        run = run_states(
            plan, index.lookup, len(index), rows, codes, len(labels), 1 + n_null, edit, seed, basis, niche=True
        )
    # In the neighbours, not the focal cell: every focal gene is decoded, none is an intervention.
    effects, shifts = effect_tables(run.sums, excluded, index.names, labels, np.empty(0, dtype=np.int64))
    tables = {"effects": effects, "shift": shifts, **tables}
    if names is None:
        tables["edit"] = windows.table(rows, codes, labels)
    domain_columns = _nearest_domains(adata, domains, run, domain_key)
    params = {
        "remove": True if remove is True else (np.asarray(removed_labels, dtype=str) if removed_labels else None),
        "replace_with": replace_with,
        "knockout_in_neighbors": None if names is None else np.asarray(names, dtype=str),
        "groupby": groupby,
        "library_key": library_key if library_key is not None or record is None else record.library_key,
        "n_null": n_null,
        "random_state": seed,
        "n_cells": int(selected.sum()),
        "projection": projection,
        "n_folds": N_FOLDS,
        "domain_key": domain_key if domain_columns else None,
    }
    write_results(
        adata, "perturb_niche", run, plan, tables=tables, params=params, key_added=key_added,
        store_cells=store_cells, var_rows=index.var_rows,
    )  # fmt: skip
    for suffix, values in domain_columns.items():
        adata.obs[key_added + suffix] = values
    logger.info(
        "perturb_niche: %d cells (%d affected), %d null draws, %.1fs; added .obs[%r]%s, .obsm[%r], .uns[%r]",
        len(rows), int(run.sums.n_affected.sum()), n_null, time.perf_counter() - started,
        key_added + keys.SHIFT_SUFFIX, " and the domains before/after" if domain_columns else "", key_added, key_added,
    )  # fmt: skip
    return finish(container, adata, copy=copy)


def _domain_source(adata: AnnData, domain_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(domain labels, representation) the domains were found in, or None (logged) when there is none."""
    if domain_key not in adata.obs:
        logger.info("perturb_niche: no obs[%r] (oc.tl.spatial_domains); domains before/after skipped", domain_key)
        return None
    record = get_record(adata, "spatial_domains", domain_key) or {}
    use_rep = record.get("use_rep", keys.EMBEDDING + keys.NICHE_SUFFIX)
    if use_rep not in adata.obsm:
        logger.info("perturb_niche: obsm[%r] (the domains' representation) is missing; domains skipped", use_rep)
        return None
    return adata.obs[domain_key].astype(str).to_numpy(), np.asarray(adata.obsm[use_rep], dtype=np.float64)


def _nearest_domains(adata: AnnData, domains, run, domain_key: str) -> dict[str, pd.Categorical]:
    if domains is None:
        return {}
    labels, representation = domains
    if representation.shape[1] != run.embedding.shape[1]:
        logger.info(
            "perturb_niche: obs[%r] was found in a %d-dimensional representation, not the %d-dimensional niche "
            "embedding; domains skipped", domain_key, representation.shape[1], run.embedding.shape[1],
        )  # fmt: skip
        return {}
    names = np.asarray(sorted(set(labels)))
    centroids = np.stack([np.nanmean(representation[labels == name], axis=0) for name in names])
    selected = np.isfinite(run.shift)
    result = {}
    for suffix, embedding in (("_domain_before", run.before), ("_domain_after", run.embedding)):
        nearest = np.full(adata.n_obs, None, dtype=object)
        distance = ((embedding[selected, None, :] - centroids[None]) ** 2).sum(-1)
        nearest[selected] = names[np.argmin(distance, axis=1)]
        result[suffix] = pd.Categorical(nearest, categories=names)
    return result


def _neighbor_knockout(states: list[np.ndarray], lookup: np.ndarray):
    def edit(state, focal, batch, candidates):
        neighbor_genes = np.where(batch.cell_index >= 1, lookup[np.clip(batch.tokens, 0, len(lookup) - 1)], -1)
        hit = np.isin(neighbor_genes, states[state]) & (neighbor_genes >= 0)
        edited = np.where(hit, np.float32(0.0), batch.values)
        affected = np.flatnonzero((edited != batch.values).any(1))
        return affected, dataclasses.replace(batch.take(affected), values=edited[affected]), None

    return edit


@dataclasses.dataclass
class _WindowEdit:
    """Removal / replacement of each focal cell's neighbours: the observed edit (state 0) and null draws."""

    plan: InferencePlan
    sections: np.ndarray
    labels: np.ndarray | None
    removed_labels: list[str] | None
    replace_with: str | None
    seed: int

    def __post_init__(self) -> None:
        self.neighbors, self.coordinates = self.plan.neighbors, self.plan.coordinates
        self.n_removed: dict[int, int] = {}
        self.n_replaced: dict[int, int] = {}

    def window(self, state: int, row: int) -> np.ndarray:
        """The edited neighbours of the cell at ``row`` in ``state``; a function of (seed, row, state) only."""
        neighbors = self.neighbors[row]
        present = neighbors >= 0
        if self.removed_labels is None:  # remove=True, or replace_with alone: every neighbour
            removed = present.copy()
        else:
            removed = present & np.isin(self.labels[np.maximum(neighbors, 0)], self.removed_labels)
        rng = np.random.default_rng([self.seed, row, state])
        if state > 0:  # the null: as many random neighbours
            slots = rng.choice(np.flatnonzero(present), int(removed.sum()), replace=False)
            removed = np.zeros_like(present)
            removed[slots] = True
        edited = np.where(removed, -1, neighbors)
        if self.replace_with is not None and removed.any():
            pool = self.sections == self.sections[row]
            if state == 0:
                pool &= self.labels == self.replace_with
            pool[neighbors[present]] = False
            pool[row] = False
            chosen = distance_matched(
                self.coordinates, row, neighbors[removed], np.flatnonzero(pool), rng,
                n_best=1 if state == 0 else NULL_CANDIDATES,
            )  # fmt: skip
            edited[np.flatnonzero(removed)] = chosen
        if state == 0:
            self.n_removed[row] = int(removed.sum())
            self.n_replaced[row] = int((edited[removed] >= 0).sum()) if self.replace_with is not None else 0
        return edited

    def edit(self, state, focal, batch, candidates):
        edited = np.stack([self.window(state, int(row)) for row in focal])
        affected = np.flatnonzero((edited != self.neighbors[focal]).any(1))
        return affected, self.plan.token_batch(focal[affected], edited[affected]), None

    def table(self, rows: np.ndarray, codes: np.ndarray, labels: pd.Index) -> pd.DataFrame:
        removed = np.array([self.n_removed[int(r)] for r in rows], dtype=np.float64)
        replaced = np.array([self.n_replaced[int(r)] for r in rows], dtype=np.float64)
        groups = codes[rows]
        frame = pd.DataFrame({"group": np.asarray(labels)[np.maximum(groups, 0)], "removed": removed,
                              "replaced": replaced, "affected": removed > 0})[groups >= 0]  # fmt: skip
        summary = frame.groupby("group", sort=False).agg(
            n_cells=("removed", "size"), n_affected=("affected", "sum"),
            n_removed=("removed", "mean"), n_replaced=("replaced", "mean"),
        )  # fmt: skip
        return summary.reset_index().astype({"n_cells": np.int64, "n_affected": np.int64})
