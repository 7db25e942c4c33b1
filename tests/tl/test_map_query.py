"""map_query: calibrated label transfer, conformal label sets and the unknown call.

Coverage is checked on a synthetic Gaussian mixture (2000 reference and 2000 query cells, so the
average over seeds is stable to about 0.005); the unknown call, accuracy and the shift on
pbmc68k_reduced embedded by the bundled omnicell-tiny model (real cells, FACS-sorted labels).
"""

from __future__ import annotations

import functools
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

import omnicell as oc
from _cell_data import pbmc_counts, starmap_pca

LABEL = "bulk_labels"


def _mixture(n: int, seed: int, *, dim: int = 10, n_types: int = 8) -> ad.AnnData:
    """Cells of ``n_types`` overlapping Gaussian clusters (fixed centres), labels ``t0``, ``t1``, ..."""
    centres = np.random.default_rng(100).normal(size=(n_types, dim)) * 1.2
    rng = np.random.default_rng(seed)
    types = rng.integers(0, n_types, n)
    obs = pd.DataFrame({"t": pd.Categorical([f"t{i}" for i in types])}, index=[f"s{seed}c{i}" for i in range(n)])
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_omnicell"] = (centres[types] + rng.normal(size=(n, dim))).astype(np.float32)
    return adata


@functools.lru_cache(maxsize=1)
def _pbmc_embedded() -> ad.AnnData:
    pbmc = sc.datasets.pbmc68k_reduced()
    adata = ad.AnnData(pbmc_counts(pbmc).astype(np.float32), obs=pbmc.obs[[LABEL]].copy(), var=pbmc.raw.var.copy())
    oc.pp.tokenize(adata, "omnicell-tiny", n_genes=100)  # 100 genes per cell: a third of the time, B cells as apart
    oc.tl.embed_cells(adata, "omnicell-tiny", device="cpu")
    return adata


@pytest.fixture
def pbmc_tiny() -> ad.AnnData:
    """pbmc68k_reduced (700 cells) with obsm['X_omnicell'] from omnicell-tiny and obs['bulk_labels'], a copy."""
    return _pbmc_embedded().copy()


def _split(adata: ad.AnnData, seed: int, n_reference: int = 450) -> tuple[ad.AnnData, ad.AnnData]:
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    return adata[order[:n_reference]].copy(), adata[order[n_reference:]].copy()


def test_coverage_of_label_sets_on_held_out_cells():
    coverage, recorded, sizes = [], [], []
    for seed in range(3):
        reference, query = _mixture(2000, 2 * seed), _mixture(2000, 2 * seed + 1)
        truth = query.obs["t"].astype(str).to_numpy()
        oc.tl.map_query(query, reference, "t", random_state=seed)
        sets = query.obs["omnicell_label_set"].str.split("|")
        coverage.append(np.mean([label in members for label, members in zip(truth, sets, strict=True)]))
        record = query.uns["omnicell"]["map_query"]
        recorded.append(record["coverage"])
        sizes.append(record["mean_set_size"])
        np.testing.assert_allclose(record["mean_set_size"], sets.map(lambda s: len([m for m in s if m])).mean())
    assert 0.87 <= np.mean(coverage) <= 0.93
    assert 0.87 <= np.mean(recorded) <= 0.93  # the calibration folds' own estimate agrees
    # Sets adapt to the overlap of the clusters: far fewer labels than the 8 there are.
    assert 0.8 < np.mean(sizes) < 2.0
    # A looser level gives smaller sets and lower coverage (the threshold follows alpha).
    reference, query = _mixture(2000, 0), _mixture(2000, 1)
    oc.tl.map_query(query, reference, "t", alpha=0.3, random_state=0, query_label_key="t")
    record = query.uns["omnicell"]["map_query"]
    assert 0.65 <= record["query_coverage"] <= 0.75 and record["mean_set_size"] < np.mean(sizes)


