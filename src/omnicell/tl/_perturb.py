"""``oc.tl.perturb_genes``: zero-shot in-silico knockout / overexpression, with per-gene effects against a null."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from scipy import stats

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.checks import check_count, check_key_added, check_number, resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.groups import group_codes
from omnicell._core.provenance import get_record, write_record
from omnicell._engine.perturb import (
    N_FOLDS,
    concat_batches,
    cosine_distance,
    decoding_folds,
    encode,
    focal_candidates,
    level_matched_draws,
)
from omnicell._engine.plan import InferencePlan, Precision, plan_tokenized, restore_on_error
from omnicell.data import SOFT_RANK_HIGH, TokenBatch
from omnicell.models import OmniCellModel
from omnicell.tl._gene_states import gene_index

__all__ = ["perturb_genes"]

logger = logging.getLogger("omnicell")

MODES = ("knockout", "overexpress", "set")
DEFAULT_PROJECTION = 0.9  # embed_cells' default, used when it has not run


def select_cells(adata: AnnData, cells: object) -> np.ndarray:
    """Boolean mask of the cells named by ``cells`` (None: all; a boolean mask; obs names), or a clear error."""
    if cells is None:
        return np.ones(adata.n_obs, dtype=bool)
    values = np.asarray(cells)
    if values.dtype == bool:
        if values.shape != (adata.n_obs,):
            raise ValueError(
                f"cells= as a boolean mask must have one entry per cell ({adata.n_obs}), got {values.shape}."
            )
        mask = values.copy()
    else:
        names = pd.Index(np.atleast_1d(values).astype(str))
        if names.has_duplicates:
            raise ValueError(f"cells= names some cells twice: {list(names[names.duplicated()].unique()[:5])}.")
        rows = adata.obs_names.get_indexer(names)
        if (rows < 0).any():
            raise KeyError(f"cells= holds names that are not in adata.obs_names: {list(names[rows < 0][:5])}.")
        mask = np.zeros(adata.n_obs, dtype=bool)
        mask[rows] = True
    if not mask.any():
        raise ValueError(
            "cells= selects no cell; pass a mask with at least one True entry, obs names, or None for all."
        )
    return mask


def cell_groups(adata: AnnData, groupby: str | None) -> tuple[np.ndarray, pd.Index]:
    """Group code of each cell (-1: no group) and the group labels; one group ``'all'`` without ``groupby``."""
    if groupby is None:
        return np.zeros(adata.n_obs, dtype=np.int64), pd.Index(["all"])
    return group_codes(adata, groupby)


def embedding_projection(adata: AnnData) -> float | None:
    """The projection of the cell embeddings ``embed_cells`` wrote (its default if it has not run)."""
    record = get_record(adata, "embed_cells")
    if record is None:
        return DEFAULT_PROJECTION
    projection = record.get("projection")  # None values are not stored: a record without it is unprojected
    return None if projection is None else float(projection)


def projection_basis(plan: InferencePlan, projection: float | None) -> torch.Tensor | None:
    return None if projection is None else plan.model.spectral_basis(projection).to(plan.device)


@dataclasses.dataclass
class EffectSums:
    """Per state (observed first, then null draws), group and gene: sums of decoded changes, and their counts."""

    sums: np.ndarray  # (n_states, n_groups, n_genes)
    squares: np.ndarray  # (n_groups, n_genes), observed state only
    counts: np.ndarray  # (n_groups, n_genes): cells in which the gene was decoded
    shift: np.ndarray  # (n_states, n_groups) sums of per-cell shifts
    shift_squares: np.ndarray  # (n_groups,)
    n_cells: np.ndarray  # (n_groups,)
    n_affected: np.ndarray  # (n_groups,) cells whose input the observed perturbation changed

    @classmethod
    def zeros(cls, n_states: int, n_groups: int, n_genes: int) -> EffectSums:
        return cls(
            sums=np.zeros((n_states, n_groups, n_genes)),
            squares=np.zeros((n_groups, n_genes)),
            counts=np.zeros((n_groups, n_genes)),
            shift=np.zeros((n_states, n_groups)),
            shift_squares=np.zeros(n_groups),
            n_cells=np.zeros(n_groups),
            n_affected=np.zeros(n_groups),
        )

    def add_cells(self, groups: np.ndarray, candidates: np.ndarray) -> None:
        """Count the cells (``groups`` their codes) and the genes decoded in them."""
        inside = groups >= 0
        self.n_cells += np.bincount(groups[inside], minlength=len(self.n_cells))
        b, t = np.nonzero((candidates >= 0) & inside[:, None])
        np.add.at(self.counts, (groups[b], candidates[b, t]), 1.0)

    def add_state(
        self, state: int, groups: np.ndarray, candidates: np.ndarray, change: np.ndarray, shift: np.ndarray
    ) -> None:
        inside = groups >= 0
        b, t = np.nonzero((candidates >= 0) & inside[:, None])
        np.add.at(self.sums[state], (groups[b], candidates[b, t]), change[b, t])
        self.shift[state] += np.bincount(groups[inside], weights=shift[inside], minlength=self.shift.shape[1])
        if state == 0:
            np.add.at(self.squares, (groups[b], candidates[b, t]), change[b, t].astype(np.float64) ** 2)
            self.shift_squares += np.bincount(groups[inside], weights=shift[inside] ** 2, minlength=len(self.n_cells))


def prediction_pvalues(observed: np.ndarray, null: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, ...]:
    """Null mean, sd, usable draws and the two-sided p-value of ``observed`` from the t prediction interval.

    ``null`` (n_draws, ...) holds the same statistic for each null draw, ``usable`` where a draw counts.
    The statistic of a new draw from the null lies at ``(x - mean) / (sd * sqrt(1 + 1/n))``, t with
    ``n - 1`` degrees of freedom, so the p-value is uniform under the null. NaN with fewer than 2 draws.
    """
    n = usable.sum(0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(usable, null, 0.0).sum(0) / n
        sd = np.sqrt(np.where(usable, (null - mean) ** 2, 0.0).sum(0) / (n - 1))
        score = (observed - mean) / (sd * np.sqrt(1.0 + 1.0 / n))
        pval = 2.0 * stats.t.sf(np.abs(score), np.maximum(n - 1, 1))
    degenerate = sd == 0  # every draw gave the same value: the observed one is or is not that value
    pval = np.where(degenerate, np.where(observed == mean, 1.0, 0.0), pval)
    pval = np.where(n >= 2, pval, np.nan)
    return mean, np.where(n >= 2, sd, np.nan), n, pval


def benjamini_hochberg(pvals: np.ndarray) -> np.ndarray:
    """BH-adjusted q-values of ``pvals`` (NaN entries stay NaN and do not count)."""
    qvals = np.full(len(pvals), np.nan)
    finite = np.flatnonzero(np.isfinite(pvals))
    if len(finite):
        order = finite[np.argsort(pvals[finite], kind="stable")]
        ranked = pvals[order] * len(order) / np.arange(1, len(order) + 1)
        qvals[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return qvals


def effect_tables(
    sums: EffectSums, states: list[np.ndarray], gene_names: np.ndarray, labels: pd.Index, perturbed: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long per-(group, gene) effects table and the per-group shift table."""
    counts = sums.counts
    with np.errstate(invalid="ignore", divide="ignore"):
        effect = sums.sums[0] / counts
        variance = (sums.squares / counts - effect**2) * counts / (counts - 1)
        se = np.sqrt(np.maximum(variance, 0.0) / counts)
        null = sums.sums[1:] / counts
    usable = np.stack([~np.isin(np.arange(len(gene_names)), draw) for draw in states[1:]])[:, None, :]
    usable = np.broadcast_to(usable, null.shape) & np.isfinite(null)
    null_mean, null_sd, n_null, pval = prediction_pvalues(effect, null, usable)
    is_perturbed = np.isin(np.arange(len(gene_names)), perturbed)
    # A perturbed gene's change is the intervention itself (its set level minus its input): no test.
    pval = np.where(is_perturbed[None, :], np.nan, pval)
    tables = []
    for g, label in enumerate(labels):
        decoded = counts[g] > 0
        table = pd.DataFrame(
            {
                "group": str(label),
                "gene": gene_names[decoded].astype(str),
                "effect": effect[g, decoded],
                "se": se[g, decoded],
                "null_mean": null_mean[g, decoded],
                "null_sd": null_sd[g, decoded],
                "n_null": n_null[g, decoded].astype(np.int64),
                "pval": pval[g, decoded],
                "qval": benjamini_hochberg(pval[g, decoded]),
                "perturbed": is_perturbed[decoded],
                "n_cells": counts[g, decoded].astype(np.int64),
            }
        )
        tables.append(table)
    effects = pd.concat(tables, ignore_index=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = sums.shift[0] / sums.n_cells
        shift_var = (sums.shift_squares / sums.n_cells - shift**2) * sums.n_cells / (sums.n_cells - 1)
        null_shift = sums.shift[1:] / sums.n_cells
    shift_mean, shift_sd, shift_n, shift_p = prediction_pvalues(shift, null_shift, np.isfinite(null_shift))
    shifts = pd.DataFrame(
        {
            "group": labels.astype(str),
            "shift": shift,
            "se": np.sqrt(np.maximum(shift_var, 0.0) / sums.n_cells),
            "null_mean": shift_mean,
            "null_sd": shift_sd,
            "n_null": shift_n.astype(np.int64),
            "pval": shift_p,
            "n_cells": sums.n_cells.astype(np.int64),
            "n_affected": sums.n_affected.astype(np.int64),
        }
    )
    return effects, shifts[shifts["n_cells"] > 0].reset_index(drop=True)


def set_level(mode: str, value: object) -> float:
    """The soft rank perturbed genes are set to, or a clear error."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}.")
    if mode != "set":
        if value is not None:
            raise ValueError(f"value= is only used with mode='set' (got mode={mode!r} and value={value!r}).")
        return 0.0 if mode == "knockout" else SOFT_RANK_HIGH
    if value is None:
        raise ValueError(f"mode='set' needs value=, a soft rank between 0 and {SOFT_RANK_HIGH:g}.")
    level = check_number(value, "value")
    if not 0.0 <= level <= SOFT_RANK_HIGH:
        raise ValueError(
            f"value= must be a soft rank between 0 (not expressed) and {SOFT_RANK_HIGH:g} (the cell's highest level), "
            f"got {value!r}."
        )
    return level


def gene_names(adata: AnnData, genes: object) -> list[str]:
    """The perturbed genes as a list of var names, or an error naming the unknown ones."""
    names = [genes] if isinstance(genes, str) else list(genes) if genes is not None else []
    if not names or not all(isinstance(name, str) for name in names):
        raise TypeError(f"genes= must be a gene name or a list of gene names (adata.var_names), got {genes!r}.")
    if len(set(names)) < len(names):
        raise ValueError(f"genes= names a gene twice: {sorted({n for n in names if names.count(n) > 1})}.")
    unknown = [name for name in names if name not in adata.var_names]
    if unknown:
        raise KeyError(f"genes= holds names that are not in adata.var_names: {unknown}.")
    return names


@doc_params
def perturb_genes(
    adata: AnnData | MuData,
    genes: str | Sequence[str],
    *,
    mode: Literal["knockout", "overexpress", "set"] = "knockout",
    value: float | None = None,
    cells: Sequence[str] | np.ndarray | None = None,
    groupby: str | None = None,
    n_null: int = 20,
    random_state: int | None = 0,
    key_added: str = keys.PERTURB,
    store_cells: bool = True,
    model: OmniCellModel | str | os.PathLike | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "auto",
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Knock genes out of cells (or up), re-encode the cells and read which genes the model moves, against a null.

    Zero-shot, with no retraining. In each selected cell the input soft rank of every named gene that is
    one of the cell's tokens is set to a level: 0 (``knockout``), the cell's highest level
    (``overexpress``) or ``value`` (``set``). The cell is re-encoded and every token gene is decoded before
    and after:

    * A gene's *decoded value* is the model's prediction for its token while the token is masked (input
      -1, the pretraining objective), i.e. what the cell's other genes (and neighbours, in spatial mode)
      say about it. The cell's gene slots are split into 4 decoding folds (a fixed function of
      ``random_state``, the cell's row and the slot), one pass each.
    * The perturbed genes are an intervention: they are never masked and hold the set level, so their own
      "before" is their input and "after" the set level (a knocked-out expressed gene falls by
      definition); their rows of the table carry no p-value.
    * A cell counts as perturbed by a gene only if its input changes (knocking out an unexpressed gene,
      or a gene that is not among the cell's tokens, changes nothing). A cell whose input does not change
      is not re-encoded: its shift and changes are exactly 0.

    The null: ``n_null`` draws of random tokenised genes, one per perturbed gene from its bin of mean input
    level over the selected cells, perturbed the same way in the same cells. A gene's effect in a group
    (mean change over the group's selected cells) is compared with the same statistic in the draws that
    did not perturb that gene: ``t = (effect - null mean) / (null sd * sqrt(1 + 1/n))`` with ``n - 1``
    degrees of freedom (a prediction interval, so p-values are uniform under the null), and q-values are
    Benjamini-Hochberg within each group. The unperturbed cells are encoded once and shared by all draws;
    each state costs 5 forward passes per affected cell. In spatial mode only the focal cell's genes are
    edited (the neighbours of its window are read as they are).

    Parameters
    ----------
    {doc_adata}
    genes
        Gene(s) to perturb (``adata.var_names``).
    mode
        ``"knockout"`` (soft rank 0), ``"overexpress"`` (the cell's highest soft rank, 5) or ``"set"``.
    value
        With ``mode="set"``: the soft rank to set, between 0 and 5.
    cells
        Cells to perturb: a boolean mask or obs names; None for all.
    groupby
        ``obs`` column whose groups get a table each; None: one group ``"all"``.
    n_null
        Null draws of level-matched random genes (at least 2).
    random_state
        Seed of the null draws and the decoding folds; None uses ``oc.settings.seed``.
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
        Cosine distance between each cell's embedding before and after (the space of
        :func:`omnicell.tl.embed_cells`: its recorded ``projection``, else 0.9); NaN for cells not selected,
        exactly 0 for selected cells whose input does not change.
    ``adata.obsm[key_added]``
        (n_obs, m) float32 perturbed cell embeddings; NaN rows for cells not selected.
    ``adata.layers[key_added]``
        (``store_cells``) (n_obs, n_vars) sparse CSR float32 change (after - before) of the decoded value of
        each token gene in each affected cell.
    ``adata.uns[key_added]``
        ``effects``: DataFrame, one row per group and decoded gene: ``group``, ``gene``, ``effect``,
        ``se``, ``null_mean``, ``null_sd``, ``n_null``, ``pval``, ``qval``, ``perturbed``, ``n_cells``;
        ``shift``: DataFrame per group: ``group``, ``shift`` (mean), ``se``, ``null_mean``, ``null_sd``,
        ``n_null``, ``pval``, ``n_cells``, ``n_affected``; ``genes``: DataFrame per perturbed gene:
        ``gene``, ``tokenized``, ``n_cells`` (selected cells holding it as a token), ``n_perturbed``
        (cells whose input it changed), ``mean_level`` (mean input over the selected cells);
        ``params``: the options.
    ``adata.uns['omnicell']['perturb_genes']``
        Parameters and the model identity.
    """
    container, adata = resolve_modality(adata, mod, "perturb_genes")
    names = gene_names(adata, genes)
    level = set_level(mode, value)
    selected = select_cells(adata, cells)
    codes, labels = cell_groups(adata, groupby)
    n_null = check_count(n_null, "n_null", minimum=2)
    seed = resolve_random_state(random_state, "perturb_genes")
    check_key_added(key_added)
    if copy:
        container, adata = copy_target(container, adata, mod)
    started = time.perf_counter()
    with restore_on_error(adata):
        plan = plan_tokenized(adata, model, batch_size=batch_size, device=device, precision=precision)
        index = gene_index(adata, plan)
        projection = embedding_projection(adata)
        basis = projection_basis(plan, projection)
        position = pd.Index(index.names)
        targets = position.get_indexer(names)
        tokenised = targets[targets >= 0]
        rows = np.flatnonzero(selected)
        levels = mean_levels(plan, index.lookup, rows, len(index), level)
        if not len(tokenised):
            warnings.warn(
                f"None of {names} is among the tokenised genes: nothing is perturbed.", UserWarning, stacklevel=2
            )
        rng = np.random.default_rng(seed)
        draws = level_matched_draws(levels.mean, tokenised, n_null, rng) if len(tokenised) else [tokenised] * n_null
        states = [tokenised, *draws]

        def edit(state, focal, batch, candidates):
            edited = np.where(np.isin(candidates, states[state]) & (candidates >= 0), np.float32(level), batch.values)
            changed = edited != batch.values
            affected = np.flatnonzero(changed.any(1))
            return affected, dataclasses.replace(batch.take(affected), values=edited[affected]), changed[affected]

        run = run_states(plan, index.lookup, len(index), rows, codes, len(labels), len(states), edit, seed, basis)
    effects, shifts = effect_tables(run.sums, states, index.names, labels, tokenised)
    gene_table = pd.DataFrame(
        {
            "gene": names,
            "tokenized": targets >= 0,
            "n_cells": np.where(targets >= 0, levels.n_cells[np.maximum(targets, 0)], 0).astype(np.int64),
            "n_perturbed": np.where(targets >= 0, levels.n_changed[np.maximum(targets, 0)], 0).astype(np.int64),
            "mean_level": np.where(targets >= 0, levels.mean[np.maximum(targets, 0)], np.nan),
        }
    )
    params = {
        "genes": np.asarray(names, dtype=str),
        "mode": mode,
        "level": level,
        "groupby": groupby,
        "n_null": n_null,
        "random_state": seed,
        "n_cells": int(selected.sum()),
        "projection": projection,
        "n_folds": N_FOLDS,
    }
    write_results(
        adata, "perturb_genes", run, plan, tables={"effects": effects, "shift": shifts, "genes": gene_table},
        params=params, key_added=key_added, store_cells=store_cells, var_rows=index.var_rows,
    )  # fmt: skip
    logger.info(
        "perturb_genes: %s %s in %d cells (%d affected), %d null draws, %.1fs; added .obs[%r], .obsm[%r]%s, .uns[%r]",
        mode, ", ".join(names), len(rows), int(run.sums.n_affected.sum()), n_null, time.perf_counter() - started,
        key_added + keys.SHIFT_SUFFIX, key_added, f", .layers[{key_added!r}]" if store_cells else "", key_added,
    )  # fmt: skip
    return finish(container, adata, copy=copy)


def write_results(
    adata: AnnData,
    function: str,
    run: StateRun,
    plan: InferencePlan,
    *,
    tables: dict[str, pd.DataFrame],
    params: dict,
    key_added: str,
    store_cells: bool,
    var_rows: np.ndarray,
) -> None:
    """Write a perturbation's slots (``obs[key + '_shift']``, ``obsm``, ``layers``, ``uns``) and its record."""
    params = {key: value for key, value in params.items() if value is not None}
    adata.obs[key_added + keys.SHIFT_SUFFIX] = run.shift
    adata.obsm[key_added] = run.embedding
    if store_cells:
        adata.layers[key_added] = run.layer(var_rows, adata.n_vars)
    else:
        adata.layers.pop(key_added, None)
    adata.uns[key_added] = {**tables, "params": params}
    write_record(
        adata,
        function,
        {
            **params,
            "key_added": key_added,
            "store_cells": store_cells,
            "batch_size": plan.batch_size,
            "device": str(plan.device),
            "precision": plan.precision,
            **plan.model.identity(),
        },
    )


def mean_levels(
    plan: InferencePlan, lookup: np.ndarray, rows: np.ndarray, n_genes: int, level: float, *, neighbors: bool = False
) -> GeneLevels:
    """Input levels of every tokenised gene over the cells ``rows`` (their neighbours' with ``neighbors``).

    The mean is per cell read (0 where the gene is not a token); the counts are of the focal cells.
    """
    sums, n_blocks = np.zeros(n_genes), 0
    present, changed = np.zeros(n_genes, dtype=np.int64), np.zeros(n_genes, dtype=np.int64)
    for start in range(0, len(rows), plan.batch_size):
        batch = plan.token_batch(rows[start : start + plan.batch_size])
        blocks = batch.cell_index >= 1 if neighbors else batch.cell_index == 0
        candidates = np.where(blocks, lookup[np.clip(batch.tokens, 0, len(lookup) - 1)], -1)
        slot = candidates >= 0
        np.add.at(sums, candidates[slot], batch.values[slot])
        present_blocks = (batch.cell_index[:, :, None] == np.arange(batch.n_blocks)).any(1)
        n_blocks += int(present_blocks[:, 1:].sum() if neighbors else present_blocks[:, 0].sum())
        for counts, where in ((present, slot), (changed, slot & (batch.values != np.float32(level)))):
            b, t = np.nonzero(where)
            cells = np.unique(b * n_genes + candidates[b, t]) % n_genes  # each cell once per gene
            np.add.at(counts, cells, 1)
    return GeneLevels(mean=sums / max(n_blocks, 1), n_cells=present, n_changed=changed)


@dataclasses.dataclass
class GeneLevels:
    mean: np.ndarray  # mean input over the cells (0 where not a token)
    n_cells: np.ndarray  # cells holding the gene as a token
    n_changed: np.ndarray  # cells where setting the gene to the level changes the input


@dataclasses.dataclass
class StateRun:
    """What :func:`run_states` gathers: the sums behind the tables and the observed state's per-cell results."""

    sums: EffectSums
    shift: np.ndarray
    embedding: np.ndarray
    before: np.ndarray
    entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]]

    def layer(self, var_rows: np.ndarray, n_vars: int) -> sp.csr_matrix:
        n_obs = len(self.shift)
        if not self.entries:
            return sp.csr_matrix((n_obs, n_vars), dtype=np.float32)
        rows, genes, values = (np.concatenate(part) for part in zip(*self.entries, strict=True))
        columns = var_rows[genes]
        keep = columns >= 0  # genes read from .raw only have no column
        matrix = sp.csr_matrix((values[keep], (rows[keep], columns[keep])), shape=(n_obs, n_vars), dtype=np.float32)
        matrix.sum_duplicates()
        return matrix


