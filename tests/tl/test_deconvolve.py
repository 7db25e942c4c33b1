"""deconvolve: known proportions of pseudo-spots (sums of real labelled PBMCs) are recovered."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import omnicell as oc
from _cell_data import pbmc_counts


def pseudo_spots(n_spots: int = 150, seed: int = 0):
    """A PCA reference from half of pbmc68k_reduced and spots summing 5-10 cells of the other half.

    The spots are normalised and log-transformed like the reference and projected onto its
    principal axes, so both live in one embedding space, as two ``embed_cells`` runs would.
    """
    pbmc = sc.datasets.pbmc68k_reduced()
    counts = pbmc_counts(pbmc)
    labels = pbmc.obs["bulk_labels"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    order = rng.permutation(pbmc.n_obs)
    reference_cells, spot_cells = order[:350], order[350:]
    obs = pd.DataFrame({"cell_type": labels[reference_cells]}, index=pbmc.obs_names[reference_cells])
    reference = ad.AnnData(counts[reference_cells].astype(np.float32), obs=obs)
    sc.pp.normalize_total(reference, target_sum=1e4)
    sc.pp.log1p(reference)
    sc.pp.pca(reference, n_comps=30, random_state=0)
    members = [rng.choice(spot_cells, size=rng.integers(5, 11), replace=False) for _ in range(n_spots)]
    summed = np.stack([counts[m].sum(0) for m in members])
    logged = np.log1p(summed / summed.sum(1, keepdims=True) * 1e4)
    spots = ad.AnnData(summed.astype(np.float32), obs=pd.DataFrame(index=[f"spot{i}" for i in range(n_spots)]))
    spots.obsm["X_pca"] = ((logged - np.asarray(reference.X.mean(0))) @ reference.varm["PCs"]).astype(np.float32)
    types = sorted(set(labels))
    truth = pd.DataFrame(
        [[np.mean(labels[m] == t) for t in types] for m in members], index=spots.obs_names, columns=types
    )
    return spots, reference, truth


@pytest.fixture(scope="module")
def spots_and_truth():
    return pseudo_spots()


def test_recovers_pseudo_spot_proportions(spots_and_truth):
    spots, reference, truth = spots_and_truth
    spots = spots.copy()
    oc.tl.deconvolve(spots, reference, "cell_type", use_rep="X_pca", epochs=300)
    proportions = spots.obsm["omnicell_proportions"]
    assert isinstance(proportions, pd.DataFrame) and proportions.index.equals(spots.obs_names)
    types = sorted(reference.obs["cell_type"].unique())
    assert list(proportions.columns) == types
    np.testing.assert_allclose(proportions.sum(1), 1.0, atol=1e-5)
    assert (proportions.to_numpy() >= 0).all()
    estimate, known = proportions.to_numpy().ravel(), truth[types].to_numpy().ravel()
    assert np.corrcoef(estimate, known)[0, 1] > 0.6
    # Each type's proportion follows its true share across spots ...
    per_type = [np.corrcoef(proportions[t], truth[t])[0, 1] for t in types]
    assert np.nanmean(per_type) > 0.4 and sum(r > 0.3 for r in per_type) >= 6
    # ... closer than the reference's overall composition, which ignores the spots.
    prior = reference.obs["cell_type"].value_counts(normalize=True)[types].to_numpy()
    assert (
        np.abs(proportions.to_numpy() - truth[types].to_numpy()).mean() < np.abs(prior - truth[types].to_numpy()).mean()
    )
    dominant = spots.obs["omnicell_dominant_type"]
    assert (dominant.astype(str).to_numpy() == proportions.idxmax(axis=1).to_numpy()).all()
    record = spots.uns["omnicell"]["deconvolve"]
    assert record["n_reference_cells"] == reference.n_obs


def test_seeded(spots_and_truth):
    spots, reference, _ = spots_and_truth
    first = oc.tl.deconvolve(spots, reference, "cell_type", use_rep="X_pca", epochs=50, random_state=1, copy=True)
    second = oc.tl.deconvolve(spots, reference, "cell_type", use_rep="X_pca", epochs=50, random_state=1, copy=True)
    np.testing.assert_array_equal(first.obsm["omnicell_proportions"], second.obsm["omnicell_proportions"])
    assert "omnicell_proportions" not in spots.obsm


def test_bad_input(spots_and_truth):
    spots, reference, _ = spots_and_truth
    spots = spots.copy()
    spots.obsm["X_short"] = spots.obsm["X_pca"][:, :5]
    reference = reference.copy()
    reference.obsm["X_short"] = reference.obsm["X_pca"][:, :6]
    with pytest.raises(ValueError, match="same model"):
        oc.tl.deconvolve(spots, reference, "cell_type", use_rep="X_short")
    with pytest.raises(ValueError, match="epochs"):
        oc.tl.deconvolve(spots, reference, "cell_type", use_rep="X_pca", epochs=0)
    with pytest.warns(UserWarning, match="lambda_spot"):
        oc.tl.deconvolve(spots[:5], reference, "cell_type", use_rep="X_pca", epochs=1, copy=True)
    with pytest.raises(KeyError, match="label_key"):
        oc.tl.deconvolve(spots, reference, "type", use_rep="X_pca")
    with pytest.raises(TypeError, match="reference"):
        oc.tl.deconvolve(spots, reference.obs, "cell_type", use_rep="X_pca")
    assert "omnicell_proportions" not in spots.obsm and "omnicell" not in spots.uns
