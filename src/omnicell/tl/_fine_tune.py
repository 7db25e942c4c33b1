"""``oc.tl.fine_tune``: continued pretraining of a model on the user's own cells."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from anndata import AnnData

from omnicell._core.adata import resolve_modality, update_mudata
from omnicell._core.checks import check_count, check_number, resolve_random_state
from omnicell._core.provenance import write_record
from omnicell._core.tokenize_record import TokenizeRecord
from omnicell._engine.plan import Precision, plan_inference, restore_on_error
from omnicell.models import OmniCellModel, resolve_device, resolve_model
from omnicell.train import MaskingConfig, OptimizerConfig, fine_tune_network

if TYPE_CHECKING:
    from mudata import MuData

from omnicell._engine.plan import ensure_tokenized

__all__ = ["fine_tune"]

logger = logging.getLogger("omnicell")


def fine_tune(
    adata: AnnData | MuData,
    model: OmniCellModel | str | os.PathLike | None = None,
    *,
    spatial: bool | None = None,
    epochs: int = 1,
    batch_size: int = 16,
    micro_batch_size: int | None = None,
    lr: float = 1e-4,
    min_lr: float = 1e-6,
    warmup_steps: int | None = None,
    weight_decay: float = 0.01,
    clip_norm: float | None = 1.0,
    masking: MaskingConfig | dict[str, float] | None = None,
    validation_fraction: float = 0.1,
    random_state: int | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "auto",
    log: str | os.PathLike | None = None,
    name: str | None = None,
    mod: str = "rna",
) -> OmniCellModel:
    """Continue pretraining a model on the cells of ``adata`` (masked soft-rank regression).

    The cells are read exactly as :func:`omnicell.tl.embed_cells` reads them (the genes chosen by
    :func:`omnicell.pp.tokenize`, run here with its defaults if it was not run). The objective,
    optimiser (AdamW, betas 0.9/0.99), warm-up + cosine schedule and clipping are those of
    pretraining (:mod:`omnicell.train`); masking follows the paper's stage for the data kind. A
    share of the cells is held out, and the masked loss on them (fixed masks, no dropout) is
    measured before training and after every epoch. The given model is not modified.

    Parameters
    ----------
    adata
        Cells x genes with non-negative expression (counts or normalised), tokenised for ``model``
        or not yet tokenised.
    model
        Model object, registry name or folder to start from; None uses ``oc.settings.default_model``.
    spatial
        Train on focal-plus-neighbours windows with the spatial stage's masking (True) or on single
        cells (False). None follows the tokenisation of ``adata`` (single-cell if not tokenised).
        A value that contradicts an existing tokenisation is an error.
    epochs
        Passes over the training cells.
    batch_size
        Cells (sequences) per optimiser step.
    micro_batch_size
        Cells per forward pass (gradient accumulation when smaller than ``batch_size``, of which
        it must be a divisor); None uses ``batch_size``.
    lr
        Peak learning rate.
    min_lr
        Learning rate at the end of the cosine decay.
    warmup_steps
        Linear warm-up steps; None uses 10% of the steps.
    weight_decay
        AdamW weight decay (not applied to norm gains).
    clip_norm
        Gradient-norm clipping threshold; None disables it.
    masking
        A :class:`omnicell.train.MaskingConfig` or a dict of overrides of the stage's rates
        (``nonzero``, ``zero``, ``neighbor_nonzero``, ``neighbor_zero``, ``mask_value``).
    validation_fraction
        Share of the cells held out for the held-out masked loss (at most 2048 cells); 0 disables it.
    random_state
        Seed of the split, shuffling, masking and dropout; None uses ``oc.settings.seed``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``; None uses ``oc.settings.device``.
    precision
        ``"auto"``: bfloat16 autocast on CUDA, float32 elsewhere.
    log
        Path of a CSV file with one row per step (the columns of ``omnicell pretrain``'s loss log
        plus ``heldout_mlm`` at the end of each epoch).
    name
        Name of the returned model; None appends ``-finetuned`` to the base model's name.
    mod
        Modality of a MuData to train on.

    Returns
    -------
    The fine-tuned :class:`~omnicell.models.OmniCellModel` (in eval mode; save it with ``.save(path)``
    and load it with ``oc.models.load(path)``). Writes

    ``adata.uns['omnicell']['fine_tune']``
        Parameters, ``heldout_loss`` (before training, then after each epoch), ``train_loss`` (mean
        per epoch), cell counts, and the identities of the base and the fine-tuned model.
    ``adata.var`` / ``adata.uns['omnicell']['tokenize']``
        Only if ``adata`` was not tokenised: what :func:`omnicell.pp.tokenize` writes.
    """
    container, adata = resolve_modality(adata, mod, "fine_tune")
    epochs = check_count(epochs, "epochs")
    batch_size = check_count(batch_size, "batch_size")
    check_count(micro_batch_size, "micro_batch_size", allow_none=True)
    check_number(lr, "lr", positive=True)
    check_number(min_lr, "min_lr", minimum=0.0)
    check_number(weight_decay, "weight_decay", minimum=0.0)
    check_number(clip_norm, "clip_norm", positive=True, allow_none=True)
    check_count(warmup_steps, "warmup_steps", minimum=0, allow_none=True)
    if precision not in ("auto", "float32", "bfloat16"):
        raise ValueError(
            f"fine_tune supports precision 'auto', 'float32' or 'bfloat16', got {precision!r} "
            "(float16 training needs loss scaling, which fine_tune does not do)."
        )
    micro = int(micro_batch_size or batch_size)
    if micro < 1 or int(batch_size) % micro:
        raise ValueError(
            f"micro_batch_size ({micro_batch_size}) must be a positive divisor of batch_size ({batch_size})."
        )
    if not 0.0 <= check_number(validation_fraction, "validation_fraction") < 1.0:
        raise ValueError(f"validation_fraction must lie in [0, 1), got {validation_fraction!r}.")
    if spatial is not None and not isinstance(spatial, bool):
        raise TypeError("spatial must be True, False or None.")
    optimizer = OptimizerConfig(lr=float(lr), min_lr=float(min_lr), warmup_steps=0, weight_decay=float(weight_decay),
                                clip_norm=clip_norm)  # fmt: skip
    torch_device = resolve_device(device)
    seed = resolve_random_state(random_state, "fine_tune")
    base = resolve_model(model)
    record = TokenizeRecord.read(adata)
    if record is not None and spatial is not None and record.spatial != spatial:
        raise ValueError(
            f"adata was tokenised with spatial={record.spatial} but fine_tune was asked for "
            f"spatial={spatial}. "
            f"Run oc.pp.tokenize(adata, model, spatial={spatial}) first, or leave spatial=None."
        )
    kind = "spatial" if (spatial if spatial is not None else record is not None and record.spatial) else "single_cell"
    if isinstance(masking, MaskingConfig):
        masking_config = masking
    else:
        masking_config = MaskingConfig.for_stage(kind, **dict(masking or {}))
    with restore_on_error(adata):  # a failure after the implicit tokenisation leaves adata as it was
        if record is None:
            ensure_tokenized(adata, base, spatial=kind == "spatial")
        plan = plan_inference(adata, base, batch_size=micro, device="cpu", precision="float32")

    started = time.perf_counter()
    result = fine_tune_network(
        plan, base, kind=kind, masking=masking_config, optimizer=optimizer, epochs=int(epochs),
        batch_size=int(batch_size), micro=micro, warmup_steps=warmup_steps,
        validation_fraction=float(validation_fraction), seed=seed, device=torch_device,
        precision=precision if precision in ("float32", "bfloat16") else "auto", log=log, name=name,
        backed=bool(getattr(adata, "isbacked", False)),
    )  # fmt: skip
    tuned = result.model
    write_record(
        adata,
        "fine_tune",
        {
            "kind": kind,
            "epochs": int(epochs),
            "steps": result.steps,
            "batch_size": int(batch_size),
            "micro_batch_size": micro,
            "lr": float(lr),
            "min_lr": float(min_lr),
            "warmup_steps": result.warmup_steps,
            "weight_decay": float(weight_decay),
            "clip_norm": clip_norm,
            "masking": dataclasses.asdict(masking_config),
            "validation_fraction": float(validation_fraction),
            "n_train": result.n_train,
            "n_validation": result.n_validation,
            "seed": seed,
            "device": str(torch_device),
            "precision": result.precision,
            "seconds": time.perf_counter() - started,
            "heldout_loss": np.asarray(result.heldout_loss, dtype=np.float64) if result.heldout_loss else None,
            "train_loss": np.asarray(result.train_loss, dtype=np.float64),
            "base_model": base.name,
            "base_model_sha256": base.sha256,
            **tuned.identity(),
        },
    )
    if container is not None:
        update_mudata(container)
    return tuned
