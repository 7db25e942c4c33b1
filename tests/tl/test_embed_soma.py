"""TileDB-SOMA input: a SOMA experiment built from an h5ad embeds to the h5ad's values; filters select cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import omnicell as oc
from conftest import CITE, STARMAP
from omnicell.cli import main

tiledbsoma_io = pytest.importorskip(
    "tiledbsoma.io", reason="tiledbsoma is not installed (pip install 'omnicell[census]')"
)


def _soma(adata: ad.AnnData, path) -> str:
    return tiledbsoma_io.from_anndata(str(path), adata, measurement_name="RNA")


@pytest.fixture(scope="module")
def pbmc(tmp_path_factory):
    # 60 cells of each batch (pbmc10k_cite first), so a filter on obs selects a known half.
    adata = ad.read_h5ad(CITE)
    assert adata.obs["batch"].tolist() == ["pbmc10k_cite"] * 60 + ["pbmc5k_cite"] * 60
    folder = tmp_path_factory.mktemp("soma")
    h5ad = folder / "pbmc.h5ad"
    adata.write_h5ad(h5ad)
    return adata, h5ad, _soma(adata, folder / "pbmc_soma")


def test_read_soma_is_lazy_and_matches_the_h5ad(pbmc):
    adata, _, uri = pbmc
    cells = oc.data.read_soma(uri, obs_columns=["batch"], chunk_rows=16)
    assert type(cells.X).__name__ == "Array"  # dask: nothing read yet
    assert list(cells.obs_names) == list(adata.obs_names) and list(cells.var_names) == list(adata.var_names)
    assert list(cells.obs.columns) == ["soma_joinid", "batch"]
    np.testing.assert_array_equal(cells.obs["soma_joinid"], np.arange(adata.n_obs))
    rows = np.array([3, 17, 18, 100])
    block = oc.data.read_csr(cells.X, rows, np.arange(adata.n_vars))
    np.testing.assert_array_equal(block.toarray(), adata.X[rows].toarray())


def test_soma_embeds_like_the_h5ad_and_filters_cells(pbmc):
    adata, _, uri = pbmc
    reference = adata.copy()
    oc.pp.tokenize(reference, "omnicell-tiny", n_genes=64)
    oc.tl.embed_cells(reference, "omnicell-tiny", device="cpu", batch_size=32)

    cells = oc.data.read_soma(uri, chunk_rows=25)
    oc.pp.tokenize(cells, "omnicell-tiny", n_genes=64)
    np.testing.assert_array_equal(
        cells.uns["omnicell"]["tokenize"]["genes"], reference.uns["omnicell"]["tokenize"]["genes"]
    )
    oc.tl.embed_cells(cells, "omnicell-tiny", device="cpu", batch_size=32)
    np.testing.assert_array_equal(cells.obsm["X_omnicell"], reference.obsm["X_omnicell"])

    # a value filter: only the second batch's cells, each with its own embedding (genes given, so the
    # gene choice does not depend on which cells were read)
    genes = list(reference.uns["omnicell"]["tokenize"]["genes"])
    second = oc.data.read_soma(uri, obs_value_filter="batch == 'pbmc5k_cite'", obs_columns=["batch"])
    assert second.n_obs == 60 and (second.obs["batch"] == "pbmc5k_cite").all()
    assert list(second.obs_names) == list(adata.obs_names[60:])
    oc.pp.tokenize(second, "omnicell-tiny", genes=genes)
    oc.tl.embed_cells(second, "omnicell-tiny", device="cpu")
    again = adata.copy()
    oc.pp.tokenize(again, "omnicell-tiny", genes=genes)
    oc.tl.embed_cells(again, "omnicell-tiny", device="cpu")
    np.testing.assert_allclose(second.obsm["X_omnicell"], again.obsm["X_omnicell"][60:], rtol=0, atol=1e-6)


def test_embed_cells_accepts_a_soma_uri(tmp_path):
    # with a URI, tokenisation runs with its defaults: a 302-gene panel, few cells
    adata = ad.read_h5ad(STARMAP)[:12].copy()
    uri = _soma(adata, tmp_path / "few")
    embedded = oc.tl.embed_cells(uri, "omnicell-tiny", device="cpu")
    reference = adata.copy()
    oc.tl.embed_cells(reference, "omnicell-tiny", device="cpu")
    np.testing.assert_array_equal(embedded.obsm["X_omnicell"], reference.obsm["X_omnicell"])


def test_cli_on_soma_writes_joinids_and_obs_columns(pbmc, tmp_path, capsys):
    adata, h5ad, uri = pbmc
    options = ["--model", "omnicell-tiny", "--n-genes", "64", "--batch-size", "16", "--quiet"]
    assert main(["embed", str(h5ad), "-o", str(tmp_path / "from_h5ad.h5ad"), *options]) == 0
    out = tmp_path / "from_soma.h5ad"
    assert main(["embed", uri, "-o", str(out), "--obs-columns", "batch,n_counts", *options]) == 0
    from_soma, from_h5ad = ad.read_h5ad(out), ad.read_h5ad(tmp_path / "from_h5ad.h5ad")
    np.testing.assert_array_equal(from_soma.obsm["X_omnicell"], from_h5ad.obsm["X_omnicell"])
    assert list(from_soma.obs.columns) == ["soma_joinid", "batch", "n_counts"] and from_soma.X is None
    assert from_soma.uns["omnicell"]["embed_cells"]["n_components"] == from_soma.obsm["X_omnicell"].shape[1]
    # the h5ad path keeps the input whole and adds the embedding
    assert from_h5ad.X is not None and (from_h5ad.X != adata.X).nnz == 0

    filtered = tmp_path / "filtered.h5ad"
    assert main(["embed", uri, "-o", str(filtered), "--obs-filter", "n_counts > 5000", *options]) == 0
    kept = ad.read_h5ad(filtered)
    assert list(kept.obs_names) == list(adata.obs_names[adata.obs["n_counts"] > 5000]) and 0 < kept.n_obs < adata.n_obs

    assert main(["embed", uri, "-o", str(tmp_path / "x.h5ad"), "--obs-filter", "n_counts > 1e9", *options]) == 1
    assert main(["embed", uri, "-o", str(tmp_path / "x.h5ad"), "--x-layer", "counts", *options]) == 1
    assert main(["embed", str(h5ad), "-o", str(tmp_path / "x.h5ad"), "--obs-filter", "a == 1", *options]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert "matches the obs filter" in errors[0] and "no X layer 'counts'" in errors[1] and "SOMA" in errors[2]
    assert not (tmp_path / "x.h5ad").exists()


def test_spatial_soma_reads_coordinates(tmp_path):
    adata = ad.read_h5ad(STARMAP)[:80].copy()
    uri = _soma(adata, tmp_path / "starmap_soma")
    options = ["--model", "omnicell-tiny", "--n-genes", "32", "--spatial", "--n-neighbors", "4", "--quiet"]
    adata.write_h5ad(tmp_path / "starmap.h5ad")
    assert main(["embed", str(tmp_path / "starmap.h5ad"), "-o", str(tmp_path / "a.h5ad"), *options]) == 0
    assert main(["embed", uri, "-o", str(tmp_path / "b.h5ad"), *options]) == 0
    a, b = ad.read_h5ad(tmp_path / "a.h5ad"), ad.read_h5ad(tmp_path / "b.h5ad")
    np.testing.assert_array_equal(a.obsm["omnicell_neighbors"], b.obsm["omnicell_neighbors"])
    np.testing.assert_array_equal(a.obsm["X_omnicell_niche"], b.obsm["X_omnicell_niche"])


def test_census_uri_opens_the_organism_of_the_requested_version(pbmc, monkeypatch):
    """census://VERSION/ORGANISM goes through cellxgene_census.open_soma (faked here: no network in tests)."""
    census_module = pytest.importorskip(
        "cellxgene_census", reason="cellxgene-census is not installed (pip install 'omnicell[census]')"
    )
    import tiledbsoma

    adata, _, uri = pbmc
    opened = []

    class FakeCensus(dict):
        def close(self):
            opened.append("closed")

    def open_soma(*, census_version):
        opened.append(census_version)
        return FakeCensus(census_data={"homo_sapiens": tiledbsoma.Experiment.open(uri)})

    monkeypatch.setattr(census_module, "open_soma", open_soma)
    cells = oc.data.read_soma("census://2025-01-30/homo_sapiens", obs_value_filter="n_counts > 5000")
    assert opened == ["2025-01-30"] and cells.n_obs == int((adata.obs["n_counts"] > 5000).sum())
    assert cells.uns["omnicell_source"]["soma_experiment"] == "census://2025-01-30/homo_sapiens"
    with pytest.raises(ValueError, match="no organism 'mus_musculus'"):
        oc.data.read_soma("census://mus_musculus")
    assert opened[-2:] == ["stable", "closed"]
