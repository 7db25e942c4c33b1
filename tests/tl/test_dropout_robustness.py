"""dropout_robustness: nested dropout of the tokenised values, re-embedding, Leiden NMI per rate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scanpy as sc
from sklearn.metrics import normalized_mutual_info_score

import omnicell as oc
from omnicell.tl._robustness import tokenised_matrix


@pytest.fixture
def tokenised(pbmc, pbmc_model):
    oc.pp.tokenize(pbmc, pbmc_model, use_raw=True, n_genes=100, gene_key="gene_id")
    return pbmc


def _leiden_nmi(embedding, labels, resolution):
    holder = sc.AnnData(obs=labels.to_frame())
    holder.obsm["X"] = embedding
    sc.pp.neighbors(holder, use_rep="X", n_neighbors=15, random_state=0)
    sc.tl.leiden(holder, resolution=resolution, flavor="igraph", n_iterations=2, random_state=0)
    return normalized_mutual_info_score(labels.astype(str), holder.obs["leiden"])


def test_model_curve(tokenised, pbmc_model):
    oc.tl.dropout_robustness(
        tokenised, pbmc_model, label_key="bulk_labels", rates=[0.0, 0.5, 0.95], resolution=0.5, random_state=0
    )
    table = tokenised.uns["omnicell"]["dropout_robustness"]["table"]
    assert list(table["rate"]) == [0.0, 0.5, 0.95]
    # Rate 0 is the ordinary embedding, clustered as scanpy would.
    oc.tl.embed_cells(tokenised, pbmc_model)
    clean = _leiden_nmi(tokenised.obsm["X_omnicell"], tokenised.obs["bulk_labels"], 0.5)
    assert table["nmi"].iloc[0] == pytest.approx(clean)
    assert table["fraction_kept"].iloc[0] == 1.0
    np.testing.assert_allclose(table["fraction_kept"].iloc[1:], [0.5, 0.05], atol=0.01)
    assert table["n_empty_cells"].is_monotonic_increasing
    assert table["nmi"].iloc[2] < table["nmi"].iloc[0]
    assert tokenised.uns["omnicell"]["dropout_robustness"]["model"] == pbmc_model.name


def test_custom_embedding_sees_nested_dropout(tokenised):
    values, _ = tokenised_matrix(tokenised)
    seen = []

    def pca(noisy):
        matrix = noisy.X.toarray()
        seen.append(matrix)
        return sc.pp.pca(np.log1p(matrix), n_comps=20, random_state=0)

    oc.tl.dropout_robustness(tokenised, label_key="bulk_labels", rates=[0.0, 0.3, 0.9], embed=pca, resolution=0.5)
    np.testing.assert_array_equal(seen[0], values.toarray())  # the tokenised genes, unchanged at rate 0
    assert seen[0].shape == (tokenised.n_obs, 100)
    for lower, higher in itertools.pairwise(seen):
        assert np.all((higher == lower) | (higher == 0))  # values only ever dropped, and nested
        assert (higher > 0).sum() < (lower > 0).sum()
    table = tokenised.uns["omnicell"]["dropout_robustness"]["table"]
    assert table["nmi"].iloc[0] > table["nmi"].iloc[2] + 0.1
    expected = _leiden_nmi(sc.pp.pca(np.log1p(seen[0]), n_comps=20, random_state=0), tokenised.obs["bulk_labels"], 0.5)
    assert table["nmi"].iloc[0] == pytest.approx(expected)


def test_bad_input(tokenised):
    with pytest.raises(ValueError, match="rates"):
        oc.tl.dropout_robustness(tokenised, label_key="bulk_labels", rates=[1.5], embed=np.asarray)
    with pytest.raises(KeyError, match="label_key"):
        oc.tl.dropout_robustness(tokenised, label_key="cell_type", embed=np.asarray)
    with pytest.raises(TypeError, match="embed"):
        oc.tl.dropout_robustness(tokenised, label_key="bulk_labels", embed="pca")
    assert "dropout_robustness" not in tokenised.uns["omnicell"]
