"""Dataset-level gene embeddings: a GPR-GNN over a sparse kNN cell graph, in plain PyTorch.

Follows the released ``gene_embedding_generate.py`` (which needs torch_geometric and a dense
cells x cells distance matrix) with a sparse graph: memory is O(cells x k) for the graph and
O(cells x genes-per-batch x dims) for a training batch; the MLP runs on chunks of cells.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from omnicell._core.progress import progress

__all__ = [
    "GPRGNN",
    "GeneEmbeddingNet",
    "averaging_vectors",
    "gcn_propagation",
    "knn_kernel_graph",
    "train_gene_embeddings",
]

logger = logging.getLogger("omnicell")


def knn_kernel_graph(embedding: np.ndarray, n_neighbors: int = 15, *, exponent: float = 0.95) -> sp.coo_matrix:
    """Directed kNN graph with the released code's adaptive kernel weights.

    Edge ``i -> j`` (``j`` among the ``n_neighbors`` nearest other cells of ``i``, Euclidean) has
    weight ``0.5 exp(-(d/eps_i)^a) + 0.5 exp(-(d/eps_j)^a)`` with ``eps`` the distance to a
    cell's k-th neighbour and ``a = exponent``; weights <= 1e-4 are dropped, as in the released code.

    Returns
    -------
    (n, n) COO matrix, row = source cell ``i``, column = neighbour ``j``.
    """
    from sklearn.neighbors import NearestNeighbors

    embedding = np.asarray(embedding, dtype=np.float32)
    n = embedding.shape[0]
    k = int(min(n_neighbors, n - 1))
    if k < 1:
        raise ValueError("The cell graph needs at least two cells.")
    search = NearestNeighbors(n_neighbors=k + 1).fit(embedding)
    distances, neighbors = search.kneighbors(embedding)
    # Drop each cell itself (usually the first hit, but not with duplicated cells).
    is_self = neighbors == np.arange(n)[:, None]
    drop = np.where(is_self.any(1), is_self.argmax(1), k)
    keep = np.ones_like(is_self)
    keep[np.arange(n), drop] = False
    neighbors = neighbors[keep].reshape(n, k)
    distances = distances[keep].reshape(n, k).astype(np.float64)
    eps = np.maximum(distances[:, -1], np.finfo(np.float32).tiny)
    ratio_i = distances / eps[:, None]
    ratio_j = distances / eps[neighbors]
    weights = 0.5 * np.exp(-(ratio_i**exponent)) + 0.5 * np.exp(-(ratio_j**exponent))
    rows = np.repeat(np.arange(n), k)
    weights = weights.ravel()
    keep = weights > 1e-4
    return sp.coo_matrix((weights[keep], (rows[keep], neighbors.ravel()[keep])), shape=(n, n))


def gcn_propagation(graph: sp.coo_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """``D^-1/2 (A + I) D^-1/2`` as a sparse COO tensor, as torch_geometric's ``gcn_norm`` builds it.

    Messages flow along the edges (source -> neighbour): ``A[j, i] = w_ij``, self-loops of
    weight 1, and ``D`` the row sums of ``A + I`` (weighted in-degree of each target cell).
    """
    n = graph.shape[0]
    rows = np.concatenate([graph.col, np.arange(n)])  # target
    cols = np.concatenate([graph.row, np.arange(n)])  # source
    weights = np.concatenate([graph.data, np.ones(n)])
    degree = np.bincount(rows, weights=weights, minlength=n)
    inv_sqrt = np.where(degree > 0, degree**-0.5, 0.0)
    values = inv_sqrt[rows] * weights * inv_sqrt[cols]
    matrix = sp.coo_matrix((values.astype(np.float32), (rows, cols)), shape=(n, n)).tocsr().tocoo()  # summed, sorted
    indices = torch.from_numpy(np.vstack([matrix.row, matrix.col]).astype(np.int64))
    tensor = torch.sparse_coo_tensor(indices, torch.from_numpy(matrix.data), size=(n, n), check_invariants=True)
    return tensor.coalesce().to(device)


class GPRGNN(nn.Module):
    """MLP ``d -> hidden -> d`` then K steps of generalised PageRank propagation.

    ``H = sum_k gamma_k P^k Z`` with ``Z`` the MLP output and ``P`` the GCN-normalised graph; the
    coefficients ``gamma_k`` are learnable and start at the personalised-PageRank values
    ``alpha (1 - alpha)^k`` (the last one ``(1 - alpha)^K``), GPR-GNN's ``PPR`` initialisation.
    Input (n, G, d): the n per-cell embeddings of G genes, each gene propagated on its own.
    """

    def __init__(self, dim: int, hidden: int = 128, *, n_steps: int = 10, alpha: float = 0.1, dropout: float = 0.1):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.dropout = dropout
        self.n_steps = n_steps
        gamma = alpha * (1 - alpha) ** np.arange(n_steps + 1)
        gamma[-1] = (1 - alpha) ** n_steps
        self.gamma = nn.Parameter(torch.tensor(gamma, dtype=torch.float32))

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.dropout(x, self.dropout, self.training)
        x = nn.functional.relu(self.lin1(x))
        x = nn.functional.dropout(x, self.dropout, self.training)
        return self.lin2(x)

    def forward(self, x: torch.Tensor, propagation: torch.Tensor) -> torch.Tensor:
        """Propagated per-cell features (n, G, d)."""
        z = self.mlp(x)
        flat = z.reshape(z.shape[0], -1)
        hidden = flat * self.gamma[0]
        for step in range(self.n_steps):
            flat = torch.sparse.mm(propagation, flat)
            hidden = hidden + self.gamma[step + 1] * flat
        return hidden.view(z.shape)


def averaging_vectors(propagation: torch.Tensor, n_steps: int) -> torch.Tensor:
    """(K + 1, n) rows ``(P^T)^k 1 / n``: the mean over cells of ``P^k Z`` is ``row_k . Z``."""
    n = propagation.shape[0]
    transposed = propagation.t().coalesce()
    rows = [torch.full((n, 1), 1.0 / n, dtype=torch.float32, device=propagation.device)]
    for _ in range(n_steps):
        rows.append(torch.sparse.mm(transposed, rows[-1]))
    return torch.cat(rows, 1).T.contiguous()


class GeneEmbeddingNet(nn.Module):
    """GPR-GNN, mean over cells (the gene's embedding), then a linear map to its expression in every cell.

    Only the mean over cells of the propagated features is used, and it equals
    ``sum_c w_c Z_c`` with ``w = sum_k gamma_k (P^T)^k 1 / n`` (:func:`averaging_vectors`). So the
    graph is applied to one vector per step instead of to cells x (genes x dims) features: the
    result is the same, K sparse products of an n-vector replace K of an n x (G d) matrix, and
    the MLP runs on chunks of ``chunk`` cells (recomputed in the backward pass), so memory does not
    grow with cells x genes x hidden.
    """

    def __init__(self, dim: int, n_cells: int, hidden: int = 128, *, chunk: int = 4096, **gnn_options) -> None:
        super().__init__()
        self.gnn = GPRGNN(dim, hidden, **gnn_options)
        self.expression = nn.Linear(dim, n_cells)
        self.chunk = chunk

    def _pooled(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.einsum("n,ngd->gd", weights, self.gnn.mlp(x))

    def embed(self, x: torch.Tensor, averaging: torch.Tensor) -> torch.Tensor:
        """(G, d) gene embeddings from their (n, G, d) per-cell embeddings."""
        from torch.utils.checkpoint import checkpoint

        weights = self.gnn.gamma @ averaging  # (n,)
        total = None
        for start in range(0, x.shape[0], self.chunk):
            part, w = x[start : start + self.chunk], weights[start : start + self.chunk]
            if torch.is_grad_enabled():
                pooled = checkpoint(self._pooled, part, w, use_reentrant=False)  # replays dropout
            else:
                pooled = self._pooled(part, w)
            total = pooled if total is None else total + pooled
        return total

    def forward(self, x: torch.Tensor, averaging: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(x, averaging)
        return embedding, self.expression(embedding)  # (G, n)


def _as_tensor(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """C-ordered float32 tensor, NaN read as 0.

    Dropout masks follow memory order, so the layout must not depend on how the values were read.
    """
    return torch.from_numpy(np.ascontiguousarray(np.nan_to_num(values), dtype=np.float32)).to(device)


def train_gene_embeddings(
    read_genes: Callable[[np.ndarray], np.ndarray],
    read_expression: Callable[[np.ndarray], np.ndarray],
    propagation: torch.Tensor,
    *,
    n_genes: int,
    dim: int,
    hidden: int = 128,
    n_steps: int = 10,
    alpha: float = 0.1,
    dropout: float = 0.1,
    n_epochs: int = 10,
    learning_rate: float = 1e-3,
    gene_batch: int = 20,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Train the GPR-GNN to reconstruct each gene's expression, then embed every gene.

    Parameters
    ----------
    read_genes
        Gene indices -> (n_cells, len, dim) per-cell embeddings (NaN is read as 0).
    read_expression
        Gene indices -> (len, n_cells) expression.

    Each epoch visits the genes in a new random order, ``gene_batch`` at a time (as the released
    code); the embeddings are then computed in evaluation mode (no dropout), 50 genes at a time.

    Returns
    -------
    (n_genes, dim) float32 gene embeddings and the mean training loss of each epoch.
    """
    n_cells = propagation.shape[0]
    averaging = averaging_vectors(propagation.to(device), n_steps)
    # MLP activations of about 32 MB per chunk of cells.
    chunk = max(1, (32 * 1024**2) // (4 * hidden * gene_batch))
    device = torch.device(device)
    # Seed (and afterwards restore) the generators this run draws from: CPU, and the GPU if used.
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        net = GeneEmbeddingNet(dim, n_cells, hidden, chunk=chunk, n_steps=n_steps, alpha=alpha, dropout=dropout)
        net = net.to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
        rng = np.random.default_rng(seed)
        losses = np.zeros(n_epochs)
        bar = progress(total=n_epochs * n_genes, unit="genes", desc="embed_genes (GPR-GNN)")
        with bar:
            for epoch in range(n_epochs):
                net.train()
                total, steps = 0.0, 0
                order = rng.permutation(n_genes)
                for start in range(0, n_genes, gene_batch):
                    genes = order[start : start + gene_batch]
                    x = _as_tensor(read_genes(genes), device)
                    y = torch.from_numpy(np.asarray(read_expression(genes), dtype=np.float32)).to(device)
                    optimizer.zero_grad()
                    _, predicted = net(x, averaging)
                    loss = nn.functional.mse_loss(predicted, y)
                    loss.backward()
                    optimizer.step()
                    total, steps = total + loss.item(), steps + 1
                    bar.update(len(genes))
                losses[epoch] = total / max(steps, 1)
                logger.debug("embed_genes: epoch %d, loss %.4g", epoch + 1, losses[epoch])
        net.eval()
        embeddings = np.empty((n_genes, dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n_genes, 50):
                genes = np.arange(start, min(start + 50, n_genes))
                x = _as_tensor(read_genes(genes), device)
                embeddings[genes] = net.embed(x, averaging).cpu().numpy()
    return embeddings, losses
