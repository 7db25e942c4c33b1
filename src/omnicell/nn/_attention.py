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
``"triton"``
    A Triton kernel (:mod:`omnicell.nn._triton_attention`, ``pip install 'omnicell[kernels]'``)
    that applies the 2D rotary rotation to q and k inside a flash-attention style kernel over packed
    sequences. Forward only: any call that needs gradients (training, fine-tuning) runs through
    SDPA instead, so its flash backward is used. Needs CUDA tensors, or ``TRITON_INTERPRET=1`` set
    before the kernel module is imported (Triton's CPU interpreter, for tests).
``"auto"``
    ``"triton"`` on CUDA when triton can be imported (the kernel skips the separate float32 rotary
    pass and all padding; not measured against SDPA on a GPU yet), else ``"sdpa"``.

Packed batches
--------------
A batch may be *packed*: the sequences laid end to end in one row (1, N) without padding, their
boundaries in ``cu_seqlens`` (B + 1 offsets), every token carrying its own (x, y). Each backend has
a variable-length path: on CUDA, SDPA through a nested (jagged) tensor, ``flash_attn``'s varlen
kernel or the Triton kernel; on CPU, SDPA (or eager attention) once per sequence, which computes
no padded position. :class:`omnicell.nn.OmniCell` packs padded batches itself when padding
exceeds ``pack_threshold``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from omnicell._core.settings import ATTENTION_BACKENDS

__all__ = ["ATTENTION_BACKENDS", "Packing", "Rotary", "RotaryEmbedding2D", "SelfAttention", "resolve_backend"]


def flash_attn_available() -> bool:
    """Whether the optional ``flash_attn`` package can be imported."""
    return importlib.util.find_spec("flash_attn") is not None


def triton_available() -> bool:
    """Whether the optional ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str) -> str:
    """Validate a backend name and resolve ``"auto"``.

    ``"auto"`` stays ``"auto"`` here and is resolved per call (:func:`backend_for`), since the
    tensors' device is known only then.
    """
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"Unknown attention backend {backend!r}; choose one of {', '.join(ATTENTION_BACKENDS)}.")
    if backend == "flash_attn" and not flash_attn_available():
        raise ImportError(
            "The 'flash_attn' attention backend needs the flash-attn package on a CUDA machine: "
            "pip install 'omnicell[flash]', or use backend='sdpa' (fused kernels through PyTorch)."
        )
    if backend == "triton" and not triton_available():
        raise ImportError(
            "The 'triton' attention backend needs the triton package: pip install 'omnicell[kernels]', "
            "or use backend='sdpa'."
        )
    return backend


def backend_for(backend: str, device: torch.device) -> str:
    """The kernel that runs for ``backend`` on ``device`` (``"auto"``: triton on CUDA if importable, else SDPA)."""
    if backend != "auto":
        return backend
    return "triton" if device.type == "cuda" and triton_available() else "sdpa"


@dataclasses.dataclass(frozen=True)
class Packing:
    """Where the sequences of a packed batch (1, N) start and end.

    Attributes
    ----------
    cu_seqlens
        (B + 1,) int32 offsets of the sequences along the packed dimension, starting at 0.
    max_len
        Length of the longest sequence.
    """

    cu_seqlens: torch.Tensor
    max_len: int

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor) -> Packing:
        """Packing of sequences of the given lengths (B,)."""
        cu_seqlens = torch.nn.functional.pad(torch.cumsum(lengths, 0, dtype=torch.int32), (1, 0))
        return cls(cu_seqlens, int(lengths.max()) if lengths.numel() else 0)

    def bounds(self) -> list[tuple[int, int]]:
        """(start, end) of every non-empty sequence (reads the offsets on the host)."""
        offsets = self.cu_seqlens.tolist()
        return [(start, end) for start, end in itertools.pairwise(offsets) if end > start]


@dataclasses.dataclass
class Rotary:
    """The rotary encoding of a batch.

    The per-token angles serve the PyTorch paths; the Triton kernel turns the raw positions and
    frequencies into angles itself.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    positions: torch.Tensor
    inv_freq: torch.Tensor


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

    def encode(self, positions: torch.Tensor) -> Rotary:
        """The rotary encoding of token positions (B, T, 2)."""
        cos, sin = self.angles(positions)
        return Rotary(cos, sin, positions, self.inv_freq.to(positions.device))

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
        rotary: Rotary | None,
        padding_mask: torch.Tensor | None,
        backend: str,
        *,
        packing: Packing | None = None,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over ``x`` (B, T, d), or over the packed sequences of ``x`` (1, N, d) given ``packing``.

        ``padding_mask`` (B, T) is True for real tokens; padded keys get no attention and padded
        query rows are returned as computed (callers ignore them).
        """
        batch, length, _ = x.shape
        q, k, v = (
            proj(x).view(batch, length, self.heads, self.head_dim) for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        backend = backend_for(backend, x.device)
        if backend == "triton" and not return_weights and not _needs_grad(x, q):
            if packing is None:  # the kernel reads packed sequences: make them
                packing, index = _pack_mask(padding_mask, batch, length, x.device)
                out = _triton_attention(q, k, v, rotary, packing, index)
            else:
                out = _triton_attention(q, k, v, rotary, packing, None)
            return self.out_proj(out.reshape(batch, length, -1)), None
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if rotary is not None:
            q = RotaryEmbedding2D.rotate(q, rotary.cos, rotary.sin)
            k = RotaryEmbedding2D.rotate(k, rotary.cos, rotary.sin)
        weights = None
        if packing is not None:
            if return_weights:
                raise ValueError("Attention weights are not returned for packed batches; pass a padded batch.")
            out = _varlen_attention(q, k, v, packing, backend)
        elif return_weights or backend == "eager":
            out, weights = _eager_attention(q, k, v, padding_mask)
        elif backend == "flash_attn":
            out = _flash_attention(q, k, v, padding_mask)
        else:  # sdpa, and triton when gradients are needed
            mask = None if padding_mask is None else padding_mask[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, length, -1)
        return self.out_proj(out), (weights if return_weights else None)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _pack_mask(
    padding_mask: torch.Tensor | None, batch: int, length: int, device: torch.device
) -> tuple[Packing, torch.Tensor | None]:
    """The packing of a padded batch's real tokens and their flat indices (None: no padding)."""
    if padding_mask is None:
        lengths = torch.full((batch,), length, dtype=torch.int32, device=device)
        return Packing.from_lengths(lengths), None
    index = padding_mask.reshape(-1).nonzero().squeeze(1)
    return Packing.from_lengths(padding_mask.sum(1, dtype=torch.int32)), index


def _triton_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rotary: Rotary | None,
    packing: Packing,
    index: torch.Tensor | None,
) -> torch.Tensor:
    """The fused kernel on (B, T, H, D) projections, packed (B = 1) or padded with real tokens at ``index``."""
    from omnicell.nn._triton_attention import interpreted, rotary_attention

    if q.device.type != "cuda" and not interpreted():
        raise RuntimeError(
            "The 'triton' attention backend runs on CUDA tensors only (or under TRITON_INTERPRET=1 for "
            "tests); use backend='sdpa' on this device."
        )
    batch, length, heads, head_dim = q.shape
    flat = [t.reshape(batch * length, heads, head_dim) for t in (q, k, v)]
    positions = None if rotary is None else rotary.positions.reshape(batch * length, 2)
    if index is not None:
        flat = [t.index_select(0, index) for t in flat]
        positions = None if positions is None else positions.index_select(0, index)
    out = rotary_attention(
        *flat, packing.cu_seqlens, packing.max_len, positions, None if rotary is None else rotary.inv_freq
    )
    if index is None:
        return out.view(batch, length, heads, head_dim)
    full = out.new_zeros(batch * length, heads, head_dim)
    full[index] = out
    return full.view(batch, length, heads, head_dim)


