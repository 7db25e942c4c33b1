"""tokenize: gene choice, neighbourhoods, records, and refusal of bad input before any write."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

import omnicell as oc


def _snapshot(adata: ad.AnnData) -> dict:
    return {
        "X": adata.X.copy() if adata.X is not None else None,
        "var": adata.var.copy(),
        "obsm": set(adata.obsm),
        "uns": set(adata.uns),
        "var_names": adata.var_names.copy(),
    }


def _assert_unchanged(adata: ad.AnnData, snapshot: dict) -> None:
    if snapshot["X"] is not None:
        np.testing.assert_array_equal(np.asarray(adata.X), snapshot["X"])
    assert adata.var.equals(snapshot["var"])
    assert set(adata.obsm) == snapshot["obsm"]
    assert set(adata.uns) == snapshot["uns"]
    assert adata.var_names.equals(snapshot["var_names"])


def test_gene_list_keeps_vocabulary_genes_in_order(tiny_adata, tiny_model, expected):
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"])
    record = tiny_adata.uns["omnicell"]["tokenize"]
    assert list(record["genes"]) == list(expected["selected_genes"])
    np.testing.assert_array_equal(record["token_ids"], expected["gene_ids"])
    assert record["strategy"] == "hvg" and record["gene_list_given"]
    assert record["model"] == "official_tiny" and record["model_sha256"] == tiny_model.sha256
    token = tiny_adata.var["omnicell_token"]
    assert (token < 0).sum() == 3  # the fixture has 3 var names outside the vocabulary
    assert tiny_adata.var["omnicell_selected"].sum() == 12
    assert tiny_adata.var_names[tiny_adata.var["omnicell_selected"]].isin(expected["selected_genes"]).all()
    assert "omnicell_neighbors" not in tiny_adata.obsm


def test_gene_list_with_unknown_genes_warns_and_drops_them(tiny_adata, tiny_model, expected):
    genes = ["ENSG90000043948", *expected["selected_genes"][:4], "NOT_A_GENE", expected["selected_genes"][0]]
    with pytest.warns(UserWarning, match="2 of 6 requested genes"):
        oc.pp.tokenize(tiny_adata, tiny_model, genes=genes)
    assert list(tiny_adata.uns["omnicell"]["tokenize"]["genes"]) == list(expected["selected_genes"][:4])


def test_highly_variable_genes_follow_scanpy_seurat_v3(tiny_model):
    rng = np.random.default_rng(0)
    genes = tiny_model.vocab.genes
    counts = rng.negative_binomial(2, 0.3, size=(200, len(genes))).astype(np.float32)
    counts[:, :10] = rng.negative_binomial(0.3, 0.06, size=(200, 10))  # same mean, five times the variance
    adata = ad.AnnData(X=sp.csr_matrix(counts))
    adata.var_names = [*genes[:-1], "NOT_IN_VOCAB"]
    oc.pp.tokenize(adata, tiny_model, n_genes=15)
    chosen = list(adata.uns["omnicell"]["tokenize"]["genes"])
    reference = sc.pp.highly_variable_genes(
        adata[:, adata.var_names != "NOT_IN_VOCAB"].copy(), flavor="seurat_v3", n_top_genes=15, inplace=False
    )
    expected_genes = [g for g, hv in zip(genes[:-1], reference["highly_variable"], strict=True) if hv]
    assert chosen == expected_genes
    assert set(genes[:10]) <= set(chosen)
    assert adata.uns["omnicell"]["tokenize"]["strategy"] == "hvg"


def test_spatial_neighbours_exclude_self_with_repeated_coordinates(tiny_adata, tiny_model):
    tiny_adata.obsm["spatial"][5] = tiny_adata.obsm["spatial"][6]  # two cells on one spot
    oc.pp.tokenize(tiny_adata, tiny_model, spatial=True, n_neighbors=4)
    neighbors = tiny_adata.obsm["omnicell_neighbors"]
    assert neighbors.shape == (24, 4)
    assert not (neighbors == np.arange(24)[:, None]).any()
    assert neighbors[5, 0] == 6 and neighbors[6, 0] == 5
    coords = tiny_adata.obsm["spatial"]
    distances = np.linalg.norm(coords[neighbors] - coords[:, None], axis=-1)
    assert (np.diff(distances, axis=1) >= 0).all()  # nearest first


def test_copy_returns_new_object(tiny_adata, tiny_model):
    snapshot = _snapshot(tiny_adata)
    result = oc.pp.tokenize(tiny_adata, tiny_model, copy=True)
    _assert_unchanged(tiny_adata, snapshot)
    assert "omnicell_token" in result.var


@pytest.mark.parametrize(
    ("corrupt", "error", "message"),
    [
        (lambda a: a.X.__setitem__((3, 2), -1.0), ValueError, "negative values"),
        (lambda a: a.X.__setitem__((3, 2), np.nan), ValueError, "NaN or infinite"),
        (lambda a: a.X.__setitem__((3, 2), np.inf), ValueError, "NaN or infinite"),
        (
            lambda a: setattr(a, "var_names", [f"GENE{i}" for i in range(a.n_vars)]),
            ValueError,
            r"None of the 19 genes matched.*GENE0, GENE1",
        ),
        (lambda a: setattr(a, "var_names", [a.var_names[1], *a.var_names[1:]]), ValueError, "duplicate"),
    ],
)
def test_bad_input_is_refused_before_any_write(tiny_adata, tiny_model, corrupt, error, message):
    corrupt(tiny_adata)
    snapshot = _snapshot(tiny_adata)
    with pytest.raises(error, match=message):
        oc.pp.tokenize(tiny_adata, tiny_model)
    _assert_unchanged(tiny_adata, snapshot)


def test_negative_values_in_sparse_and_in_a_gene_list(tiny_adata, tiny_model, expected):
    tiny_adata.X[4, list(tiny_adata.var_names).index(expected["selected_genes"][0])] = -2
    tiny_adata.X = sp.csr_matrix(tiny_adata.X)
    with pytest.raises(ValueError, match="negative"):
        oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"])
    assert "omnicell" not in tiny_adata.uns


def test_var_column_with_ensembl_ids_is_suggested(tiny_adata, tiny_model):
    tiny_adata.var["gene_ids"] = tiny_adata.var_names
    tiny_adata.var_names = [f"SYM{i}" for i in range(tiny_adata.n_vars)]
    with pytest.raises(ValueError, match=r"adata.var_names = adata.var\['gene_ids'\]"):
        oc.pp.tokenize(tiny_adata, tiny_model)


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda a: a.obsm.pop("spatial"), r"obsm\['spatial'\]"),
        (lambda a: a.obsm.__setitem__("spatial", np.full((24, 2), np.nan)), "NaN"),
        (lambda a: a.obsm.__setitem__("spatial", np.zeros((24, 1))), "shape"),
    ],
)
def test_spatial_without_usable_coordinates(tiny_adata, tiny_model, prepare, message):
    prepare(tiny_adata)
    snapshot = _snapshot(tiny_adata)
    with pytest.raises((KeyError, ValueError), match=message):
        oc.pp.tokenize(tiny_adata, tiny_model, spatial=True)
    _assert_unchanged(tiny_adata, snapshot)


def test_more_neighbours_than_cells_pads(tiny_adata, tiny_model):
    with pytest.warns(UserWarning, match="24 cells have fewer than 24 neighbours"):
        oc.pp.tokenize(tiny_adata, tiny_model, spatial=True, n_neighbors=24)
    neighbors = tiny_adata.obsm["omnicell_neighbors"]
    assert (neighbors[:, :23] >= 0).all() and (neighbors[:, 23] == -1).all()


def test_missing_layer_and_wrong_type(tiny_adata, tiny_model):
    with pytest.raises(KeyError, match="Layer 'counts' not found"):
        oc.pp.tokenize(tiny_adata, tiny_model, layer="counts")
    with pytest.raises(TypeError, match="AnnData"):
        oc.pp.tokenize(np.zeros((3, 3)), tiny_model)


def test_embed_cells_refuses_bad_values_before_writing(tiny_adata, tiny_model, expected):
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"])
    tiny_adata.X[20, list(tiny_adata.var_names).index(expected["selected_genes"][2])] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        oc.tl.embed_cells(tiny_adata, tiny_model, batch_size=4)
    assert "X_omnicell" not in tiny_adata.obsm and "embed_cells" not in tiny_adata.uns["omnicell"]


def test_embed_cells_after_subsetting_genes_is_refused(tiny_adata, tiny_model, expected):
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"])
    subset = tiny_adata[:, tiny_adata.var_names != expected["selected_genes"][3]].copy()
    with pytest.raises(ValueError, match=r"no longer in adata\.var_names"):
        oc.tl.embed_cells(subset, tiny_model)
    assert "X_omnicell" not in subset.obsm


def _leiden_of_embedding(adata: ad.AnnData, model) -> ad.AnnData:
    oc.pp.tokenize(adata, model, n_genes=256)
    oc.tl.embed_cells(adata, model)
    sc.pp.neighbors(adata, use_rep="X_omnicell", method="gauss", transformer="sklearn")  # no numba compilation
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, resolution=1.0, random_state=0)
    return adata


def test_log_normalised_input_is_read_as_its_counts():
    """pbmc68k_reduced's raw.X (log1p of CP10k) and its recovered counts: same genes, same clusters."""
    from sklearn.metrics import adjusted_rand_score

    model = oc.models.load("omnicell-tiny")
    counts = _leiden_of_embedding(oc.datasets.pbmc68k_reduced(), model)
    logged = sc.datasets.pbmc68k_reduced().raw.to_adata()  # keeps obs['n_counts']
    with pytest.warns(UserWarning, match=r"adata.X holds log-normalised values: the counts were recovered"):
        logged = _leiden_of_embedding(logged, model)
    record, counts_record = logged.uns["omnicell"]["tokenize"], counts.uns["omnicell"]["tokenize"]
    assert (counts_record["hvg_flavor"], record["hvg_flavor"]) == ("seurat_v3", "seurat_v3_recovered_counts")
    assert list(record["genes"]) == list(counts_record["genes"])
    assert adjusted_rand_score(counts.obs["leiden"], logged.obs["leiden"]) >= 0.9


def test_log_normalised_input_without_counts_uses_scanpys_flavour_for_log_data():
    logged = sc.datasets.pbmc68k_reduced().raw.to_adata()
    logged.X = logged.X * 1.01  # no longer log1p of integers over a common target: counts cannot be recovered
    with pytest.warns(UserWarning, match=r"no counts could be recovered.*'seurat' flavour.*genes chosen differ"):
        oc.pp.tokenize(logged, oc.models.load("omnicell-tiny"), n_genes=100)
    record = logged.uns["omnicell"]["tokenize"]
    assert record["hvg_flavor"] == "seurat"
    scanpy = sc.pp.highly_variable_genes(logged, flavor="seurat", n_top_genes=100, inplace=False)
    chosen = set(logged.var_names[scanpy["highly_variable"].to_numpy()])
    assert len(set(record["genes"]) & chosen) >= 95  # scanpy's choice but for vocabulary genes and ties
