"""perturb_niche on the STARmap section (labelled 'domain') with the bundled omnicell-tiny in spatial mode."""

from __future__ import annotations

import functools

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch

import omnicell as oc
from conftest import STARMAP
from omnicell._engine.plan import plan_inference

MODEL = "omnicell-tiny"
KEY = "omnicell_niche_perturb"
NICHE = "X_omnicell_niche"


@functools.lru_cache(maxsize=1)
def _embedded() -> ad.AnnData:
    adata = ad.read_h5ad(STARMAP)
    # A strip across the cortical layers (they run along y): every domain, a third of the cells.
    y = adata.obsm["spatial"][:, 1]
    low, high = np.quantile(y, [0.35, 0.65])
    adata = adata[(y >= low) & (y <= high)].copy()
    oc.pp.tokenize(adata, MODEL, spatial=True)
    oc.tl.embed_cells(adata, MODEL, device="cpu")
    return adata


@pytest.fixture
def starmap() -> ad.AnnData:
    """A strip of the STARmap section (~360 cells) tokenised in spatial mode, with X_omnicell and X_omnicell_niche."""
    return _embedded().copy()


def _run(adata, cells, **kwargs):
    options = {"model": MODEL, "device": "cpu", "n_null": 2, "batch_size": 8, **kwargs}
    oc.tl.perturb_niche(adata, cells=adata.obs_names[cells], **options)
    return adata


def _centroid(adata, domain):
    return adata.obsm[NICHE][(adata.obs["domain"] == domain).to_numpy()].mean(0)