def _varlen_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packing: Packing, backend: str
) -> torch.Tensor:
    """Attention within each packed sequence of q, k, v (1, H, N, D)."""
    if backend == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        cu_seqlens, max_len = packing.cu_seqlens, packing.max_len
        out = flash_attn_varlen_func(
            *(t[0].transpose(0, 1) for t in (q, k, v)), cu_seqlens, cu_seqlens, max_len, max_len
        )
        return out.transpose(0, 1)[None]
    if q.device.type == "cuda" and backend != "eager":
        return _nested_sdpa(q, k, v, packing)
    # CPU (and eager): one call per sequence, so no padded position is ever computed
    out = torch.empty_like(q)
    for start, end in packing.bounds():
        part = (t[:, :, start:end] for t in (q, k, v))
        if backend == "eager":
            out[:, :, start:end] = _eager_attention(*part, None)[0]
        else:
            out[:, :, start:end] = F.scaled_dot_product_attention(*part)
    return out


def _nested_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, packing: Packing) -> torch.Tensor:
    """SDPA over the packed sequences as one nested (jagged) batch: fused varlen kernels on CUDA."""
    offsets = packing.cu_seqlens.to(device=q.device, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nested tensors is in prototype.*", category=UserWarning)
        nested = [
            torch.nested.nested_tensor_from_jagged(
                t[0].transpose(0, 1).contiguous(), offsets, max_seqlen=packing.max_len
            ).transpose(1, 2)
            for t in (q, k, v)
        ]
        out = F.scaled_dot_product_attention(*nested)
    return out.transpose(1, 2).values().transpose(0, 1)[None]


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
