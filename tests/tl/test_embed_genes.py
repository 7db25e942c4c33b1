"""embed_genes: cell-level gene embeddings (per group, to zarr) and the dataset-level GPR-GNN."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import omnicell as oc
from omnicell.tl._gpr_gnn import GeneEmbeddingNet, averaging_vectors, gcn_propagation, knn_kernel_graph


def _tokenised(adata, model, expected):
    oc.pp.tokenize(adata, model, genes=expected["selected_genes"])
    adata.obs["group"] = np.where(np.arange(adata.n_obs) % 3 == 0, "a", "b")
    return adata


def _official_gene_states(expected, model):
    """Projected last-layer states of the selected genes in every cell, from the official outputs."""
    basis = model.spectral_basis(0.9).numpy()
    return expected["sc_hidden"][:, 1:-1] @ basis  # (cells, genes, m)


def test_cell_level_group_means_match_official_states(tiny_adata, tiny_model, expected):
    adata = _tokenised(tiny_adata, tiny_model, expected)
    oc.tl.embed_genes(adata, tiny_model, level="cell", groupby="group", batch_size=5)
    result = adata.varm["omnicell_cell"]
    states = _official_gene_states(expected, tiny_model)
    assert result.shape == (adata.n_vars, 2, states.shape[-1])
    rows = adata.var_names.get_indexer(expected["selected_genes"])
    for g, label in enumerate(["a", "b"]):
        members = (adata.obs["group"] == label).to_numpy()
        np.testing.assert_allclose(result[rows, g], states[members].mean(0), atol=1e-4)
    unselected = np.setdiff1d(np.arange(adata.n_vars), rows)
    assert np.isnan(result[unselected]).all()
    record = adata.uns["omnicell"]["embed_genes"]
    assert list(record["groups"]) == ["a", "b"] and list(record["n_cells"]) == [8, 16]


def test_cell_level_store_and_markers_read_back(tiny_adata, tiny_model, expected, tmp_path):
    import zarr

    adata = _tokenised(tiny_adata, tiny_model, expected)
    store = tmp_path / "cells.zarr"
    oc.tl.embed_genes(adata, tiny_model, level="cell", store=store, batch_size=7)
    group = zarr.open_group(str(store), mode="r")
    np.testing.assert_allclose(group["embeddings"][:], _official_gene_states(expected, tiny_model), atol=1e-4)
    assert list(group.attrs["genes"]) == list(expected["selected_genes"])
    assert list(group.attrs["obs_names"]) == list(adata.obs_names)
    # Markers from the store and from a fresh model pass agree.
    with pytest.warns(UserWarning, match="n_genes=5 exceeds the genes more expressed"):  # 12 genes only
        oc.tl.marker_genes(adata, "group", tiny_model, n_genes=5, store=store, key_added="from_store")
    with pytest.warns(UserWarning, match="n_genes=5 exceeds the genes more expressed"):
        oc.tl.marker_genes(adata, "group", tiny_model, n_genes=5, key_added="from_model")
    for field in ("names", "scores"):
        for label in ("a", "b"):
            np.testing.assert_array_equal(adata.uns["from_store"][field][label], adata.uns["from_model"][field][label])


def test_dataset_level_is_seeded_and_storage_independent(tiny_adata, tiny_model, expected):
    adata = _tokenised(tiny_adata, tiny_model, expected)
    oc.tl.embed_genes(adata, tiny_model, n_neighbors=5, random_state=3, batch_size=24)
    first = adata.varm["omnicell"].copy()
    rows = adata.var_names.get_indexer(expected["selected_genes"])
    assert first.shape == (adata.n_vars, int(expected["n_components"]))
    assert np.isfinite(first[rows]).all()
    assert np.isnan(np.delete(first, rows, axis=0)).all()
    # Another batch size and cell-level states spilled to a temporary zarr store: same result.
    oc.tl.embed_genes(adata, tiny_model, n_neighbors=5, random_state=3, batch_size=5, max_memory=1e-9)
    np.testing.assert_allclose(adata.varm["omnicell"], first, rtol=1e-5, atol=1e-6)
    oc.tl.embed_genes(adata, tiny_model, n_neighbors=5, random_state=4)
    assert not np.allclose(adata.varm["omnicell"][rows], first[rows])
    record = adata.uns["omnicell"]["embed_genes"]
    assert record["level"] == "dataset" and record["n_neighbors"] == 5 and record["seed"] == 4
    loss = np.asarray(record["loss"])
    assert loss.shape == (10,) and loss[-1] < loss[0]  # training reduces the reconstruction error


def test_dataset_level_uses_given_representation(tiny_adata, tiny_model, expected):
    adata = _tokenised(tiny_adata, tiny_model, expected)
    rng = np.random.default_rng(0)
    adata.obsm["X_a"] = rng.normal(size=(adata.n_obs, 4)).astype(np.float32)
    adata.obsm["X_b"] = rng.normal(size=(adata.n_obs, 4)).astype(np.float32)
    results = []
    for rep in ("X_a", "X_b"):
        oc.tl.embed_genes(adata, tiny_model, use_rep=rep, n_neighbors=5, n_epochs=2)
        results.append(adata.varm["omnicell"].copy())
    assert adata.uns["omnicell"]["embed_genes"]["use_rep"] == "X_b"
    assert not np.allclose(np.nan_to_num(results[0]), np.nan_to_num(results[1]))


def test_bad_input_raises_before_writing(tiny_adata, tiny_model, expected):
    adata = _tokenised(tiny_adata, tiny_model, expected)
    varm_before = set(adata.varm)
    with pytest.raises(ValueError, match=r"groupby= .* store="):
        oc.tl.embed_genes(adata, tiny_model, level="cell")
    with pytest.raises(ValueError, match="level"):
        oc.tl.embed_genes(adata, tiny_model, level="gene")
    with pytest.raises(KeyError, match="use_rep"):
        oc.tl.embed_genes(adata, tiny_model, use_rep="X_missing")
    with pytest.raises(ValueError, match="not among the tokenised genes"):
        oc.tl.embed_genes(adata, tiny_model, genes=[adata.var_names[4]])
    assert set(adata.varm) == varm_before and "embed_genes" not in adata.uns["omnicell"]


def test_copy_returns_new_object(tiny_adata, tiny_model, expected):
    adata = _tokenised(tiny_adata, tiny_model, expected)
    result = oc.tl.embed_genes(adata, tiny_model, n_epochs=1, n_neighbors=5, copy=True)
    assert "omnicell" in result.varm and "omnicell" not in adata.varm


# --- the GPR-GNN on its own ---------------------------------------------------------------------


def test_kernel_graph_weights_and_gcn_normalisation():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(40, 3))
    graph = knn_kernel_graph(points, 5)
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    order = np.argsort(distances, axis=1)[:, :5]
    eps = np.take_along_axis(distances, order, 1)[:, -1]
    dense = np.zeros((40, 40))
    for i in range(40):
        for j in order[i]:
            d = distances[i, j]
            dense[i, j] = 0.5 * np.exp(-((d / eps[i]) ** 0.95)) + 0.5 * np.exp(-((d / eps[j]) ** 0.95))
    np.testing.assert_allclose(graph.toarray(), dense, rtol=1e-6)
    # torch_geometric's gcn_norm: messages flow i -> j, self-loops, in-degree of the target.
    a_hat = dense.T + np.eye(40)
    degree = a_hat.sum(1)
    reference = a_hat / np.sqrt(degree[:, None] * degree[None, :])
    np.testing.assert_allclose(gcn_propagation(graph).to_dense().numpy(), reference, rtol=1e-5)


def test_mean_of_propagated_features_equals_weighted_mlp_output():
    rng = np.random.default_rng(2)
    propagation = gcn_propagation(knn_kernel_graph(rng.normal(size=(120, 4)), 6))
    torch.manual_seed(0)
    net = GeneEmbeddingNet(5, 120, 16, chunk=50, n_steps=10, alpha=0.1, dropout=0.0)
    np.testing.assert_allclose(net.gnn.gamma.detach().numpy()[:3], [0.1, 0.09, 0.081], rtol=1e-6)
    assert np.isclose(net.gnn.gamma[-1].item(), 0.9**10)
    x = torch.randn(120, 3, 5)
    target = torch.randn(3, 120)
    averaging = averaging_vectors(propagation, 10)
    grads = []
    for full in (True, False):
        net.zero_grad()
        embedding = net.gnn(x, propagation).mean(0) if full else net.embed(x, averaging)
        torch.nn.functional.mse_loss(net.expression(embedding), target).backward()
        grads.append((embedding.detach().clone(), net.gnn.gamma.grad.clone(), net.gnn.lin1.weight.grad.clone()))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_graph_stays_sparse():
    points = np.random.default_rng(3).normal(size=(2000, 8)).astype(np.float32)
    propagation = gcn_propagation(knn_kernel_graph(points, 15))
    assert propagation.layout == torch.sparse_coo
    assert propagation._nnz() <= 2000 * 16
    assert sp.issparse(knn_kernel_graph(points, 15))


@pytest.mark.parametrize("n_genes", [6, 20])
def test_cell_level_with_per_cell_gene_lists(tiny_adata, tiny_model, expected, tmp_path, n_genes):
    """strategy='expressed': each cell reads its own gene list, in its own order (with 6 of the 12
    candidates, some genes are absent from a cell: NaN)."""
    import zarr

    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"], strategy="expressed", n_genes=n_genes)
    store = tmp_path / "cells.zarr"
    oc.tl.embed_genes(tiny_adata, tiny_model, level="cell", store=store, batch_size=4)
    values = zarr.open_group(str(store), mode="r")["embeddings"][:]
    genes = list(tiny_adata.uns["omnicell"]["tokenize"]["genes"])
    batch = oc.get.token_batch(tiny_adata, None, tiny_model)
    assert len({tuple(row) for row in batch.tokens[:, 1:-1]}) > 1  # cells read different sequences
    tensors = batch.to_torch("cpu")
    with torch.inference_mode():
        hidden = tiny_model.network(tensors["tokens"], tensors["values"], None, tensors["padding_mask"]).hidden
    projected = (hidden @ tiny_model.spectral_basis(0.9)).numpy()
    token_to_gene = {int(t): i for i, t in enumerate(tiny_adata.uns["omnicell"]["tokenize"]["token_ids"])}
    reference = np.full(values.shape, np.nan, dtype=np.float32)
    for cell, position in zip(*np.nonzero(batch.cell_index >= 0), strict=True):
        reference[cell, token_to_gene[int(batch.tokens[cell, position])]] = projected[cell, position]
    np.testing.assert_allclose(values, reference, atol=1e-4)
    assert np.isnan(values).any() == (n_genes < 12) and len(genes) == values.shape[1]
