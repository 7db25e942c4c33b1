"""expert_usage: per-gene routing equals the network's, per-cell and per-group usage, z-scores."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch

import omnicell as oc


@pytest.fixture
def routed(tiny_adata, tiny_model, expected):
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"])
    tiny_adata.obs["group"] = np.array(["a", "b", "c"])[np.arange(tiny_adata.n_obs) % 3]
    return tiny_adata


def _forward(adata, model):
    batch = oc.get.token_batch(adata, None, model)
    tensors = batch.to_torch("cpu")
    with torch.inference_mode():
        output = model.network(tensors["tokens"], tensors["values"], tensors["positions"], tensors["padding_mask"])
    return batch, output.routing.numpy()


def test_usage_matches_network_routing(routed, tiny_model, expected):
    oc.tl.expert_usage(routed, "group", tiny_model, batch_size=5)
    batch, routing = _forward(routed, tiny_model)
    genes = batch.tokens[:, 1:-1]
    per_gene = routed.varm["omnicell_experts"]
    rows = routed.var_names.get_indexer(expected["selected_genes"])
    # The router sees only the gene: every cell routes a gene the same way, as the network does.
    for j, row in enumerate(rows):
        np.testing.assert_allclose(
            routing[:, 1 + j], np.broadcast_to(per_gene[row], routing[:, 1 + j].shape), atol=1e-6
        )
    assert np.isnan(np.delete(per_gene, rows, axis=0)).all()
    assert np.all(genes == tiny_model.vocab.token_ids(expected["selected_genes"]))
    # Per cell: mean routing over the expressed gene tokens (cell 0 expresses none: NaN).
    usage = routed.obsm["omnicell_experts"]
    expressed = batch.values[:, 1:-1] > 0
    for cell in range(routed.n_obs):
        if expressed[cell].any():
            np.testing.assert_allclose(usage[cell], routing[cell, 1:-1][expressed[cell]].mean(0), atol=1e-6)
        else:
            assert np.isnan(usage[cell]).all()
    record = routed.uns["omnicell"]["expert_usage"]
    assert record["n_empty_cells"] == 1 and list(record["n_cells"]) == [7, 8, 8]
    mean, zscore = record["mean"], record["zscore"]
    assert list(mean.index) == ["a", "b", "c"] and list(mean.columns) == [f"Expert_{i}" for i in range(usage.shape[1])]
    for label in "abc":
        members = (routed.obs["group"] == label).to_numpy() & np.isfinite(usage).all(1)
        np.testing.assert_allclose(mean.loc[label], usage[members].mean(0), atol=1e-6)
    np.testing.assert_allclose(zscore.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(zscore.std(0, ddof=0), 1.0, atol=1e-6)


def test_topk_weights_are_the_applied_ones(routed, tiny_model):
    oc.tl.expert_usage(routed, "group", tiny_model, weights="topk")
    per_gene = routed.varm["omnicell_experts"]
    selected = np.isfinite(per_gene).all(1)
    assert ((per_gene[selected] > 0).sum(1) == tiny_model.config.topk).all()
    oc.tl.expert_usage(routed, "group", tiny_model, key_added="full")
    full = routed.varm["full"][selected]
    kept = per_gene[selected] > 0
    np.testing.assert_allclose(per_gene[selected][kept], full[kept], atol=1e-7)
    # The kept experts are each gene's most probable ones.
    assert np.all(np.where(kept, full, np.inf).min(1) >= np.where(kept, -np.inf, full).max(1))


def test_result_survives_h5ad(routed, tiny_model, tmp_path):
    oc.tl.expert_usage(routed, "group", tiny_model)
    routed.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    record = back.uns["omnicell"]["expert_usage"]
    np.testing.assert_allclose(record["zscore"].to_numpy(), routed.uns["omnicell"]["expert_usage"]["zscore"].to_numpy())
    np.testing.assert_array_equal(back.obsm["omnicell_experts"], routed.obsm["omnicell_experts"])


def test_bad_input(routed, tiny_model):
    with pytest.raises(KeyError, match="not an obs column"):
        oc.tl.expert_usage(routed, "cell_type", tiny_model)
    with pytest.raises(ValueError, match="weights"):
        oc.tl.expert_usage(routed, "group", tiny_model, weights="mean")
    assert "omnicell_experts" not in routed.obsm
