"""annotate and cross_validate_annotation: the paper's MLP on real PBMC embeddings (PCA)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

import omnicell as oc
from omnicell.tl._classifier import MLPClassifier


@pytest.fixture
def pbmc_split():
    adata = sc.datasets.pbmc68k_reduced()
    train, test = train_test_split(
        np.arange(adata.n_obs), test_size=0.3, stratify=adata.obs["bulk_labels"], random_state=0
    )
    return adata[train].copy(), adata[test].copy()


def test_classifier_is_the_papers_mlp():
    network = MLPClassifier(50, 7, (32, 16))
    kinds = [type(layer).__name__ for layer in network.layers]
    assert kinds == ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"]
    assert network(torch.zeros(3, 50)).shape == (3, 7)


def test_annotate_pbmc(pbmc_split):
    reference, query = pbmc_split
    truth = query.obs["bulk_labels"].astype(str).to_numpy()
    query.obs = query.obs.drop(columns="bulk_labels")
    state = torch.random.get_rng_state()
    oc.tl.annotate(query, reference, "bulk_labels", use_rep="X_pca", random_state=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the global torch generator is untouched
    predicted = query.obs["omnicell_label"]
    classes = list(reference.obs["bulk_labels"].cat.categories)
    assert predicted.dtype == "category" and list(predicted.cat.categories) == classes
    probabilities = query.obsm["omnicell_label_probabilities"]
    assert isinstance(probabilities, pd.DataFrame) and list(probabilities.columns) == classes
    assert probabilities.index.equals(query.obs_names)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert (probabilities.idxmax(axis=1) == predicted.astype(str)).all()
    accuracy = accuracy_score(truth, predicted.astype(str))
    majority = pd.Series(truth).value_counts(normalize=True).iloc[0]
    assert accuracy > 0.7 and accuracy > majority + 0.3
    record = query.uns["omnicell"]["annotate"]
    assert record["epochs"] == 20 and record["lr"] == 1e-4 and record["n_reference_cells"] == reference.n_obs
    assert list(record["classes"]) == classes
    again = oc.tl.annotate(query, reference, "bulk_labels", use_rep="X_pca", random_state=3, copy=True)
    np.testing.assert_array_equal(again.obsm["omnicell_label_probabilities"].to_numpy(), probabilities.to_numpy())
    other = oc.tl.annotate(query, reference, "bulk_labels", use_rep="X_pca", random_state=4, copy=True)
    assert not np.allclose(other.obsm["omnicell_label_probabilities"].to_numpy(), probabilities.to_numpy())


def test_cross_validation_pbmc():
    adata = sc.datasets.pbmc68k_reduced()
    table = oc.tl.cross_validate_annotation(adata, "bulk_labels", folds=5, use_rep="X_pca", key_added="cv")
    assert list(table.index) == [1, 2, 3, 4, 5] and list(table.columns) == ["accuracy", "macro_f1", "n_train", "n_test"]
    assert table["n_test"].sum() == adata.n_obs and (table["n_train"] + table["n_test"] == adata.n_obs).all()
    # The out-of-fold predictions reproduce the per-fold accuracies.
    overall = accuracy_score(adata.obs["bulk_labels"].astype(str), adata.obs["cv"].astype(str))
    assert overall == pytest.approx((table["accuracy"] * table["n_test"]).sum() / adata.n_obs)
    assert table["accuracy"].mean() > 0.7 and 0.3 < table["macro_f1"].mean() <= table["accuracy"].mean()
    record = adata.uns["omnicell"]["cross_validate_annotation"]
    assert record["accuracy_mean"] == pytest.approx(table["accuracy"].mean())
    # Labels shuffled across cells cannot be learnt: accuracy falls to about the majority share.
    adata.obs["shuffled"] = np.random.default_rng(0).permutation(adata.obs["bulk_labels"].to_numpy())
    shuffled = oc.tl.cross_validate_annotation(adata, "shuffled", folds=3, use_rep="X_pca", epochs=5)
    assert shuffled["accuracy"].mean() < 0.45


def test_bad_input(pbmc_split):
    reference, query = pbmc_split
    query.obsm["X_small"] = query.obsm["X_pca"][:, :10]
    reference.obsm["X_small"] = reference.obsm["X_pca"][:, :12]
    with pytest.raises(ValueError, match="same model"):
        oc.tl.annotate(query, reference, "bulk_labels", use_rep="X_small")
    with pytest.raises(KeyError, match="embed_cells"):
        oc.tl.annotate(query, reference, "bulk_labels")
    with pytest.raises(ValueError, match="epochs"):
        oc.tl.annotate(query, reference, "bulk_labels", use_rep="X_pca", epochs=0)
    with pytest.raises(ValueError, match="folds"):
        oc.tl.cross_validate_annotation(reference, "bulk_labels", use_rep="X_pca", folds=1)
    assert "omnicell_label" not in query.obs and "omnicell" not in query.uns
    reference.uns["omnicell"] = {"embed_cells": {"model_sha256": "a", "projection": 0.9}}
    query.uns["omnicell"] = {"embed_cells": {"model_sha256": "b", "projection": 0.9}}
    with pytest.warns(UserWarning, match="model_sha256"):
        oc.tl.annotate(query, reference, "bulk_labels", use_rep="X_pca", epochs=1)
