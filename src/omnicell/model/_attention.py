"""Multi-head self-attention with 2D rotary encoding and interchangeable kernels.

Backends
--------
``"sdpa"``
    :func:`torch.nn.functional.scaled_dot_product_attention`: fused flash / memory-efficient /
    cuDNN kernels on CUDA (bf16/fp16), the math kernel in float32 on CPU. The default.
``"flash_attn"``
    The ``flash_attn`` package (CUDA, fp16/bf16 only); padded batches use its variable-length kernel.
``"eager"``
    Explicit softmax attention in PyTorch; the only backend that can return attention weights.
``"auto"``
    ``"sdpa"``.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ATTENTION_BACKENDS", "RotaryEmbedding2D", "SelfAttention", "resolve_backend"]

ATTENTION_BACKENDS = ("auto", "sdpa", "flash_attn", "eager")


def flash_attn_available() -> bool:
    """Whether the optional ``flash_attn`` package can be imported."""
    return importlib.util.find_spec("flash_attn") is not None


def resolve_backend(backend: str) -> str:
    """Validate a backend name and resolve ``"auto"``."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"Unknown attention backend {backend!r}; choose one of {', '.join(ATTENTION_BACKENDS)}.")
    if backend == "flash_attn" and not flash_attn_available():
        raise ImportError(
            "The 'flash_attn' attention backend needs the flash-attn package on a CUDA machine: "
            "pip install 'omnicell[flash]', or use backend='sdpa' (fused kernels through PyTorch)."
        )
    return "sdpa" if backend == "auto" else backend


class RotaryEmbedding2D(nn.Module):
    """2D rotary position encoding of the released model.

    Inverse frequencies are ``base ** (-2j / dim)`` for ``j = 0 .. dim/2 - 1``. Channels of a head
    are rotated in interleaved pairs ``(2j, 2j + 1)``; pair ``j`` turns by ``pos[j % 2] * inv_freq[j]``,
    so even pairs follow x and odd pairs follow y. Angles are computed in float32.
    """

    def __init__(self, dim: int, base: float) -> None:
        super().__init__()
        # A plain attribute, not a buffer: ``module.to(torch.bfloat16)`` must not round the
        # frequencies, since raw coordinates make the angles large.
        self.inv_freq = (base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)).float()

    def angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosines and sines (B, 1, T, dim/2) for token positions (B, T, 2), in float32."""
        inv_freq = self.inv_freq.to(positions.device)
        axis = torch.arange(inv_freq.shape[0], device=positions.device) % 2
        theta = positions.float()[..., axis] * inv_freq
        return theta.cos().unsqueeze(1), theta.sin().unsqueeze(1)

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Rotate interleaved channel pairs of ``x`` (B, H, T, D) by the given angles."""
        pairs = x.float().unflatten(-1, (-1, 2))
        first, second = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack((first * cos - second * sin, first * sin + second * cos), dim=-1)
        return rotated.flatten(-2).to(x.dtype)


class SelfAttention(nn.Module):
    """Non-causal multi-head self-attention, bias-free projections, scale ``head_dim ** -0.5``."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None,
        padding_mask: torch.Tensor | None,
        backend: str,
        *,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over ``x`` (B, T, d).

        ``padding_mask`` (B, T) is True for real tokens; padded keys get no attention and padded
        query rows are returned as computed (callers ignore them).
        """
        batch, length, _ = x.shape
        q, k, v = (
            proj(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        if rotary is not None:
            cos, sin = rotary
            q = RotaryEmbedding2D.rotate(q, cos, sin)
            k = RotaryEmbedding2D.rotate(k, cos, sin)
        weights = None
        if return_weights or backend == "eager":
            out, weights = _eager_attention(q, k, v, padding_mask)
        elif backend == "flash_attn":
            out = _flash_attention(q, k, v, padding_mask)
        else:
            mask = None if padding_mask is None else padding_mask[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, length, -1)
        return self.out_proj(out), (weights if return_weights else None)


def _eager_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, padding_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    if padding_mask is not None:
        scores = scores.masked_fill(~padding_mask[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return weights @ v, weights


def _flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, padding_mask: torch.Tensor | None
) -> torch.Tensor:
    from flash_attn import flash_attn_func, flash_attn_varlen_func

    if q.dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(
            "The flash_attn backend runs in float16 or bfloat16 only; load the model with "
            "dtype=torch.bfloat16 or use backend='sdpa'."
        )
    # flash_attn wants (B, T, H, D)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if padding_mask is None or bool(padding_mask.all()):
        return flash_attn_func(q, k, v, causal=False).transpose(1, 2)
    batch, length, heads, head_dim = q.shape
    lengths = padding_mask.sum(1, dtype=torch.int32)
    cu_seqlens = F.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
    flat = padding_mask.reshape(-1)
    packed = [t.reshape(batch * length, heads, head_dim)[flat] for t in (q, k, v)]
    max_len = int(lengths.max())
    out_packed = flash_attn_varlen_func(*packed, cu_seqlens, cu_seqlens, max_len, max_len, causal=False)
    out = q.new_zeros(batch * length, heads, head_dim)
    out[flat] = out_packed
    return out.view(batch, length, heads, head_dim).transpose(1, 2)