def test_slots_and_h5ad_round_trip(pbmc_tiny, tmp_path):
    reference, query = _split(pbmc_tiny, 0)
    oc.tl.map_query(query, reference, LABEL, key_added="mapped")
    classes = list(reference.obs[LABEL].cat.categories)
    label = query.obs["mapped_label"]
    assert label.dtype == "category" and list(label.cat.categories) == [*classes, "unknown"]
    probabilities = query.obsm["mapped_probabilities"]
    assert isinstance(probabilities, pd.DataFrame) and list(probabilities.columns) == classes
    assert probabilities.index.equals(query.obs_names)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    best = probabilities.idxmax(axis=1)
    unknown = query.obs["mapped_unknown"].to_numpy()
    assert query.obs["mapped_unknown"].dtype == bool and 0 < unknown.sum() < query.n_obs
    assert (label[~unknown].astype(str) == best[~unknown]).all() and (label[unknown] == "unknown").all()
    np.testing.assert_allclose(query.obs["mapped_confidence"], probabilities.max(axis=1), rtol=1e-6)
    # A label set holds exactly the labels whose probability clears one threshold; an empty set means unknown.
    record = query.uns["omnicell"]["map_query"]
    sets = query.obs["mapped_label_set"].to_numpy()
    expected = [
        "|".join(c for c in classes if 1 - row[c] <= record["threshold"]) for _, row in probabilities.iterrows()
    ]
    assert list(sets) == expected
    assert unknown[sets == ""].all()
    pvalues = query.obs["mapped_novelty_pval"].to_numpy()
    assert ((pvalues > 0) & (pvalues <= 1)).all()
    assert (unknown == ((pvalues < record["alpha"]) | (sets == ""))).all()
    assert record["k"] == 15 and record["method"] == "knn" and record["use_rep"] == "X_omnicell"
    assert record["alpha"] == 0.1 and len(record["reference_sha256"]) == 64 and record["n_reference_cells"] == 450
    path = tmp_path / "mapped.h5ad"
    query.write_h5ad(path)
    back = ad.read_h5ad(path)
    for column in ("mapped_label", "mapped_confidence", "mapped_label_set", "mapped_unknown", "mapped_novelty_pval"):
        pd.testing.assert_series_equal(back.obs[column], query.obs[column])
    pd.testing.assert_frame_equal(back.obsm["mapped_probabilities"], probabilities)
    assert back.uns["omnicell"]["map_query"]["reference_sha256"] == record["reference_sha256"]


def test_left_out_type_is_called_unknown_and_accuracy_holds(pbmc_tiny):
    truth_all = pbmc_tiny.obs[LABEL].astype(str).to_numpy()
    accuracy, called_accuracy, knn_accuracy = [], [], []
    for left_out in ("CD19+ B", "CD34+"):
        for seed in range(3):
            order = np.random.default_rng(seed).permutation(pbmc_tiny.n_obs)
            reference_rows = order[:450][truth_all[order[:450]] != left_out]
            reference, query = pbmc_tiny[reference_rows].copy(), pbmc_tiny[order[450:]].copy()
            truth = truth_all[order[450:]]
            novel = truth == left_out
            oc.tl.map_query(query, reference, LABEL, random_state=seed)
            auroc = roc_auc_score(novel, -query.obs["omnicell_novelty_pval"])
            assert auroc >= 0.85, (left_out, seed, auroc)
            unknown = query.obs["omnicell_unknown"].to_numpy()
            assert unknown[novel].mean() > 3 * unknown[~novel].mean()
            right = query.obsm["omnicell_probabilities"].idxmax(axis=1).to_numpy() == truth
            accuracy.append(right[~novel].mean())
            called_accuracy.append(right[~novel & ~unknown].mean())
            plain = KNeighborsClassifier(15).fit(reference.obsm["X_omnicell"], truth_all[reference_rows])
            knn_accuracy.append(plain.score(query.obsm["X_omnicell"][~novel], truth[~novel]))
    # The cells given a label are labelled more accurately than plain kNN labels all known cells; the most
    # probable labels (before the unknown call) are as accurate as plain kNN's, within a cell in a hundred
    # (fold models see 4/5 of the reference; over 12 splits of the full reference the two tie, +0.0003).
    assert np.mean(called_accuracy) > np.mean(knn_accuracy)
    assert np.mean(accuracy) >= np.mean(knn_accuracy) - 0.01, (accuracy, knn_accuracy)


def test_shifted_query_reports_the_coverage_it_reaches(pbmc_tiny):
    """A query from another 'condition' (a batch shift of the embedding): coverage is measured, not assumed."""
    reference, query = _split(pbmc_tiny, 1)
    oc.tl.map_query(query, reference, LABEL, query_label_key=LABEL, random_state=0)
    same = query.uns["omnicell"]["map_query"]
    spread = reference.obsm["X_omnicell"].std(axis=0)
    shifted = query.copy()
    shifted.obsm["X_omnicell"] = shifted.obsm["X_omnicell"] + 2.0 * spread * np.sign(np.arange(spread.size) % 2 - 0.5)
    oc.tl.map_query(shifted, reference, LABEL, query_label_key=LABEL, random_state=0)
    moved = shifted.uns["omnicell"]["map_query"]
    truth = shifted.obs[LABEL].astype(str)
    sets = shifted.obs["omnicell_label_set"].str.split("|")
    measured = np.mean([label in members for label, members in zip(truth, sets, strict=True)])
    assert moved["query_coverage"] == pytest.approx(measured)
    assert moved["n_query_labelled"] == shifted.n_obs and moved["coverage"] == same["coverage"]
    # The shift costs coverage and is seen by the novelty test: most shifted cells are called unknown.
    assert moved["query_coverage"] < same["query_coverage"] - 0.05
    assert moved["unknown_fraction"] > 0.5 > same["unknown_fraction"]