Edit = Callable[[int, np.ndarray, TokenBatch, np.ndarray], tuple[np.ndarray, TokenBatch, np.ndarray | None]]
"""``edit(state, focal rows, their batch, focal candidates)`` -> (affected sequences, their edited batch, slots
held fixed (never masked) or None)."""


def run_states(
    plan: InferencePlan,
    lookup: np.ndarray,
    n_genes: int,
    rows: np.ndarray,
    codes: np.ndarray,
    n_groups: int,
    n_states: int,
    edit: Edit,
    seed: int,
    basis: torch.Tensor | None,
    *,
    niche: bool = False,
) -> StateRun:
    """Encode the ``rows`` once unperturbed, then every state's edit in the cells it changes.

    State 0 is the observed perturbation, the others null draws. A slot held fixed is the intervention:
    its change is its edited input minus its input. The embedding is the focal cell's, or with ``niche``
    the mean over its window's blocks.
    """
    width = plan.model.config.d_model if basis is None else basis.shape[1]
    sums = EffectSums.zeros(n_states, n_groups, n_genes)
    shift = np.full(plan.n_obs, np.nan)
    embedding = np.full((plan.n_obs, width), np.nan, dtype=np.float32)
    unperturbed = np.full((plan.n_obs, width), np.nan, dtype=np.float32)
    entries = []

    def pooled(window: np.ndarray) -> np.ndarray:
        return np.nanmean(window, axis=1) if niche else window[:, 0]

    for start in range(0, len(rows), plan.batch_size):
        focal = rows[start : start + plan.batch_size]
        batch = plan.token_batch(focal)
        candidates = focal_candidates(lookup, batch)
        folds = decoding_folds(batch, focal, seed)
        before = encode(plan, batch, folds, basis=basis)
        before_embedding = pooled(before.window)
        groups = codes[focal]
        sums.add_cells(groups, candidates)
        edits = [edit(state, focal, batch, candidates) for state in range(n_states)]
        # Every state's affected cells in one encoding: full passes rather than one small pass per state.
        which = np.concatenate([affected for affected, _, _ in edits])
        kept = np.concatenate(
            [np.zeros(part.tokens.shape, dtype=bool) if keep is None else keep for _, part, keep in edits]
        )
        after = encode(plan, concat_batches([part for _, part, _ in edits]), folds[which], keep=kept, basis=basis)
        offsets = np.cumsum([0] + [len(affected) for affected, _, _ in edits])
        for state, (affected, part, _) in enumerate(edits):
            change = np.zeros(batch.values.shape, dtype=np.float32)
            after_embedding = before_embedding.copy()
            if len(affected):
                own = slice(offsets[state], offsets[state + 1])
                fixed = kept[own]
                decoded_before = np.where(fixed, batch.values[affected], before.decoded[affected])
                decoded_after = np.where(fixed, part.values, after.decoded[own])
                change[affected] = np.where(candidates[affected] >= 0, decoded_after - decoded_before, 0.0)
                after_embedding[affected] = pooled(after.window[own])
            cell_shift = cosine_distance(before_embedding, after_embedding)
            sums.add_state(state, groups, candidates, change, cell_shift)
            if state == 0:
                inside = groups >= 0
                hit = np.zeros(len(focal), dtype=bool)
                hit[affected] = True
                sums.n_affected += np.bincount(groups[inside & hit], minlength=n_groups)
                shift[focal] = cell_shift
                embedding[focal] = after_embedding
                unperturbed[focal] = before_embedding
                b, t = np.nonzero(candidates[affected] >= 0)
                entries.append((focal[affected][b], candidates[affected][b, t], change[affected][b, t]))
    return StateRun(sums=sums, shift=shift, embedding=embedding, before=unperturbed, entries=entries)
