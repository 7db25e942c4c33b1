"""The OmniCell network in plain PyTorch: tensors in, tensors out, no AnnData.

The layout and ``state_dict`` names follow the official release so its checkpoint loads exactly.
Attention kernels are chosen with ``attention_backend`` (see :mod:`omnicell.model._attention`).
"""

from ._attention import ATTENTION_BACKENDS, RotaryEmbedding2D, SelfAttention, flash_attn_available
from ._checkpoint import load_state_dict, read_official, read_safetensors, write_safetensors
from ._config import OmniCellConfig
from ._embedder import MoEValueEmbedding, TokenEmbedder, load_balance_loss
from ._network import BilinearHead, ForwardOutput, OmniCell, RMSNorm, SwiGLU
from ._pooling import pool_cells, segment_mean
from ._projection import spectral_basis

__all__ = [
    "ATTENTION_BACKENDS",
    "BilinearHead",
    "ForwardOutput",
    "MoEValueEmbedding",
    "OmniCell",
    "OmniCellConfig",
    "RMSNorm",
    "RotaryEmbedding2D",
    "SelfAttention",
    "SwiGLU",
    "TokenEmbedder",
    "flash_attn_available",
    "load_balance_loss",
    "load_state_dict",
    "pool_cells",
    "read_official",
    "read_safetensors",
    "segment_mean",
    "spectral_basis",
    "write_safetensors",
]
