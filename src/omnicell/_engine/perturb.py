"""In-silico perturbation: edit the model's inputs, re-encode, and decode every gene before and after.

Shared by :func:`omnicell.tl.perturb_genes` and :func:`omnicell.tl.perturb_niche`.

*Decoded value.* Pretraining puts the loss only on masked gene tokens (input :data:`MASK_VALUE`), so the
bilinear head's output is a prediction of a gene's soft rank only where the gene is masked: it then says
what the rest of the cell (and its neighbours) implies about the gene. At unmasked tokens it is not (it
is even anti-correlated with the input on omnicell-tiny). A gene's decoded value in a cell is therefore
read with the gene masked: the gene slots of the focal block are split into ``n_folds`` decoding folds
and pass ``k`` masks fold ``k``, so every gene is decoded once in ``n_folds`` passes. A slot's fold
depends only on ``(random_state, the cell's row, the slot)`` (:func:`decoding_folds`), so nothing
depends on how cells are batched. The cell embedding comes from the ordinary unmasked pass, pooled and
projected as :func:`omnicell.tl.embed_cells` does.

*Intervention.* Edited slots (a perturbed gene's set level) are never masked: the model could say nothing
about a gene whose value it does not see. A state costs ``1 + n_folds`` passes per cell; cells whose input
does not change are not re-encoded (their change is exactly 0), and the unperturbed state is encoded once
and shared by the observed perturbation and every null draw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from omnicell._engine.plan import InferencePlan
from omnicell.data import MASK_VALUE, TokenBatch
from omnicell.nn import pool_cells

__all__ = [
    "N_FOLDS",
    "Encoded",
    "concat_batches",
    "cosine_distance",
    "decoding_folds",
    "distance_matched",
    "encode",
    "focal_candidates",
    "level_matched_draws",
    "ranked_effects",
]

N_FOLDS = 4
"""Decoding folds: each gene is decoded with a quarter of the cell's genes masked (pretraining masks 10-30 %)."""


@dataclasses.dataclass
class Encoded:
    """What the model says about a batch of sequences.

    Attributes
    ----------
    window
        (B, n_blocks, m) float32 embedding of each cell block (unmasked pass); NaN rows for missing blocks.
    decoded
        (B, T) float32 decoded value of every gene slot of the focal block; NaN elsewhere.
    """

    window: np.ndarray
    decoded: np.ndarray


def concat_batches(batches: list[TokenBatch]) -> TokenBatch:
    """The sequences of ``batches`` (same layout) one after the other."""
    padded = any(batch.padding_mask is not None for batch in batches)
    return TokenBatch(
        tokens=np.concatenate([batch.tokens for batch in batches]),
        values=np.concatenate([batch.values for batch in batches]),
        positions=None if batches[0].positions is None else np.concatenate([batch.positions for batch in batches]),
        cell_index=np.concatenate([batch.cell_index for batch in batches]),
        n_blocks=batches[0].n_blocks,
        padding_mask=np.concatenate([_real(batch) for batch in batches]) if padded else None,
    )


def _real(batch: TokenBatch) -> np.ndarray:
    return np.ones(batch.tokens.shape, dtype=bool) if batch.padding_mask is None else batch.padding_mask


def focal_candidates(lookup: np.ndarray, batch: TokenBatch) -> np.ndarray:
    """(B, T) index of the tokenised gene at each gene slot of the focal block; -1 elsewhere."""
    return np.where(batch.cell_index == 0, lookup[np.clip(batch.tokens, 0, len(lookup) - 1)], -1)


def decoding_folds(batch: TokenBatch, rows: np.ndarray, random_state: int, n_folds: int = N_FOLDS) -> np.ndarray:
    """(B, T) decoding fold of each focal gene slot (-1 elsewhere) of the cells at ``rows`` of the AnnData.

    Slot ``s`` (0-based within the block) of the cell at row ``r`` is in fold ``perm[(s + r) % L] % n_folds``
    for a permutation ``perm`` of the ``L`` slots drawn from ``random_state``: balanced folds, a different
    split for each cell, and the same whichever batch the cell is in.
    """
    length = batch.tokens.shape[1] // batch.n_blocks  # every block: <RNA_START>, L slots, <RNA_END>
    n_slots = length - 2
    permutation = np.random.default_rng(random_state).permutation(n_slots)
    slots = np.arange(batch.tokens.shape[1]) - 1
    shifted = (np.clip(slots, 0, n_slots - 1)[None, :] + np.asarray(rows, dtype=np.int64)[:, None]) % n_slots
    return np.where(batch.cell_index == 0, permutation[shifted] % n_folds, -1)


