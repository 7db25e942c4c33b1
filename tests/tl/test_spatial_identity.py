"""Stored spatial neighbours identify their cells: reorder, subset and concatenation are caught, never silent."""

import anndata as ad
import numpy as np
import pytest

import omnicell as oc
from _helpers import align_signs


@pytest.fixture
def spatial(tiny_adata, tiny_model):
    oc.pp.tokenize(tiny_adata, tiny_model, spatial=True, n_neighbors=3)
    return tiny_adata


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a[np.random.default_rng(0).permutation(a.n_obs)].copy(),  # reordered (sorted by a column)
        lambda a: a[::-1].copy(),
        lambda a: a[1:].copy(),  # subset
        lambda a: a[:-1].copy(),  # subset keeping the first rows: indices still in range
        lambda a: ad.concat([a, a], index_unique="-", uns_merge="first"),  # concatenated
    ],
    ids=["permuted", "reversed", "drop first", "drop last", "concatenated"],
)
def test_changed_cells_are_an_error(spatial, tiny_model, change):
    changed = change(spatial)
    changed.obsm["spatial"] = np.asarray(changed.obsm["spatial"])
    with pytest.raises((ValueError, KeyError), match="tokenize"):
        oc.tl.embed_cells(changed, tiny_model)


def test_retokenised_reordered_cells_embed_as_before(spatial, tiny_model):
    oc.tl.embed_cells(spatial, tiny_model)
    order = np.random.default_rng(1).permutation(spatial.n_obs)
    reordered = spatial[order].copy()
    oc.pp.tokenize(reordered, tiny_model, spatial=True, n_neighbors=3)
    oc.tl.embed_cells(reordered, tiny_model)
    np.testing.assert_allclose(reordered.obsm["X_omnicell"], spatial.obsm["X_omnicell"][order], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        reordered.obsm["X_omnicell_niche"], spatial.obsm["X_omnicell_niche"][order], rtol=1e-5, atol=1e-5
    )


def test_same_cells_same_order_still_embed(tiny_adata, tiny_model, expected, tmp_path):
    # a copy, or a write/read round trip, keeps the cells: no error, and the official implementation's
    # embeddings of the conformance cells (focal cell; mean over its window)
    oc.pp.tokenize(tiny_adata, tiny_model, genes=expected["selected_genes"], spatial=True, n_neighbors=3)
    tiny_adata.write_h5ad(tmp_path / "spatial.h5ad")
    reference = expected["sp_cell_embedding"]
    for adata in (tiny_adata.copy(), ad.read_h5ad(tmp_path / "spatial.h5ad")):
        with pytest.warns(UserWarning, match="express none"):
            oc.tl.embed_cells(adata, tiny_model)
        np.testing.assert_array_equal(adata.obsm["omnicell_neighbors"], expected["neighbors"])
        cells, niche = adata.obsm["X_omnicell"], adata.obsm["X_omnicell_niche"]
        np.testing.assert_allclose(align_signs(cells, reference[:, 0]), reference[:, 0], atol=1e-3)
        np.testing.assert_allclose(align_signs(niche, reference.mean(1)), reference.mean(1), atol=1e-3)