def test_warns_when_query_and_reference_were_read_with_other_genes(pbmc_tiny):
    """Each data set's own variable genes make other inputs; the reference's genes (even some missing) do not."""
    reference, query = _split(pbmc_tiny, 0)
    genes = list(reference.uns["omnicell"]["tokenize"]["genes"])
    own = query.copy()
    oc.pp.tokenize(own, "omnicell-tiny", genes=list(query.var_names.difference(genes)[:100]))
    with pytest.warns(UserWarning, match="read with different genes"):
        oc.tl.map_query(own, reference, LABEL, random_state=0)
    lacking = query[:, query.var_names.difference(genes[:5])].copy()  # the query lacks five of the reference's genes
    oc.pp.tokenize(lacking, "omnicell-tiny", genes=genes)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*different genes.*")
        oc.tl.map_query(lacking, reference, LABEL, random_state=0)


def test_deterministic_and_independent_of_batches_and_order():
    reference, query = _mixture(600, 0), _mixture(300, 1)
    first = oc.tl.map_query(query, reference, "t", random_state=4, copy=True)
    again = oc.tl.map_query(query, reference, "t", random_state=4, batch_size=7, copy=True)
    order = np.random.default_rng(0).permutation(query.n_obs)
    shuffled = oc.tl.map_query(query[order].copy(), reference, "t", random_state=4, copy=True)
    for other in (again, shuffled[first.obs_names]):
        pd.testing.assert_frame_equal(other.obsm["omnicell_probabilities"], first.obsm["omnicell_probabilities"])
        pd.testing.assert_frame_equal(other.obs, first.obs)
    # The reference's order does not matter either (the folds are dealt by label, then by the seed).
    other_seed = oc.tl.map_query(query, reference, "t", random_state=5, copy=True)
    assert not np.allclose(other_seed.obsm["omnicell_probabilities"], first.obsm["omnicell_probabilities"])
    assert "omnicell_label" not in query.obs  # copy=True left the input alone


def test_index_reference_and_calibration_sample(tmp_path):
    reference, query = _mixture(800, 0), _mixture(200, 1)
    from_adata = oc.tl.map_query(query, reference, "t", copy=True)
    index = oc.data.ReferenceIndex.build(reference.obsm["X_omnicell"], reference.obs[["t"]])
    index.save(tmp_path / "index")
    for given in (index, tmp_path / "index", str(tmp_path / "index")):
        from_index = oc.tl.map_query(query, given, "t", copy=True)
        pd.testing.assert_frame_equal(
            from_index.obsm["omnicell_probabilities"], from_adata.obsm["omnicell_probabilities"]
        )
    assert from_index.uns["omnicell"]["map_query"]["reference_sha256"] == index.sha256
    reference.write_h5ad(tmp_path / "reference.h5ad")
    from_file = oc.tl.map_query(query, tmp_path / "reference.h5ad", "t", copy=True)
    pd.testing.assert_frame_equal(from_file.obsm["omnicell_probabilities"], from_adata.obsm["omnicell_probabilities"])
    sampled = oc.tl.map_query(query, index, "t", max_calibration_cells=300, copy=True).uns["omnicell"]["map_query"]
    assert sampled["n_calibration"] == 300 and 0.8 < sampled["coverage"] < 1.0
    with pytest.raises(ValueError, match="method='knn' with an index"):
        oc.tl.map_query(query, index, "t", method="mlp")
    with pytest.raises(KeyError, match="obs_keys"):
        oc.tl.map_query(query, index, "cell_type")


def test_mlp_method_and_annotate_share_the_calibration(pbmc_tiny):
    reference, query = _split(pbmc_tiny, 0)
    settings = {"epochs": 8, "hidden_sizes": (64, 32), "lr": 3e-3, "batch_size": 128}  # small and quick
    mapped = oc.tl.map_query(query, reference, LABEL, method="mlp", mlp_kwds=settings, random_state=2, copy=True)
    oc.tl.annotate(query, reference, LABEL, alpha=0.1, random_state=2, device="cpu", **settings)
    pd.testing.assert_frame_equal(
        query.obsm["omnicell_label_probabilities"], mapped.obsm["omnicell_probabilities"], check_names=False
    )
    # annotate keeps its label column (the most probable label) and adds the same calls beside it.
    assert list(query.obs["omnicell_label"].cat.categories) == list(reference.obs[LABEL].cat.categories)
    for suffix in ("_confidence", "_label_set", "_unknown", "_novelty_pval"):
        np.testing.assert_array_equal(query.obs["omnicell_label" + suffix], mapped.obs["omnicell" + suffix])
    record = query.uns["omnicell"]["annotate"]
    assert record["coverage"] == mapped.uns["omnicell"]["map_query"]["coverage"] and record["folds"] == 5
    truth = query.obs[LABEL].astype(str).to_numpy()
    assert (query.obs["omnicell_label"].astype(str).to_numpy() == truth).mean() > 0.6