def encode(
    plan: InferencePlan,
    batch: TokenBatch,
    folds: np.ndarray,
    *,
    keep: np.ndarray | None = None,
    basis: torch.Tensor | None = None,
    n_folds: int = N_FOLDS,
) -> Encoded:
    """Embed every block of ``batch`` and decode its focal genes, ``plan.batch_size`` sequences per pass.

    ``keep`` (B, T) marks slots never masked (the intervention); ``basis`` projects the embeddings
    (None: unprojected). ``1 + n_folds`` passes per sequence; each sequence's result does not depend on the
    others of the pass.
    """
    n, length = batch.tokens.shape
    width = plan.model.config.d_model if basis is None else basis.shape[1]
    window = np.full((n, batch.n_blocks, width), np.nan, dtype=np.float32)
    decoded = np.full((n, length), np.nan, dtype=np.float32)
    keep = np.zeros((n, length), dtype=bool) if keep is None else keep
    network = plan.model.network
    with torch.inference_mode():
        for start in range(0, n, plan.batch_size):
            part = batch.take(slice(start, start + plan.batch_size))
            tensors = part.to_torch(plan.device)
            output = plan.forward(tensors)
            pooled = pool_cells(output.hidden, tensors["cell_index"], tensors["expressed"], part.n_blocks)
            block = (pooled @ basis if basis is not None else pooled).cpu().numpy()
            present = (part.cell_index[:, :, None] == np.arange(part.n_blocks)).any(1)
            window[start : start + len(part.tokens)][present] = block[present]
            for fold in range(n_folds):
                masked = (folds[start : start + len(part.tokens)] == fold) & ~keep[start : start + len(part.tokens)]
                if not masked.any():
                    continue
                values = np.where(masked, np.float32(MASK_VALUE), part.values)
                output = plan.forward({**tensors, "values": torch.from_numpy(values).to(plan.device)})
                predicted = network.output(output.hidden, tensors["cell_index"]).float().cpu().numpy()
                decoded[start : start + len(part.tokens)][masked] = predicted[masked]
    return Encoded(window=window, decoded=decoded)


def cosine_distance(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Row-wise ``1 - cos`` of two (n, m) arrays; 0 for identical rows (zero vectors included)."""
    dot = (before.astype(np.float64) * after).sum(1)
    norms = np.linalg.norm(before.astype(np.float64), axis=1) * np.linalg.norm(after.astype(np.float64), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = 1.0 - dot / norms
    distance[np.all(before == after, axis=1)] = 0.0
    return distance


def level_matched_draws(
    levels: np.ndarray, targets: np.ndarray, n_draws: int, rng: np.random.Generator, *, n_bins: int = 10
) -> list[np.ndarray]:
    """``n_draws`` sets of random genes, one per target, each from the target's bin of mean input level.

    ``levels`` is the mean input level of every tokenised gene over the cells perturbed; the bins are
    quantiles of the levels of the genes that are not targets (the only genes drawn). A draw never
    holds a gene twice; a bin too small for that falls back on the genes of the nearest levels.
    """
    targets = np.asarray(targets, dtype=np.int64)
    eligible = np.setdiff1d(np.arange(len(levels)), targets)
    if len(eligible) < len(targets):
        raise ValueError(
            f"A null of random genes needs at least {len(targets)} tokenised genes besides the perturbed ones; "
            f"there are {len(eligible)}."
        )
    n_bins = max(1, min(n_bins, len(eligible) // max(5, len(targets))))
    edges = np.quantile(levels[eligible], np.linspace(0, 1, n_bins + 1)[1:-1])
    bin_of = np.searchsorted(edges, levels, side="right")
    draws = []
    for _ in range(n_draws):
        chosen: list[int] = []
        for target in targets:
            pool = eligible[(bin_of[eligible] == bin_of[target]) & ~np.isin(eligible, chosen)]
            if not len(pool):
                free = eligible[~np.isin(eligible, chosen)]
                pool = free[np.argsort(np.abs(levels[free] - levels[target]), kind="stable")[:5]]
            chosen.append(int(rng.choice(pool)))
        draws.append(np.asarray(chosen, dtype=np.int64))
    return draws


def distance_matched(
    coordinates: np.ndarray,
    focal: int,
    removed: np.ndarray,
    pool: np.ndarray,
    rng: np.random.Generator,
    *,
    n_best: int = 1,
) -> np.ndarray:
    """For each ``removed`` neighbour of the cell at row ``focal``, a cell of ``pool`` at about its distance.

    Each pick is the pool cell whose distance to the focal cell is closest to the removed neighbour's
    (``n_best > 1``: one of that many closest, at random); a cell is picked once; ties go to a seeded
    order; -1 when the pool is exhausted.
    """
    pool = rng.permutation(np.asarray(pool, dtype=np.int64))
    distance = np.linalg.norm(coordinates[pool] - coordinates[focal], axis=1)
    wanted = np.linalg.norm(coordinates[removed] - coordinates[focal], axis=1)
    available = np.ones(len(pool), dtype=bool)
    chosen = np.full(len(removed), -1, dtype=np.int64)
    for i, target in enumerate(wanted):
        gap = np.where(available, np.abs(distance - target), np.inf)
        best = np.argsort(gap, kind="stable")[:n_best]
        best = best[np.isfinite(gap[best])]
        if len(best):
            pick = best[0] if len(best) == 1 else rng.choice(best)
            available[pick] = False
            chosen[i] = pool[pick]
    return chosen


def ranked_effects(
    adata: AnnData,
    group: str | Sequence[str] | None,
    *,
    key: str,
    sort_by: str = "pval",
    qval_cutoff: float | None = None,
    include_perturbed: bool = True,
) -> pd.DataFrame:
    """``adata.uns[key]['effects']`` sorted within each group (see :func:`omnicell.get.perturbation_df`)."""
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
