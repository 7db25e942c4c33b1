"""perturb_genes on pbmc68k_reduced with the bundled omnicell-tiny: exact zeros, the intervention, the null, markers."""

from __future__ import annotations

import functools

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import stats

import omnicell as oc
from omnicell._engine.perturb import level_matched_draws
from omnicell.tl._perturb import prediction_pvalues

MODEL = "omnicell-tiny"
KEY = "omnicell_perturb"


@functools.lru_cache(maxsize=1)
def _embedded() -> ad.AnnData:
    adata = oc.datasets.pbmc68k_reduced()
    oc.pp.tokenize(adata, MODEL)
    oc.tl.embed_cells(adata, MODEL, device="cpu")
    return adata


@pytest.fixture
def pbmc_tiny() -> ad.AnnData:
    """pbmc68k_reduced (counts, obs['cell_type']) tokenised for omnicell-tiny, with obsm['X_omnicell']."""
    return _embedded().copy()


def _levels(adata: ad.AnnData) -> np.ndarray:
    """(n_obs, 256) input soft ranks of the tokenised genes (omnicell-tiny reads every one in every cell)."""
    return oc.get.token_batch(adata, None, MODEL).values[:, 1:-1]


def _tokenised(adata: ad.AnnData) -> np.ndarray:
    return np.asarray(adata.uns["omnicell"]["tokenize"]["genes"]).astype(str)


def _run(adata, genes, cells, **kwargs):
    options = {"model": MODEL, "device": "cpu", "n_null": 4, "batch_size": 16, **kwargs}
    oc.tl.perturb_genes(adata, genes, cells=cells, **options)
    return adata


def test_knockout_intervention_exact_zeros_and_h5ad(pbmc_tiny, tmp_path):
    adata = pbmc_tiny
    genes = _tokenised(adata)
    levels = _levels(adata)
    cells = np.zeros(adata.n_obs, dtype=bool)
    cells[np.arange(0, 700, 35)] = True  # 20 cells of several types
    # The gene expressed in the most selected cells, but not in all (some cells are unaffected).
    expressing = (levels[cells] > 0).sum(0)
    gene = genes[np.argmax(np.where(expressing < cells.sum() - 2, expressing, -1))]
    column = list(genes).index(gene)
    _run(adata, gene, cells, groupby="cell_type")

    shift = adata.obs[KEY + "_shift"].to_numpy()
    expressed = levels[:, column] > 0
    assert np.isnan(shift[~cells]).all()
    assert (shift[cells & ~expressed] == 0).all()  # not re-encoded: exactly 0
    assert (shift[cells & expressed] > 0).all()
    perturbed = adata.obsm[KEY]
    assert np.isnan(perturbed[~cells]).all()
    np.testing.assert_allclose(perturbed[cells & ~expressed], adata.obsm["X_omnicell"][cells & ~expressed], atol=1e-5)

    layer = adata.layers[KEY].toarray()
    var_column = adata.var_names.get_loc(gene)
    # Its own value falls in every expressing cell: to 0 from its input (the intervention).
    np.testing.assert_allclose(layer[cells & expressed, var_column], -levels[cells & expressed, column], rtol=1e-6)
    assert (layer[cells & ~expressed] == 0).all() and (layer[~cells] == 0).all()
    changed_genes = (layer[cells & expressed] != 0).sum(1)
    assert (changed_genes > 200).all()  # the other genes' decoded values move too

    table = adata.uns[KEY]["genes"]
    assert table.loc[0, "gene"] == gene and table.loc[0, "tokenized"]
    assert table.loc[0, "n_cells"] == cells.sum() and table.loc[0, "n_perturbed"] == (cells & expressed).sum()
    effects = adata.uns[KEY]["effects"]
    groups = adata.obs.loc[cells, "cell_type"].astype(str)
    assert set(effects["group"]) == set(groups)
    own = effects[effects["gene"] == gene].set_index("group")
    for group in own.index:
        members = cells & (adata.obs["cell_type"] == group).to_numpy()
        np.testing.assert_allclose(own.loc[group, "effect"], layer[members, var_column].mean(), rtol=1e-5, atol=1e-7)
        assert own.loc[group, "n_cells"] == members.sum()
    assert own["perturbed"].all() and own["pval"].isna().all()
    others = effects[~effects["perturbed"]]
    assert others["pval"].between(0, 1).all() and (others["qval"] >= others["pval"]).all()
    shifts = adata.uns[KEY]["shift"].set_index("group")
    for group in shifts.index:
        members = cells & (adata.obs["cell_type"] == group).to_numpy()
        np.testing.assert_allclose(shifts.loc[group, "shift"], shift[members].mean(), rtol=1e-6)
        assert shifts.loc[group, "n_affected"] == (members & expressed).sum()
    assert adata.uns["omnicell"]["perturb_genes"]["mode"] == "knockout"

    adata.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    for name in ("effects", "shift", "genes"):
        pd.testing.assert_frame_equal(back.uns[KEY][name], adata.uns[KEY][name], check_dtype=False)
    assert list(back.uns[KEY]["params"]["genes"]) == [gene]

    group = groups.iloc[0]
    ranked = oc.get.perturbation_df(back, group, key=KEY)
    assert set(ranked["group"]) == {group} and len(ranked) == (effects["group"] == group).sum()
    assert (np.diff(ranked["pval"].to_numpy()[:-1]) >= 0).all() and ranked.iloc[-1]["gene"] == gene
    assert len(oc.get.perturbation_df(back, key=KEY, include_perturbed=False)) == len(effects) - len(own)
    with pytest.raises(ValueError, match="not in the perturbation"):
        oc.get.perturbation_df(back, "nope", key=KEY)


