"""The OmniCell network in plain PyTorch: tensors in, tensors out, no AnnData.

The layout and ``state_dict`` names follow the official release so its checkpoint loads exactly.
Attention kernels are chosen with ``attention_backend`` (see :mod:`omnicell.nn._attention`).
"""

from omnicell.nn._attention import ATTENTION_BACKENDS, RotaryEmbedding2D, SelfAttention, flash_attn_available
from omnicell.nn._checkpoint import file_sha256, load_state_dict, read_official, read_safetensors, write_safetensors
from omnicell.nn._config import OmniCellConfig
from omnicell.nn._embedder import MoEValueEmbedding, TokenEmbedder, load_balance_loss
from omnicell.nn._network import BilinearHead, ForwardOutput, OmniCell, RMSNorm, SwiGLU
from omnicell.nn._pooling import pool_cells, segment_mean
from omnicell.nn._projection import spectral_basis

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
    "file_sha256",
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
