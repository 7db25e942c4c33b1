"""Pretraining and fine-tuning: masking, objective, schedule, loop, checkpoints, streaming, torchrun.

The objective is the paper's masked soft-rank regression (Huber loss on the symmetric bilinear
head's predictions at masked positions) plus the MoE load-balance loss with its adaptive weight.
:func:`pretrain` runs a recipe file (``omnicell pretrain RECIPE``), alone or under ``torchrun``;
:func:`fine_tune_network` continues training on one planned pass (what :func:`omnicell.tl.fine_tune` runs
on an AnnData).
"""

from omnicell.data import human_gene_ids
from omnicell.train._build_vocab import build_vocabulary
from omnicell.train._distributed import DistributedContext, init_distributed
from omnicell.train._fine_tune import MAX_VALIDATION_CELLS, FineTuneResult, fine_tune_network
from omnicell.train._loop import LOG_COLUMNS, LossLog, StepPosition, train_loop
from omnicell.train._losses import ObjectiveConfig, adaptive_balance_weight, masked_huber
from omnicell.train._masking import MaskedBatch, MaskingConfig, mask_batch
from omnicell.train._pretrain import pretrain, step_batches
from omnicell.train._recipe import DataFileSpec, ModelSection, Recipe, StageSpec, read_recipe
from omnicell.train._schedule import WarmupCosine, warmup_cosine_rate
from omnicell.train._stream import CellStream, StreamSource, concat_batches, open_h5ad_source
from omnicell.train._trainer import OptimizerConfig, StepResult, Trainer, evaluate_masked_loss
from omnicell.train._training_state import find_latest, load_training_state, save_checkpoint, weights_sha256

__all__ = [
    "LOG_COLUMNS",
    "MAX_VALIDATION_CELLS",
    "CellStream",
    "DataFileSpec",
    "DistributedContext",
    "FineTuneResult",
    "LossLog",
    "MaskedBatch",
    "MaskingConfig",
    "ModelSection",
    "ObjectiveConfig",
    "OptimizerConfig",
    "Recipe",
    "StageSpec",
    "StepPosition",
    "StepResult",
    "StreamSource",
    "Trainer",
    "WarmupCosine",
    "adaptive_balance_weight",
    "build_vocabulary",
    "concat_batches",
    "evaluate_masked_loss",
    "find_latest",
    "fine_tune_network",
    "human_gene_ids",
    "init_distributed",
    "load_training_state",
    "mask_batch",
    "masked_huber",
    "open_h5ad_source",
    "pretrain",
    "read_recipe",
    "save_checkpoint",
    "step_batches",
    "train_loop",
    "warmup_cosine_rate",
    "weights_sha256",
]
