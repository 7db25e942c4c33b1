"""gene_importance: attention received by each gene token, pooled over heads and layers; ROC helper."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import roc_auc_score

import omnicell as oc


@pytest.fixture
def tokenised(tiny_adata, tiny_model, expected):
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"])
    tiny_adata.obs["group"] = np.array(["a", "b"])[np.arange(tiny_adata.n_obs) % 2]
    return tiny_adata


def _full_attention(adata, model):
    """Per layer (B, H, T, T) attention maps of all cells, straight from the network."""
    batch = oc.get.token_batch(adata, None, model)
    tensors = batch.to_torch("cpu")
    with torch.inference_mode():
        output = model.network(tensors["tokens"], tensors["values"], tensors["positions"], tensors["padding_mask"],
                               return_attention=True)  # fmt: skip
    return [a.numpy() for a in output.attentions]


def test_importance_is_received_attention(tokenised, tiny_model, expected):
    oc.tl.gene_importance(tokenised, tiny_model, groupby="group", batch_size=5)
    maps = _full_attention(tokenised, tiny_model)
    received = np.mean([a.mean(axis=(1, 2)) for a in maps], axis=0)  # mean over layers, heads, queries
    rows = tokenised.var_names.get_indexer(expected["selected_genes"])
    layer = tokenised.layers["omnicell_importance"]
    assert sp.issparse(layer) and layer.shape == tokenised.shape and layer.dtype == np.float32
    np.testing.assert_allclose(layer.toarray()[:, rows], received[:, 1:-1], rtol=1e-5, atol=1e-8)
    assert layer[:, np.setdiff1d(np.arange(tokenised.n_vars), rows)].nnz == 0
    per_group = tokenised.varm["omnicell_importance"]
    for g, label in enumerate(["a", "b"]):
        members = (tokenised.obs["group"] == label).to_numpy()
        np.testing.assert_allclose(per_group[rows, g], received[members, 1:-1].mean(0), rtol=1e-5)
    assert list(tokenised.uns["omnicell"]["gene_importance"]["groups"]) == ["a", "b"]
    # One layer only.
    oc.tl.gene_importance(tokenised, tiny_model, layers=[-1], key_added="last")
    np.testing.assert_allclose(
        tokenised.layers["last"].toarray()[:, rows], maps[-1].mean(axis=(1, 2))[:, 1:-1], rtol=1e-5
    )


def test_importance_on_pbmc_survives_h5ad(pbmc, pbmc_model, tmp_path):
    oc.pp.tokenize(pbmc, pbmc_model, use_raw=True, n_genes=60, gene_key="gene_id")
    oc.tl.gene_importance(pbmc, pbmc_model, groupby="bulk_labels")
    table = oc.tl.importance_roc(pbmc, "bulk_labels")
    assert list(table.index) == list(pbmc.obs["bulk_labels"].cat.categories)
    assert table["auc"].between(0, 1).all() and table["n_cells"].sum() == pbmc.n_obs
    pbmc.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    assert (back.layers["omnicell_importance"] != pbmc.layers["omnicell_importance"]).nnz == 0
    np.testing.assert_array_equal(back.varm["omnicell_importance"], pbmc.varm["omnicell_importance"])


def test_roc_helper_follows_the_prototype_rule():
    rng = np.random.default_rng(0)
    labels = np.repeat(["x", "y", "z"], 20)
    profiles = rng.gamma(1.0, 1.0, size=(3, 30))
    values = profiles[np.repeat(np.arange(3), 20)] * rng.lognormal(0, 0.8, size=(60, 30))
    adata = ad.AnnData(np.zeros((60, 30), dtype=np.float32))
    adata.obs["cell_type"] = labels
    adata.layers["omnicell_importance"] = sp.csr_matrix(values.astype(np.float32))
    table = oc.tl.importance_roc(adata, "cell_type")
    unit = values / np.linalg.norm(values, axis=1, keepdims=True)
    for label in ["x", "y", "z"]:
        prototype = values[labels == label].mean(0)
        score = unit @ (prototype / np.linalg.norm(prototype))
        assert table.loc[label, "auc"] == pytest.approx(roc_auc_score(labels == label, score))
    assert table.attrs["macro_auc"] == pytest.approx(table["auc"].mean())
    assert table["auc"].min() > 0.9  # distinct profiles separate well
    left_out = oc.tl.importance_roc(adata, "cell_type", exclude_self=True)
    members = labels == "x"
    score = np.empty(60)
    for cell in range(60):
        others = members & (np.arange(60) != cell)
        prototype = values[others].mean(0)
        score[cell] = unit[cell] @ prototype / np.linalg.norm(prototype)
    assert left_out.loc["x", "auc"] == pytest.approx(roc_auc_score(members, score))


def test_bad_input(tokenised, tiny_model):
    with pytest.raises(ValueError, match="Nothing to write"):
        oc.tl.gene_importance(tokenised, tiny_model, store_cells=False)
    with pytest.raises(ValueError, match="layers"):
        oc.tl.gene_importance(tokenised, tiny_model, layers=[7])
    with pytest.raises(KeyError, match="gene_importance"):
        oc.tl.importance_roc(tokenised, "group")
    assert "omnicell_importance" not in tokenised.layers
