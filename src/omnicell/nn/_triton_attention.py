"""Fused 2D-rotary attention over packed sequences: one Triton kernel, forward pass only.

The kernel reads q, k, v as packed ``(N, H, D)`` tensors (the sequences of a batch laid end to end,
``cu_seqlens`` marking where each starts), rotates q and k by the 2D rotary encoding of every
token's ``(x, y)`` while loading them, and runs flash-attention's online softmax: inputs in
fp16/bf16 (or fp32), scores and the running sums in fp32, one pass over the keys, no ``T x T``
matrix in memory, no padded position computed.

The rotation follows :class:`omnicell.nn.RotaryEmbedding2D`: channels are rotated in interleaved
pairs ``(2j, 2j + 1)``, pair ``j`` by ``pos[j % 2] * inv_freq[j]`` with the angle in float32, and the
rotated values are rounded to the input dtype (as the eager path does) before the dot products.
Since a pair's two channels only ever meet in the sum ``q_2j k_2j + q_2j+1 k_2j+1``, the kernel keeps
the even and the odd channels as two half-width tiles and adds two half-width dot products, so
nothing is ever re-interleaved.

There is no backward kernel: :func:`omnicell.nn._attention` routes every call that needs
gradients through SDPA (whose flash backward runs on CUDA), so training and fine-tuning are
unaffected by choosing ``"triton"``.

Under ``TRITON_INTERPRET=1`` (set before this module is imported) the kernel runs on CPU tensors
through Triton's interpreter, which is how the tests check it without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["interpreted", "rotary_attention"]


def interpreted() -> bool:
    """Whether this module's kernel was defined under Triton's CPU interpreter."""
    return type(_rotary_attention_kernel).__name__ == "InterpretedFunction"


@triton.jit
def _rotate(even, odd, pos_x, pos_y, inv_freq, pair):
    """Rotate channel pairs (even, odd) (rows, HALF) by ``pos[pair % 2] * inv_freq``, in float32."""
    pos = tl.where((pair % 2 == 0)[None, :], pos_x[:, None], pos_y[:, None])
    theta = pos * inv_freq[None, :]
    cos = tl.cos(theta)
    sin = tl.sin(theta)
    return even * cos - odd * sin, even * sin + odd * cos


@triton.jit
def _rotary_attention_kernel(
    Q,
    K,
    V,
    Out,
    Pos,
    InvFreq,
    CuSeqlens,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_ot,
    stride_oh,
    n_heads,
    half_dim,
    head_dim,
    sm_scale,
    HAS_ROTARY: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_HALF: tl.constexpr,
    BLOCK_D: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    block_m = tl.program_id(0)
    sequence = tl.program_id(1) // n_heads
    head = tl.program_id(1) % n_heads
    start = tl.load(CuSeqlens + sequence)
    length = tl.load(CuSeqlens + sequence + 1) - start

    rows = block_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < length
    pair = tl.arange(0, BLOCK_HALF)
    pair_ok = pair < half_dim
    channel = tl.arange(0, BLOCK_D)
    channel_ok = channel < head_dim
    dtype = Q.dtype.element_ty

    # q tile as its even and odd channels (padded channels read as 0 and add nothing)
    q_ptr = Q + (start + rows)[:, None] * stride_qt + head * stride_qh + 2 * pair[None, :]
    q_mask = row_ok[:, None] & pair_ok[None, :]
    q_even = tl.load(q_ptr, mask=q_mask, other=0.0)
    q_odd = tl.load(q_ptr + 1, mask=q_mask, other=0.0)
    if HAS_ROTARY:
        inv_freq = tl.load(InvFreq + pair, mask=pair_ok, other=0.0)
        qx = tl.load(Pos + (start + rows) * 2, mask=row_ok, other=0.0)
        qy = tl.load(Pos + (start + rows) * 2 + 1, mask=row_ok, other=0.0)
        q_even, q_odd = _rotate(q_even.to(tl.float32), q_odd.to(tl.float32), qx, qy, inv_freq, pair)
        q_even = q_even.to(dtype)
        q_odd = q_odd.to(dtype)

    running_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    running_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for key_start in range(0, length, BLOCK_N):
        cols = key_start + tl.arange(0, BLOCK_N)
        col_ok = cols < length
        k_ptr = K + (start + cols)[:, None] * stride_kt + head * stride_kh + 2 * pair[None, :]
        k_mask = col_ok[:, None] & pair_ok[None, :]
        k_even = tl.load(k_ptr, mask=k_mask, other=0.0)
        k_odd = tl.load(k_ptr + 1, mask=k_mask, other=0.0)
        if HAS_ROTARY:
            kx = tl.load(Pos + (start + cols) * 2, mask=col_ok, other=0.0)
            ky = tl.load(Pos + (start + cols) * 2 + 1, mask=col_ok, other=0.0)
            k_even, k_odd = _rotate(k_even.to(tl.float32), k_odd.to(tl.float32), kx, ky, inv_freq, pair)
            k_even = k_even.to(dtype)
            k_odd = k_odd.to(dtype)
        scores = tl.dot(q_even, tl.trans(k_even), input_precision=DOT_PRECISION)
        scores += tl.dot(q_odd, tl.trans(k_odd), input_precision=DOT_PRECISION)
        scores = tl.where(col_ok[None, :], scores * sm_scale, float("-inf"))

        new_max = tl.maximum(running_max, tl.max(scores, 1))
        probabilities = tl.exp(scores - new_max[:, None])
        correction = tl.exp(running_max - new_max)
        running_sum = running_sum * correction + tl.sum(probabilities, 1)
        v_ptr = V + (start + cols)[:, None] * stride_vt + head * stride_vh + channel[None, :]
        v = tl.load(v_ptr, mask=col_ok[:, None] & channel_ok[None, :], other=0.0)
        acc = acc * correction[:, None] + tl.dot(probabilities.to(dtype), v, input_precision=DOT_PRECISION)
        running_max = new_max

    out = acc / running_sum[:, None]
    o_ptr = Out + (start + rows)[:, None] * stride_ot + head * stride_oh + channel[None, :]
    tl.store(o_ptr, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & channel_ok[None, :])


def rotary_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_len: int,
    positions: torch.Tensor | None,
    inv_freq: torch.Tensor | None,
) -> torch.Tensor:
    """Attention of packed sequences with the 2D rotary encoding applied to q and k in the kernel.

    Parameters
    ----------
    q, k, v
        (N, H, D) packed un-rotated projections (fp16, bf16 or fp32), the last dimension contiguous.
    cu_seqlens
        (B + 1,) int32 offsets of the sequences in the packed dimension.
    max_len
        Length of the longest sequence.
    positions
        (N, 2) float32 (x, y) of every token, or None for no rotation (single-cell mode).
    inv_freq
        (D / 2,) float32 rotary inverse frequencies (ignored without ``positions``).

    Returns
    -------
    (N, H, D) attention output in the dtype of ``q``.
    """
    n_tokens, n_heads, head_dim = q.shape
    if head_dim % 2:
        raise ValueError(f"The rotary attention kernel needs an even head width, got {head_dim}.")
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty_like(q)
    if n_tokens == 0:
        return out
    has_rotary = positions is not None
    if has_rotary:
        positions = positions.reshape(n_tokens, 2).float().contiguous()
        inv_freq = inv_freq.to(device=q.device, dtype=torch.float32).contiguous()
    else:  # never read: any float32 tensor on the device stands in
        positions = inv_freq = q.new_zeros(2, dtype=torch.float32)
    cu_seqlens = cu_seqlens.to(device=q.device, dtype=torch.int32).contiguous()
    n_sequences = cu_seqlens.numel() - 1
    # Interpreted tiles cost per program, not per element: one tile per sequence runs tests fastest.
    block_m = block_n = 64 if not interpreted() else min(128, max(16, triton.next_power_of_2(int(max_len))))
    grid = (triton.cdiv(max(int(max_len), 1), block_m), n_sequences * n_heads)
    _rotary_attention_kernel[grid](
        q,
        k,
        v,
        out,
        positions,
        inv_freq,
        cu_seqlens,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        v.stride(0),
        v.stride(1),
        out.stride(0),
        out.stride(1),
        n_heads,
        head_dim // 2,
        head_dim,
        head_dim**-0.5,
        HAS_ROTARY=has_rotary,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        # tl.dot needs tiles of at least 16 on every side; narrow heads are zero-padded
        BLOCK_HALF=max(16, triton.next_power_of_2(head_dim // 2)),
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
    )
    return out
