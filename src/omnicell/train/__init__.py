"""Pretraining and fine-tuning: masking, objective, schedule, loop, checkpoints, streaming, torchrun.

The objective is the paper's masked soft-rank regression (Huber loss on the symmetric bilinear
head's predictions at masked positions) plus the MoE load-balance loss with its adaptive weight.
:func:`pretrain` runs a recipe file (``omnicell pretrain RECIPE``), alone or under ``torchrun``;
:func:`omnicell.tl.fine_tune` continues training on one AnnData.
"""

from ._checkpoint import find_latest, load_training_state, save_checkpoint, weights_sha256
from ._distributed import DistributedContext, init_distributed
from ._loop import LOG_COLUMNS, LossLog, StepPosition, train_loop
from ._losses import ObjectiveConfig, adaptive_balance_weight, masked_huber
from ._masking import MaskedBatch, MaskingConfig, mask_batch
from ._pretrain import pretrain, step_batches
from ._recipe import DataFileSpec, ModelSection, Recipe, StageSpec, read_recipe
from ._schedule import WarmupCosine, warmup_cosine_rate
from ._stream import CellStream, StreamSource, concat_batches, open_h5ad_source
from ._trainer import OptimizerConfig, StepResult, Trainer, evaluate_masked_loss
from ._vocab import build_vocabulary, human_gene_ids

__all__ = [
    "LOG_COLUMNS",
    "CellStream",
    "DataFileSpec",
    "DistributedContext",
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