def test_replacing_neighbours_by_another_domain_moves_niches_toward_it(starmap):
    adata = starmap
    cells = np.flatnonzero((adata.obs["domain"] == "L4").to_numpy())[::8][:8]
    _run(adata, cells, replace_with="cc", groupby="domain", domain_key="domain")
    target = _centroid(adata, "cc")
    before = np.linalg.norm(adata.obsm[NICHE][cells] - target, axis=1)
    after = np.linalg.norm(adata.obsm[KEY][cells] - target, axis=1)
    assert (after < before).mean() >= 0.75
    edit = adata.uns[KEY]["edit"].set_index("group")
    present = (adata.obsm["omnicell_neighbors"][cells] >= 0).sum(1).mean()
    assert edit.loc["L4", "n_removed"] == present and edit.loc["L4", "n_replaced"] == present
    shift = adata.obs[KEY + "_shift"].to_numpy()
    assert (shift[cells] > 0).all() and np.isnan(np.delete(shift, cells)).all()
    assert adata.uns[KEY]["shift"].loc[0, "n_affected"] == len(cells)
    # Domains: the nearest centroid (Euclidean) of the domains in the niche space, before and after.
    names = np.array(sorted(adata.obs["domain"].astype(str).unique()))
    centroids = np.stack([_centroid(adata, name) for name in names])
    for column, embedding in (("_domain_before", adata.obsm[NICHE][cells]), ("_domain_after", adata.obsm[KEY][cells])):
        nearest = names[np.argmin(((embedding[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
        assert list(adata.obs[KEY + column].iloc[cells]) == list(nearest)
        assert adata.obs[KEY + column].drop(adata.obs_names[cells]).isna().all()


def test_removing_all_neighbours_reads_the_cell_alone(starmap):
    adata = starmap
    cells = np.arange(0, 360, 90)
    _run(adata, cells, remove=True)
    # Each cell read alone: a sequence of its own block only (no neighbour blocks, no padding), pooled and
    # projected as embed_cells does.
    plan = plan_inference(adata, MODEL, batch_size=8, device="cpu", precision="float32")
    batch = plan.token_batch(cells, np.empty((len(cells), 0), dtype=np.int64))
    assert batch.n_blocks == 1 and batch.padding_mask is None
    tensors = batch.to_torch("cpu")
    with torch.inference_mode():
        hidden = plan.model.network(tensors["tokens"], tensors["values"], tensors["positions"], None).hidden
    pooled = oc.nn.pool_cells(hidden, tensors["cell_index"], tensors["expressed"], 1)[:, 0]
    alone = (pooled @ plan.model.spectral_basis(0.9)).numpy()
    np.testing.assert_allclose(adata.obsm[KEY][cells], alone, atol=1e-5)
    assert (adata.obs[KEY + "_shift"].to_numpy()[cells] > 0).all()
    assert KEY + "_domain_before" not in adata.obs  # no obs['omnicell_domain']: skipped


def test_exact_zero_without_affected_neighbours_and_batch_size(starmap):
    adata = starmap
    domain = adata.obs["domain"].astype(str).to_numpy()
    neighbors = adata.obsm["omnicell_neighbors"]
    has_hpc = (np.where(neighbors >= 0, domain[np.maximum(neighbors, 0)], "") == "HPC").any(1)
    cells = np.concatenate([np.flatnonzero(has_hpc)[:3], np.flatnonzero(~has_hpc)[:2]])
    first = _run(adata.copy(), cells, remove="HPC", replace_with="L6", groupby="domain", batch_size=5)
    second = _run(adata.copy(), cells, remove="HPC", replace_with="L6", groupby="domain", batch_size=2)
    shift = first.obs[KEY + "_shift"].to_numpy()
    assert (shift[cells[3:]] == 0).all() and (shift[cells[:3]] > 0).all()
    np.testing.assert_allclose(first.obsm[KEY][cells[3:]], adata.obsm[NICHE][cells[3:]], atol=1e-5)
    assert (first.layers[KEY][cells[3:]].toarray() == 0).all() and first.layers[KEY][cells[:3]].nnz > 0
    np.testing.assert_allclose(second.obs[KEY + "_shift"], shift, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(second.layers[KEY].toarray(), first.layers[KEY].toarray(), atol=1e-4)
    pd.testing.assert_frame_equal(second.uns[KEY]["effects"], first.uns[KEY]["effects"], rtol=1e-3, atol=1e-5)


def test_knockout_in_neighbours(starmap, tmp_path):
    adata = starmap
    cells = np.arange(5, 360, 60)
    gene = "Slc17a7"
    _run(adata, cells, knockout_in_neighbors=gene)
    row = adata.uns[KEY]["genes"].iloc[0]
    batch = oc.get.token_batch(adata, cells, MODEL)
    token = adata.var.loc[gene, "omnicell_token"]
    in_neighbours = ((batch.tokens == token) & (batch.cell_index >= 1) & (batch.values > 0)).any(1)
    assert row["tokenized"] and row["n_perturbed"] == in_neighbours.sum()
    shift = adata.obs[KEY + "_shift"].to_numpy()[cells]
    assert ((shift > 0) == in_neighbours).all()
    adata.write_h5ad(tmp_path / "n.h5ad")
    back = ad.read_h5ad(tmp_path / "n.h5ad")
    pd.testing.assert_frame_equal(back.uns[KEY]["effects"], adata.uns[KEY]["effects"], check_dtype=False)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"remove": "nowhere", "groupby": "domain"}, ValueError, "nowhere"),
        ({"replace_with": "cc"}, ValueError, "groupby"),
        ({"remove": "cc", "groupby": "missing"}, KeyError, "missing"),
        ({}, ValueError, "one kind of edit"),
        ({"remove": True, "knockout_in_neighbors": "Slc17a7"}, ValueError, "one kind of edit"),
        ({"knockout_in_neighbors": "NOT_A_GENE"}, KeyError, "NOT_A_GENE"),
        ({"remove": False}, ValueError, "remove"),
        ({"remove": True, "library_key": "missing"}, KeyError, "library_key"),
    ],
)
def test_bad_input_errors_before_writing(starmap, options, error, match):
    before = starmap.copy()
    with pytest.raises(error, match=match):
        oc.tl.perturb_niche(starmap, model=MODEL, device="cpu", **options)
    assert list(starmap.uns["omnicell"]) == list(before.uns["omnicell"]) and list(starmap.obs) == list(before.obs)


def test_non_spatial_adata_is_refused():
    adata = ad.read_h5ad(STARMAP)
    oc.pp.tokenize(adata, MODEL)
    before = adata.copy()
    with pytest.raises(ValueError, match="spatial=True"):
        oc.tl.perturb_niche(adata, remove=True, model=MODEL)
    assert list(adata.uns["omnicell"]) == list(before.uns["omnicell"]) and "omnicell_neighbors" not in adata.obsm
    cells = sc.datasets.pbmc68k_reduced()  # no coordinates: tokenising it spatially fails, and writes nothing
    with pytest.raises(KeyError, match="spatial"):
        oc.tl.perturb_niche(cells, remove=True, model=MODEL)
    assert "omnicell" not in cells.uns and "omnicell_selected" not in cells.var
