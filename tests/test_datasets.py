"""oc.datasets: local copies (OMNICELL_DATA_DIR, folder=), the download cache on a loopback server, pseudo-spots."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading

import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData

import omnicell as oc
from conftest import CITE, STARMAP
from omnicell.datasets import _datasets, _fetch


@pytest.fixture
def no_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("OMNICELL_DATA_DIR", raising=False)
    oc.settings.cache_dir = tmp_path / "cache"
    yield tmp_path / "cache" / "datasets"
    oc.settings.cache_dir = None


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """The committed subsets under the datasets' file names, their hashes registered in their place."""
    folder = tmp_path / "data"
    folder.mkdir()
    for attribute, subset in (("STARMAP", STARMAP), ("PBMC_CITE", CITE)):
        registered = getattr(_datasets, attribute)
        shutil.copy(subset, folder / registered.name)
        digest = hashlib.sha256(subset.read_bytes()).hexdigest()
        monkeypatch.setattr(_datasets, attribute, _fetch.DataFile(registered.name, "http://127.0.0.1:9/x", digest))
    return folder


def test_starmap_and_cite_from_the_data_dir(monkeypatch, no_data_dir, data_dir):
    monkeypatch.setenv("OMNICELL_DATA_DIR", str(data_dir))
    starmap = oc.datasets.starmap_visual_cortex()
    assert starmap.shape == (1207, 302)
    assert starmap.obs["domain"].dtype == "category" and starmap.obs["cell_type"].dtype == "category"
    assert starmap.obs["domain"].nunique() == 7 and starmap.obs["cell_type"].nunique() == 16
    assert starmap.obsm["spatial"].shape == (1207, 2)
    assert np.all(starmap.X.data == np.round(starmap.X.data))  # counts
    cite = oc.datasets.pbmc_cite()
    assert cite.shape == (120, 3001) and cite.obs["batch"].dtype == "category"
    assert cite.obs["batch"].value_counts().to_dict() == {"pbmc10k_cite": 60, "pbmc5k_cite": 60}
    assert not no_data_dir.exists()  # nothing downloaded or cached
    assert oc.datasets.files().loc["starmap_visual_cortex", "in_data_dir"]


def test_pbmc68k_counts_are_recovered_exactly():
    import scanpy as sc

    adata = oc.datasets.pbmc68k_reduced()
    assert adata.shape == (700, 765) and adata.obs["cell_type"].nunique() == 10
    counts = adata.X.toarray()
    assert np.array_equal(counts, np.round(counts))
    # the log1p(CP10k) of scanpy's raw.X back from the counts
    reduced = sc.datasets.pbmc68k_reduced()
    again = np.log1p(counts / reduced.obs["n_counts"].to_numpy()[:, None] * 1e4)
    np.testing.assert_allclose(again, reduced.raw.X.toarray(), atol=2e-3)


def test_offline_error_names_the_file_and_where_to_put_it(no_data_dir, monkeypatch, tmp_path):
    monkeypatch.setattr(
        _datasets, "STARMAP", _fetch.DataFile("starmap_by3.h5ad", "http://127.0.0.1:9/x.h5ad", "0" * 64)
    )
    with pytest.raises(OSError) as info:
        oc.datasets.starmap_visual_cortex()
    message = str(info.value)
    assert "starmap_by3.h5ad" in message and "OMNICELL_DATA_DIR" in message and str(no_data_dir) in message
    with pytest.raises(FileNotFoundError, match=f"starmap_by3.h5ad is not in {tmp_path}"):
        oc.datasets.starmap_visual_cortex(folder=tmp_path)


def test_a_local_copy_with_another_hash_is_refused(tmp_path, no_data_dir):
    (tmp_path / "pbmc_cite_2batch.h5ad").write_bytes(b"not the file")
    with pytest.raises(OSError, match="does not match the sha256"):
        oc.datasets.pbmc_cite(folder=tmp_path)