def test_spatial_query_against_single_cell_reference():
    section = starmap_pca()
    oc.tl.neighborhood_average(section, use_rep="X_pca", n_neighbors=9)
    order = np.random.default_rng(0).permutation(section.n_obs)
    reference, query = section[order[:800]].copy(), section[order[800:]].copy()
    oc.tl.map_query(query, reference, "cell_type", use_rep="X_pca_niche", reference_rep="X_pca")
    record = query.uns["omnicell"]["map_query"]
    assert record["use_rep"] == "X_pca_niche" and record["reference_rep"] == "X_pca"
    assert query.obs["omnicell_label"].notna().all()
    reference.obsm["X_small"] = reference.obsm["X_pca"][:, :10]
    with pytest.raises(ValueError, match="reference_rep='X_omnicell'"):
        oc.tl.map_query(query, reference, "cell_type", use_rep="X_pca_niche", reference_rep="X_small")


def test_too_few_cells_for_alpha_give_full_sets_with_a_warning():
    reference, query = _mixture(40, 0, n_types=3), _mixture(10, 1, n_types=3)
    with pytest.warns(UserWarning, match="too few for alpha=0.01"):
        oc.tl.map_query(query, reference, "t", alpha=0.01, k=5)
    assert (query.obs["omnicell_label_set"] == "t0|t1|t2").all()
    assert query.uns["omnicell"]["map_query"]["threshold"] == np.inf


def test_bad_input_errors_before_writing():
    reference, query = _mixture(300, 0), _mixture(50, 1)
    before_obs, before_uns = query.obs.copy(), dict(query.uns)
    unlabelled = reference.copy()
    unlabelled.obs["t"] = pd.Categorical([np.nan] * unlabelled.n_obs, categories=["t0", "t1"])
    short = reference.copy()
    short.obsm["X_omnicell"] = short.obsm["X_omnicell"][:, :4]
    renamed = reference.copy()
    renamed.obs["t"] = renamed.obs["t"].cat.rename_categories({"t0": "unknown"})
    cases = [
        ({"label_key": "cell_type"}, KeyError, "label_key 'cell_type'"),
        ({"reference": unlabelled}, ValueError, "all NaN"),
        ({"reference": short}, ValueError, "4 dimensions|10 dimensions"),
        ({"reference": renamed}, ValueError, "rename it"),
        ({"alpha": 0.0}, ValueError, "strictly between 0 and 1"),
        ({"alpha": 1.0}, ValueError, "strictly between 0 and 1"),
        ({"alpha": -0.5}, ValueError, "strictly between 0 and 1"),
        ({"unknown_alpha": 2}, ValueError, "unknown_alpha"),
        ({"k": 500}, ValueError, "k=500 exceeds"),
        ({"k": 0}, ValueError, "k must be"),
        ({"folds": 1}, ValueError, "folds must be"),
        ({"method": "svm"}, ValueError, "method must be"),
        ({"use_rep": "X_missing"}, KeyError, "X_missing"),
        ({"query_label_key": "truth"}, KeyError, "query_label_key 'truth'"),
        ({"mlp_kwds": {"epoch": 3}, "method": "mlp"}, ValueError, "unknown keys"),
        ({"reference": "no/such/index"}, FileNotFoundError, "does not exist"),
    ]
    for change, error, message in cases:
        keywords = {"reference": reference, "label_key": "t", **change}
        with pytest.raises(error, match=message):
            oc.tl.map_query(query, keywords.pop("reference"), keywords.pop("label_key"), **keywords)
        pd.testing.assert_frame_equal(query.obs, before_obs)
        assert dict(query.uns) == before_uns and "omnicell_probabilities" not in query.obsm
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        oc.tl.annotate(query, reference, "t", alpha=1.5)
    with pytest.raises(ValueError, match="k=500 exceeds"):
        oc.tl.annotate(query, reference, "t", alpha=0.1, k=500)
    pd.testing.assert_frame_equal(query.obs, before_obs)
