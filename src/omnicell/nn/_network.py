"""The OmniCell transformer: embedder, pre-norm blocks and the symmetric bilinear output head."""

from __future__ import annotations

import dataclasses

import torch
import torch.utils.checkpoint
from torch import nn

from omnicell.nn._attention import Packing, Rotary, RotaryEmbedding2D, SelfAttention, resolve_backend
from omnicell.nn._config import OmniCellConfig
from omnicell.nn._embedder import TokenEmbedder, load_balance_loss
from omnicell.nn._pooling import segment_mean

__all__ = ["BilinearHead", "ForwardOutput", "OmniCell", "RMSNorm", "SwiGLU"]


class RMSNorm(nn.Module):
    """RMS normalisation computed in float32, cast back, then scaled by ``gamma``."""

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.gamma.to(x.dtype)


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` without biases."""

    def __init__(self, d_model: int, hidden_dim: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden_dim, bias=False)
        self.up_proj = nn.Linear(d_model, hidden_dim, bias=False)
        self.down_proj = nn.Linear(hidden_dim, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))`` then ``x + ffn(norm(x))``."""

    def __init__(self, config: OmniCellConfig) -> None:
        super().__init__()
        self.norm_attn = RMSNorm(config.d_model, config.eps)
        self.self_attn = SelfAttention(config.d_model, config.heads)
        self.norm_ffn = RMSNorm(config.d_model, config.eps)
        self.ffn = SwiGLU(config.d_model, int(config.hidden_dim))  # type: ignore[arg-type]
        # Where the released model applies its dropout is not published; residual-branch dropout
        # is the common choice and only matters in training.
        self.dropout = nn.Dropout(config.dropout)

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
        attended, weights = self.self_attn(
            self.norm_attn(x), rotary, padding_mask, backend, packing=packing, return_weights=return_weights
        )
        x = x + self.dropout(attended)
        x = x + self.dropout(self.ffn(self.norm_ffn(x)))
        return x, weights


class BilinearHead(nn.Module):
    """Symmetric bilinear output head: score ``h_g @ W_sym @ c`` with ``W_sym = (W + W^T) / 2``.

    ``c`` is the mean of the gene-token states of the token's own cell block (markers excluded).
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(d_model, d_model))
        nn.init.normal_(self.W, std=d_model**-0.5)

    def symmetric(self) -> torch.Tensor:
        """The symmetric matrix ``(W + W^T) / 2``."""
        return (self.W + self.W.T) / 2

    def forward(self, hidden: torch.Tensor, cell_index: torch.Tensor) -> torch.Tensor:
        """Predicted soft rank (B, T) of every token; ``cell_index`` (B, T) is -1 off gene tokens."""
        n_cells = int(cell_index.max()) + 1 if cell_index.numel() else 1
        context = segment_mean(hidden.float(), cell_index, max(n_cells, 1))
        per_token = context.gather(1, cell_index.clamp_min(0).unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        scores = ((hidden.float() @ self.symmetric().float()) * per_token).sum(-1)
        return scores.masked_fill(cell_index < 0, 0.0)


@dataclasses.dataclass
class ForwardOutput:
    """Result of :meth:`OmniCell.forward`.

    Attributes
    ----------
    hidden
        Last-layer token states (B, T, d), no final norm.
    load_balance_loss
        MoE load-balance loss over the real tokens of the batch.
    routing
        Routing probabilities (B, T, R) of the value experts.
    attentions
        Per layer attention weights (B, H, T, T) when requested, else None.
    """

    hidden: torch.Tensor
    load_balance_loss: torch.Tensor
    routing: torch.Tensor
    attentions: list[torch.Tensor] | None = None


class OmniCell(nn.Module):
    """The OmniCell network on tensors (no AnnData).

    ``state_dict`` keys and shapes are those of the official ``backbone.pth``.

    Parameters
    ----------
    config
        Network hyper-parameters.
    attention_backend
        ``"auto"``, ``"sdpa"``, ``"flash_attn"``, ``"eager"`` or ``"triton"``; see :mod:`omnicell.nn`.
    pack_threshold
        Padded batches whose share of padding tokens exceeds this are packed (padding removed, the
        sequences laid end to end) for the forward pass and unpacked afterwards; None never packs.
        Results are the same either way (up to float rounding).
    checkpoint_activations
        In training, recompute each block's activations in the backward pass instead of keeping
        them (less memory for long spatial windows, about a third more compute); same gradients.
    """

    def __init__(
        self,
        config: OmniCellConfig,
        *,
        attention_backend: str = "auto",
        pack_threshold: float | None = 0.05,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.embedder = TokenEmbedder(
            config.num_gene, config.d_model, config.num_shared, config.num_routing, config.topk
        )
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.output = BilinearHead(config.d_model)
        self.rotary = RotaryEmbedding2D(config.dim, config.base) if config.rotary else None
        self.attention_backend = resolve_backend(attention_backend)
        self.pack_threshold = pack_threshold
        self.checkpoint_activations = checkpoint_activations

    def initialize_weights(self, std: float) -> None:
        """Draw every linear, embedding and expert weight from ``N(0, std)`` (norm gains and ``output.W`` kept).

        How a new model starts pretraining (``init_std`` of a recipe); loaded checkpoints never call it.
        """
        if not std > 0:
            raise ValueError(f"init_std must be positive, got {std!r}.")
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    module.weight.normal_(0.0, std)

    def set_attention_backend(self, backend: str) -> None:
        """Switch the attention kernel (``"auto"``, ``"sdpa"``, ``"flash_attn"``, ``"eager"`` or ``"triton"``)."""
        self.attention_backend = resolve_backend(backend)

    def forward(
        self,
        tokens: torch.Tensor,
        values: torch.Tensor,
        positions: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        *,
        cu_seqlens: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> ForwardOutput:
        """Run the network.

        Parameters
        ----------
        tokens
            Token ids (B, T).
        values
            Soft-rank values (B, T), 0 at marker tokens.
        positions
            Raw (x, y) coordinates of each token's cell (B, T, 2); None means (0, 0) everywhere
            (single-cell mode), where the rotary encoding is the identity and is skipped.
        padding_mask
            (B, T), True for real tokens; None when no sequence is padded.
        cu_seqlens
            The batch is already packed: ``tokens`` (1, N) holds the sequences end to end and
            ``cu_seqlens`` (B + 1,) their offsets; ``padding_mask`` must then be None.
        return_attention
            Also return the attention weights of every layer (uses the eager kernel; never packs).

        Returns
        -------
        Outputs in the layout of the inputs (padded batches come back padded even when packed
        on the way).
        """
        if cu_seqlens is not None:
            if padding_mask is not None or tokens.shape[0] != 1:
                raise ValueError("A packed batch is one row (1, N) without padding_mask.")
            lengths = torch.diff(cu_seqlens)
            packing = Packing.from_lengths(lengths)
            return self._forward(tokens, values, positions, None, packing, return_attention=return_attention)
        if padding_mask is None or return_attention or not self._worth_packing(padding_mask):
            return self._forward(tokens, values, positions, padding_mask, None, return_attention=return_attention)
        # Pack: keep the real tokens only, run, and scatter the states back to the padded layout.
        batch, length = tokens.shape
        index = padding_mask.reshape(-1).nonzero().squeeze(1)
        packing = Packing.from_lengths(padding_mask.sum(1, dtype=torch.int32))
        packed = self._forward(
            tokens.reshape(-1)[index][None],
            values.reshape(-1)[index][None],
            None if positions is None else positions.reshape(-1, 2)[index][None],
            None,
            packing,
            return_attention=False,
        )
        return ForwardOutput(
            hidden=_unpack(packed.hidden, index, batch, length),
            load_balance_loss=packed.load_balance_loss,
            routing=_unpack(packed.routing, index, batch, length),
        )

    def forward_flops(self, n_tokens: int, n_sequences: int) -> float:
        """Matrix-multiply FLOPs of one forward over ``n_sequences`` sequences of ``n_tokens`` in all.

        As ``benchmarks/forward.py`` counts them (2 per multiply-add; norms, rotary and softmax not
        counted), with every sequence taken at the mean length; training costs about 3x this.
        """
        config = self.config
        d, hidden, layers = config.d_model, int(config.hidden_dim), config.num_layers  # type: ignore[arg-type]
        per_token = layers * (8 * d * d + 6 * d * hidden) + 2 * d * d + 4 * d * config.num_routing
        mean_length = n_tokens / max(n_sequences, 1)
        return float(per_token * n_tokens + layers * 4 * d * mean_length * n_tokens)

    def _worth_packing(self, padding_mask: torch.Tensor) -> bool:
        if self.pack_threshold is None:
            return False
        return float((~padding_mask).float().mean()) > self.pack_threshold

    def _forward(
        self,
        tokens: torch.Tensor,
        values: torch.Tensor,
        positions: torch.Tensor | None,
        padding_mask: torch.Tensor | None,
        packing: Packing | None,
        *,
        return_attention: bool,
    ) -> ForwardOutput:
        x, probabilities, top_indices = self.embedder(tokens, values)
        rotary = None
        if self.rotary is not None and positions is not None and bool(positions.any()):
            rotary = self.rotary.encode(positions)
        attentions: list[torch.Tensor] | None = [] if return_attention else None
        checkpoint = self.checkpoint_activations and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if checkpoint:
                x, weights = torch.utils.checkpoint.checkpoint(
                    layer, x, rotary, padding_mask, self.attention_backend, packing=packing, use_reentrant=False
                )
            else:
                x, weights = layer(
                    x, rotary, padding_mask, self.attention_backend, packing=packing, return_weights=return_attention
                )
            if attentions is not None and weights is not None:
                attentions.append(weights)
        balance = load_balance_loss(probabilities, top_indices, padding_mask)
        return ForwardOutput(hidden=x, load_balance_loss=balance, routing=probabilities, attentions=attentions)


def _unpack(packed: torch.Tensor, index: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """(1, N, ...) states of a packed batch back to (B, T, ...), zeros at the padded positions."""
    full = packed.new_zeros(batch * length, *packed.shape[2:])
    full[index] = packed[0]
    return full.view(batch, length, *packed.shape[2:])