@pytest.fixture
def served(tmp_path):
    """A small h5ad served over HTTP on the loopback interface."""
    folder = tmp_path / "served"
    folder.mkdir()
    rng = np.random.default_rng(0)
    adata = AnnData(X=sp.csr_matrix(rng.poisson(1.0, (6, 4)).astype(np.float32)))
    adata.obs["batch"] = ["a", "a", "a", "b", "b", "b"]
    adata.write_h5ad(folder / "pbmc_cite_2batch.h5ad")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    digest = hashlib.sha256((folder / "pbmc_cite_2batch.h5ad").read_bytes()).hexdigest()
    yield f"http://127.0.0.1:{server.server_address[1]}/pbmc_cite_2batch.h5ad", digest, adata
    server.shutdown()


def test_download_once_then_from_the_cache(served, no_data_dir, monkeypatch):
    url, digest, original = served
    monkeypatch.setattr(_datasets, "PBMC_CITE", _fetch.DataFile("pbmc_cite_2batch.h5ad", url, digest))
    adata = oc.datasets.pbmc_cite()
    assert (no_data_dir / "pbmc_cite_2batch.h5ad").is_file()
    assert np.array_equal(adata.X.toarray(), original.X.toarray())
    # server gone: read from the cache
    monkeypatch.setattr(
        _datasets, "PBMC_CITE", _fetch.DataFile("pbmc_cite_2batch.h5ad", "http://127.0.0.1:9/x", digest)
    )
    assert oc.datasets.pbmc_cite().obs["batch"].tolist() == list("aaabbb")


def test_download_with_a_wrong_hash_fails_and_keeps_nothing(served, no_data_dir, monkeypatch):
    url, _, _ = served
    monkeypatch.setattr(_datasets, "PBMC_CITE", _fetch.DataFile("pbmc_cite_2batch.h5ad", url, "1" * 64))
    with pytest.raises(OSError, match="sha256"):
        oc.datasets.pbmc_cite()
    assert not (no_data_dir / "pbmc_cite_2batch.h5ad").exists()


def test_pseudo_spots_sum_counts_and_know_their_proportions():
    # 2 x 1 grid of spots of side 10: cells at x < 10 go to the first, 10 <= x < 20 to the second
    coords = np.array([[0, 0], [5, 5], [9, 1], [12, 3], [19, 9], [15, 0], [30, 30]], dtype=float)
    X = np.arange(14, dtype=np.float32).reshape(7, 2)
    adata = AnnData(X=sp.csr_matrix(X), obsm={"spatial": coords})
    adata.obs["cell_type"] = ["T", "T", "B", "B", "B", "T", "B"]
    adata.obs["layer"] = ["L1", "L1", "L1", "L2", "L2", "L1", "L2"]
    adata.obs = adata.obs.astype("category")
    spots = oc.datasets.pseudo_spots(adata, spot_size=10, label_key="cell_type", min_cells=2)
    assert spots.n_obs == 2  # the lone cell at (30, 30) is dropped
    np.testing.assert_array_equal(spots.X.toarray(), [X[:3].sum(0), X[3:6].sum(0)])
    np.testing.assert_allclose(spots.obsm["proportions"].to_numpy(), [[1 / 3, 2 / 3], [2 / 3, 1 / 3]])
    assert list(spots.obsm["proportions"].columns) == ["B", "T"]
    assert spots.obs["cell_type"].tolist() == ["T", "B"] and spots.obs["layer"].tolist() == ["L1", "L2"]
    np.testing.assert_allclose(spots.obsm["spatial"][0], coords[:3].mean(0))
    assert spots.obs["n_cells"].tolist() == [3, 3]
    with pytest.raises(ValueError, match="larger spot_size"):
        oc.datasets.pseudo_spots(adata, spot_size=0.1, label_key="cell_type")


def test_shared_folder_is_copied_not_modified(tmp_path, no_data_dir, data_dir):
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    assert oc.datasets.pbmc_cite(folder=data_dir).n_obs == 120
    assert {path.name: path.read_bytes() for path in data_dir.iterdir()} == before
    assert not no_data_dir.exists()
