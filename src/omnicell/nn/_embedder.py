"""Token embedding: gene identity plus a mixture-of-experts embedding of the expression value."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MoEValueEmbedding", "TokenEmbedder", "load_balance_loss"]


class MoEValueEmbedding(nn.Module):
    """Gene-aware mixture-of-experts embedding of a scalar expression value.

    Every expert is a bias-free ``Linear(1, d)``, i.e. one ``d``-vector scaled by the value. The
    router sees only the gene embedding, so each gene's routing is fixed once trained. The top-k
    routing probabilities are used as they are (not renormalised), as in the released model.
    """

    def __init__(self, d_model: int, num_shared: int, num_routing: int, topk: int) -> None:
        super().__init__()
        self.topk = topk
        self.num_routing = num_routing
        self.shared_experts = nn.ModuleList(nn.Linear(1, d_model, bias=False) for _ in range(num_shared))
        self.routing_experts = nn.ModuleList(nn.Linear(1, d_model, bias=False) for _ in range(num_routing))
        self.router = nn.Sequential(
            nn.Linear(d_model, d_model, bias=False), nn.ReLU(), nn.Linear(d_model, num_routing, bias=False)
        )

    def routing(self, gene_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Routing probabilities (..., R) and the indices (..., k) of the top-k experts."""
        probabilities = torch.softmax(self.router(gene_embedding).float(), dim=-1)
        top_indices = torch.topk(probabilities, self.topk, dim=-1).indices
        return probabilities, top_indices

    def forward(
        self, values: torch.Tensor, gene_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed ``values`` (B, T) given the gene embeddings (B, T, d).

        Returns the value embedding (B, T, d), the routing probabilities (B, T, R) and the top-k
        expert indices (B, T, k).
        """
        probabilities, top_indices = self.routing(gene_embedding)
        sparse_weights = torch.zeros_like(probabilities).scatter(-1, top_indices, probabilities.gather(-1, top_indices))
        shared = torch.stack([expert.weight[:, 0] for expert in self.shared_experts]).sum(0)
        routed_vectors = torch.stack([expert.weight[:, 0] for expert in self.routing_experts])
        direction = shared + sparse_weights.to(routed_vectors.dtype) @ routed_vectors
        embedding = values.unsqueeze(-1).to(direction.dtype) * direction
        return embedding, probabilities, top_indices


def load_balance_loss(
    probabilities: torch.Tensor, top_indices: torch.Tensor, token_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """DeepSeek-style load-balance loss of a batch of routing decisions.

    ``f_i = count_i * R / (k * T)`` with ``count_i`` the number of tokens whose top-k holds expert
    ``i``, ``P_i`` the mean routing probability of expert ``i``; the loss is ``sum_i f_i * P_i``.
    All real tokens count (special tokens included, as in the released code); padding does not.
    """
    num_routing = probabilities.shape[-1]
    topk = top_indices.shape[-1]
    probabilities = probabilities.reshape(-1, num_routing).float()
    top_indices = top_indices.reshape(-1, topk)
    if token_mask is not None:
        keep = token_mask.reshape(-1)
        probabilities, top_indices = probabilities[keep], top_indices[keep]
    n_tokens = probabilities.shape[0]
    if n_tokens == 0:
        return probabilities.new_zeros(())
    counts = torch.bincount(top_indices.reshape(-1), minlength=num_routing).to(probabilities.dtype)
    frequency = counts * num_routing / (topk * n_tokens)
    return (frequency * probabilities.mean(0)).sum()


class TokenEmbedder(nn.Module):
    """Sum of the gene identity embedding and the MoE value embedding."""

    def __init__(self, num_gene: int, d_model: int, num_shared: int, num_routing: int, topk: int) -> None:
        super().__init__()
        self.gene_embedding = nn.Embedding(num_gene, d_model)
        self.value_embedding = MoEValueEmbedding(d_model, num_shared, num_routing, topk)

    def forward(self, tokens: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return token states (B, T, d), routing probabilities and top-k expert indices."""
        gene = self.gene_embedding(tokens)
        value, probabilities, top_indices = self.value_embedding(values, gene)
        return gene + value.to(gene.dtype), probabilities, top_indices