def test_results_do_not_depend_on_batch_size(pbmc_tiny):
    adata = pbmc_tiny
    genes = list(_tokenised(adata)[[3, 40]])
    cells = list(adata.obs_names[100:105])
    first = _run(adata.copy(), genes, cells, mode="overexpress", n_null=2, batch_size=5)
    second = _run(adata.copy(), genes, cells, mode="overexpress", n_null=2, batch_size=2)
    np.testing.assert_allclose(second.obs[KEY + "_shift"], first.obs[KEY + "_shift"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(second.layers[KEY].toarray(), first.layers[KEY].toarray(), atol=1e-5)
    for name in ("effects", "shift"):
        pd.testing.assert_frame_equal(second.uns[KEY][name], first.uns[KEY][name], rtol=1e-3, atol=1e-6)
    changed = first.layers[KEY].toarray()[:, first.var_names.get_indexer(genes)]
    assert (changed[100:105] >= 0).all() and (changed[100:105] > 0).any()  # overexpression raises to 5


def test_gene_outside_the_tokens_changes_nothing(pbmc_tiny):
    adata = pbmc_tiny
    outside = adata.var_names[~adata.var["omnicell_selected"].to_numpy()][0]
    with pytest.warns(UserWarning, match="None of"):
        _run(adata, [outside], adata.obs_names[:6], n_null=2)
    assert (adata.obs[KEY + "_shift"].to_numpy()[:6] == 0).all()
    assert adata.layers[KEY].nnz == 0
    row = adata.uns[KEY]["genes"].iloc[0]
    assert not row["tokenized"] and row["n_cells"] == 0 and row["n_perturbed"] == 0
    assert (adata.uns[KEY]["effects"]["effect"] == 0).all()


def test_set_mode_and_random_state(pbmc_tiny):
    adata = pbmc_tiny
    gene = _tokenised(adata)[10]
    cells = adata.obs_names[200:208]
    levels = _levels(adata)[200:208, 10]
    a = _run(adata.copy(), gene, cells, mode="set", value=2.5, n_null=2)
    b = _run(adata.copy(), gene, cells, mode="set", value=2.5, n_null=2)
    c = _run(adata.copy(), gene, cells, mode="set", value=2.5, n_null=2, random_state=1)
    column = adata.var_names.get_loc(gene)
    np.testing.assert_allclose(a.layers[KEY].toarray()[200:208, column], 2.5 - levels, rtol=1e-6)
    assert ((a.obs[KEY + "_shift"].to_numpy()[200:208] == 0) == (levels == 2.5)).all()
    pd.testing.assert_frame_equal(a.uns[KEY]["effects"], b.uns[KEY]["effects"])
    assert not np.allclose(a.layers[KEY].toarray(), c.layers[KEY].toarray())  # other decoding folds


def test_prediction_pvalues_are_uniform_under_the_null():
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(10, 4000))  # 10 null draws of 4000 independent statistics
    observed = rng.normal(size=4000)
    _, _, n, pval = prediction_pvalues(observed, draws, np.ones(draws.shape, dtype=bool))
    assert (n == 10).all()
    assert stats.kstest(pval, "uniform").pvalue > 0.01
    # The plain z of the observed value against the draws' sd is anticonservative with 10 draws.
    naive = 2 * stats.norm.sf(np.abs(observed - draws.mean(0)) / draws.std(0, ddof=1))
    assert (naive < 0.05).mean() > 0.065 and abs((pval < 0.05).mean() - 0.05) < 0.012


def test_random_gene_perturbation_is_calibrated(pbmc_tiny):
    """p-values of knocking out random level-matched genes are uniform (over genes and repeats)."""
    adata = pbmc_tiny
    cells = np.flatnonzero((adata.obs["cell_type"] == "CD14+ Monocyte").to_numpy())[:8]
    levels = _levels(adata)[cells].mean(0)
    rng = np.random.default_rng(3)
    pvals = []
    common = np.argsort(levels)[-40:]  # genes most cells express: a knockout changes most cells
    for repeat in range(2):
        genes = _tokenised(adata)[level_matched_draws(levels, rng.choice(common, 2, replace=False), 1, rng)[0]]
        _run(adata, list(genes), adata.obs_names[cells], n_null=6, random_state=repeat)
        effects = adata.uns[KEY]["effects"]
        pvals.append(effects.loc[~effects["perturbed"], "pval"].to_numpy())
    pvals = np.concatenate(pvals)
    # Genes of one repeat share its draw, so the bounds are those of 2 x a few independent tests, not 500.
    assert 0.005 < (pvals < 0.05).mean() < 0.15
    assert 0.35 < np.median(pvals) < 0.65


def _markers(adata: ad.AnnData, n_genes: int) -> dict[str, list[str]]:
    """Each type's top marker genes among the tokenised genes (sc.tl.rank_genes_groups on log-normalised counts)."""
    lognorm = adata.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    sc.tl.rank_genes_groups(lognorm, "cell_type", method="wilcoxon")
    table = sc.get.rank_genes_groups_df(lognorm, None)
    table = table[table["names"].isin(_tokenised(adata)) & (table["logfoldchanges"] > 0)]
    return {group: list(part["names"][:n_genes]) for group, part in table.groupby("group", observed=True)}


def _centroid_distance(embedding: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    unit = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    return 1 - unit @ (centroid / np.linalg.norm(centroid))


def _matched_null(adata, genes, cells, rng, n_draws):
    """Level-matched random gene sets for ``genes`` over ``cells``, as the tool's null draws them."""
    levels = _levels(adata)[cells].mean(0)
    targets = np.flatnonzero(np.isin(_tokenised(adata), genes))
    return [list(_tokenised(adata)[draw]) for draw in level_matched_draws(levels, targets, n_draws, rng)]


@pytest.mark.parametrize("group", ["CD14+ Monocyte", "CD56+ NK"])
def test_knocking_out_markers_moves_cells_from_their_type(pbmc_tiny, group):
    adata = pbmc_tiny
    markers = _markers(adata, 5)[group]
    members = (adata.obs["cell_type"] == group).to_numpy()
    cells = np.flatnonzero(members)[:6]
    centroid = adata.obsm["X_omnicell"][members].mean(0)
    before = _centroid_distance(adata.obsm["X_omnicell"][cells], centroid)

    def moved(genes):
        _run(adata, genes, adata.obs_names[cells], n_null=2)
        return (_centroid_distance(adata.obsm[KEY][cells], centroid) - before).mean()

    observed = moved(markers)
    null = [moved(genes) for genes in _matched_null(adata, markers, cells, np.random.default_rng(0), 2)]
    assert observed > 0 and observed > max(null)


def test_overexpressing_markers_moves_cells_toward_another_type(pbmc_tiny):
    adata = pbmc_tiny
    source, target = "CD14+ Monocyte", "CD19+ B"
    markers = _markers(adata, 5)[target]
    cells = np.flatnonzero((adata.obs["cell_type"] == source).to_numpy())[:6]
    centroid = adata.obsm["X_omnicell"][(adata.obs["cell_type"] == target).to_numpy()].mean(0)
    before = _centroid_distance(adata.obsm["X_omnicell"][cells], centroid)

    def moved(genes):
        _run(adata, genes, adata.obs_names[cells], mode="overexpress", n_null=2)
        return (_centroid_distance(adata.obsm[KEY][cells], centroid) - before).mean()

    observed = moved(markers)
    null = [moved(genes) for genes in _matched_null(adata, markers, cells, np.random.default_rng(0), 2)]
    assert observed < 0 and observed < min(null)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"genes": "NOT_A_GENE"}, KeyError, "NOT_A_GENE"),
        ({"genes": ["CD3E", "CD3E"]}, ValueError, "twice"),
        ({"genes": []}, TypeError, "genes"),
        ({"mode": "delete"}, ValueError, "mode"),
        ({"mode": "knockout", "value": 1.0}, ValueError, "value"),
        ({"mode": "set"}, ValueError, "value"),
        ({"mode": "set", "value": 6.0}, ValueError, "between 0"),
        ({"mode": "set", "value": float("nan")}, ValueError, "finite"),
        ({"mode": "set", "value": -1}, ValueError, "between 0"),
        ({"cells": np.zeros(700, dtype=bool)}, ValueError, "no cell"),
        ({"cells": np.ones(5, dtype=bool)}, ValueError, "one entry per cell"),
        ({"cells": ["nope"]}, KeyError, "nope"),
        ({"groupby": "missing"}, KeyError, "missing"),
        ({"n_null": 1}, ValueError, "n_null"),
        ({"precision": "float16"}, ValueError, "float16"),
    ],
)
def test_bad_input_errors_before_writing(options, error, match):
    adata = oc.datasets.pbmc68k_reduced()  # not tokenised: an error must not tokenise either
    before = adata.copy()
    options = {"genes": "CD3E", "model": MODEL, "device": "cpu", **options}
    with pytest.raises(error, match=match):
        oc.tl.perturb_genes(adata, options.pop("genes"), **options)
    assert list(adata.uns) == list(before.uns) and list(adata.var.columns) == list(before.var.columns)
    assert list(adata.obs.columns) == list(before.obs.columns) and not adata.layers and list(adata.obsm) == ["X_umap"]
