"""``oc.tl.deconvolve``: cell-type proportions of spots by a Tangram-like mapping in embedding space."""

from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._core import keys
from omnicell._core.adata import copy_target, finish, resolve_modality
from omnicell._core.checks import resolve_random_state
from omnicell._core.docs import doc_params
from omnicell._core.progress import progress
from omnicell._core.provenance import write_record
from omnicell.models import resolve_device
from omnicell.tl._cell_tasks import get_labels, get_representation, label_classes, warn_if_models_differ

__all__ = ["deconvolve", "map_to_reference"]

logger = logging.getLogger("omnicell")


def map_to_reference(
    spots: np.ndarray,
    reference: np.ndarray,
    *,
    epochs: int = 1000,
    lr: float = 0.1,
    lambda_spot: float = 0.0,
    lambda_feature: float = 1.0,
    lambda_entropy: float = 0.0,
    center: bool = True,
    seed: int = 0,
    device: torch.device | None = None,
) -> tuple[np.ndarray, float]:
    """Soft assignment of each spot to reference profiles whose mixture reproduces the spot's embedding.

    ``M = softmax(logits)`` row-wise (spots x reference profiles) is fitted with Adam so that
    ``P = M @ R`` matches the spot embeddings ``E`` in Tangram's cosine terms: the mean cosine
    similarity of each embedding dimension across spots (``lambda_feature``, Tangram's
    gene-wise term, weight 1 in Tangram) and of each spot's row (``lambda_spot``, Tangram's
    voxel-wise term, weight 0 in Tangram), plus ``lambda_entropy`` times the mean row entropy
    (positive values spread each spot over more profiles, negative values concentrate it).
    With ``center`` both are centred on the mean reference profile first (mixtures of centred
    profiles are the centred mixture).

    Returns the (n_spots, n_reference) mapping as float32 and the final loss.
    """
    device = device if device is not None else torch.device("cpu")
    spots = np.asarray(spots, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if center:
        mean = reference.mean(axis=0, keepdims=True)
        spots, reference = spots - mean, reference - mean
    target = torch.as_tensor(np.ascontiguousarray(spots), device=device)
    profiles = torch.as_tensor(np.ascontiguousarray(reference), device=device)
    generator = torch.Generator().manual_seed(seed)
    initial = torch.randn(len(spots), len(reference), generator=generator) * 0.01
    logits = torch.nn.Parameter(initial.to(device))
    optimizer = torch.optim.Adam([logits], lr=lr)
    loss_value = float("nan")
    cosine = torch.nn.functional.cosine_similarity
    for _ in progress(range(epochs), desc="deconvolve", unit="epochs"):
        mapping = torch.softmax(logits, dim=1)
        predicted = mapping @ profiles
        loss = torch.zeros((), device=device)
        if lambda_spot:
            loss = loss - lambda_spot * cosine(predicted, target, dim=1, eps=1e-8).mean()
        if lambda_feature:
            loss = loss - lambda_feature * cosine(predicted, target, dim=0, eps=1e-8).mean()
        if lambda_entropy:
            entropy = -(mapping * torch.log(mapping.clamp_min(1e-12))).sum(dim=1).mean()
            loss = loss + lambda_entropy * entropy
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
    with torch.no_grad():
        mapping = torch.softmax(logits, dim=1).cpu().numpy().astype(np.float32)
    return mapping, loss_value


@doc_params
def deconvolve(
    adata: AnnData | MuData,
    reference: AnnData,
    label_key: str,
    *,
    use_rep: str = keys.EMBEDDING,
    epochs: int = 1000,
    lr: float = 0.1,
    lambda_spot: float = 0.0,
    lambda_feature: float = 1.0,
    lambda_entropy: float = 0.0,
    center: bool = True,
    random_state: int | None = None,
    device: str | torch.device | None = None,
    key_added: str = keys.PROPORTIONS,
    dominant_key: str = keys.DOMINANT_TYPE,
    mod: str = "rna",
    copy: bool = False,
) -> AnnData | MuData | None:
    """Estimate the cell-type proportions of each spot from a labelled single-cell reference.

    The paper's Tangram-like deconvolution in embedding space: the spots and the reference
    cells are embedded with the same model (:func:`omnicell.tl.embed_cells`, each spot as one
    "cell"); each spot gets a softmax distribution over the reference cells whose mixture of
    embeddings matches the spot's embedding by Tangram's cosine objective with Tangram's
    default weights (see :func:`map_to_reference`). A spot's proportion of a type is the weight
    its distribution puts on that type's cells; the dominant type is the largest. The mapping
    starts uniform, i.e. from the reference's composition. It holds spots x reference cells
    numbers (four times, with the optimiser's state): subsample a large reference (e.g. a few
    thousand cells, stratified by type).

    Parameters
    ----------
    adata
        Spots with a representation in ``obsm[use_rep]``.
    reference
        Labelled single cells with ``obsm[use_rep]`` (same model and settings) and ``obs[label_key]``;
        unlabelled cells are left out.
    label_key
        ``obs`` column of ``reference`` with the cell types.
    use_rep
        ``obsm`` key of the representation in both objects.
    epochs
        Adam steps over all spots at once.
    lr
        Adam learning rate.
    lambda_spot
        Weight of the per-spot cosine similarity (Tangram's voxel-wise term; use it with few spots).
    lambda_feature
        Weight of the per-dimension cosine similarity across spots (Tangram's gene-wise term),
        which needs many spots.
    lambda_entropy
        Weight of each spot's mapping entropy in the loss (0: none; positive spreads, negative
        concentrates).
    center
        Centre the spot and reference embeddings on the mean reference cell.
    random_state
        Random seed of the initial mapping; None uses ``oc.settings.seed``.
    device
        Where to optimise; None uses ``oc.settings.device``.
    key_added
        ``obsm`` key of the proportions.
    dominant_key
        ``obs`` column of the dominant type.
    {doc_mod}
    {doc_copy}

    Returns
    -------
    None, or a copy of ``adata`` when ``copy=True``. Writes

    ``adata.obsm[key_added]``
        DataFrame indexed like ``obs`` with one column per cell type; rows sum to 1.
    ``adata.obs[dominant_key]``
        Categorical type with the largest proportion in each spot.
    ``adata.uns['omnicell']['deconvolve']``
        Parameters, the cell ``types``, the number of reference cells and the final loss.
    """
    container, adata = resolve_modality(adata, mod, "deconvolve")
    if not isinstance(reference, AnnData):
        raise TypeError(f"deconvolve: reference must be an AnnData with labels, got {type(reference).__name__}.")
    spots = get_representation(adata, use_rep, "deconvolve")
    cells = get_representation(reference, use_rep, "deconvolve (reference)")
    if cells.shape[1] != spots.shape[1]:
        raise ValueError(
            f"deconvolve: obsm[{use_rep!r}] has {cells.shape[1]} dimensions in the reference and {spots.shape[1]} in "
            "the spots. Embed both with the same model and projection (oc.tl.embed_cells)."
        )
    if int(epochs) < 1 or float(lr) <= 0:
        raise ValueError(f"epochs must be at least 1 and lr positive, got epochs={epochs}, lr={lr}.")
    if not (lambda_spot or lambda_feature):
        raise ValueError("At least one of lambda_spot and lambda_feature must be non-zero.")
    if lambda_feature and not lambda_spot and adata.n_obs < 10:
        warnings.warn(
            f"Only {adata.n_obs} spots: the per-dimension term across spots is poorly determined; pass lambda_spot=1.",
            UserWarning,
            stacklevel=2,
        )
    labels = get_labels(reference, label_key, "deconvolve")
    warn_if_models_differ(adata, reference, use_rep)
    known = labels.notna().to_numpy()
    types = label_classes(reference.obs[label_key], labels[known])
    codes = pd.Categorical(labels[known], categories=types).codes
    cells = cells[known]
    membership = np.zeros((len(codes), len(types)), dtype=np.float32)
    membership[np.arange(len(codes)), codes] = 1.0
    seed = resolve_random_state(random_state, "deconvolve")
    torch_device = resolve_device(device)

    started = time.perf_counter()
    mapping, loss = map_to_reference(
        spots, cells, epochs=int(epochs), lr=float(lr), lambda_spot=float(lambda_spot),
        lambda_feature=float(lambda_feature), lambda_entropy=float(lambda_entropy), center=bool(center), seed=seed,
        device=torch_device,
    )  # fmt: skip
    proportions = mapping @ membership
    proportions /= proportions.sum(axis=1, keepdims=True)

    if copy:
        container, adata = copy_target(container, adata, mod)
    adata.obsm[key_added] = pd.DataFrame(proportions, index=adata.obs_names, columns=types)
    adata.obs[dominant_key] = pd.Categorical.from_codes(proportions.argmax(axis=1), categories=types)
    write_record(
        adata,
        "deconvolve",
        {
            "label_key": label_key,
            "use_rep": use_rep,
            "epochs": int(epochs),
            "lr": float(lr),
            "lambda_spot": float(lambda_spot),
            "lambda_feature": float(lambda_feature),
            "lambda_entropy": float(lambda_entropy),
            "center": bool(center),
            "seed": seed,
            "device": str(torch_device),
            "key_added": key_added,
            "dominant_key": dominant_key,
            "types": np.asarray(types, dtype=str),
            "n_reference_cells": int(known.sum()),
            "final_loss": loss,
        },
    )
    logger.info(
        "deconvolve: %d spots onto %d reference cells in %.1fs; added .obsm[%r] and .obs[%r]",
        adata.n_obs, len(cells), time.perf_counter() - started, key_added, dominant_key,
    )  # fmt: skip
    return finish(container, adata, copy=copy)
