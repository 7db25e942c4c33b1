"""omnicell index and omnicell search: the files equal the Python calls' results; bad outputs and inputs refused."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import omnicell as oc
from omnicell.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("index")
    adata = sc.datasets.pbmc68k_reduced()
    is_reference = np.random.default_rng(0).random(adata.n_obs) < 0.6
    adata[is_reference].copy().write_h5ad(folder / "reference.h5ad")
    adata[~is_reference].copy().write_h5ad(folder / "query.h5ad")
    return folder


def _cli(*args) -> int:
    return main([*map(str, args), "--quiet"])


@pytest.mark.parametrize("name", ["index", "index.tar"])
def test_index_then_search_equal_the_python_calls(files, tmp_path, name):
    output = tmp_path / name
    options = ["--use-rep", "X_pca", "--obs-keys", "bulk_labels,n_genes"]
    assert _cli("index", files / "reference.h5ad", "-o", output, *options, "--chunk-size", "64") == 0
    assert output.is_dir() == (name == "index")
    written = oc.data.ReferenceIndex.load(output)
    expected = oc.tl.build_index(files / "reference.h5ad", use_rep="X_pca", obs_keys=["bulk_labels", "n_genes"])
    assert (written.sha256, written.method, written.use_rep) == (expected.sha256, "exact", "X_pca")
    pd.testing.assert_frame_equal(written.obs, expected.obs)

    searched, table = tmp_path / "searched.h5ad", tmp_path / "hits.tsv"
    assert _cli("search", files / "query.h5ad", "-o", searched, "--index", output, "--use-rep", "X_pca",
                "--k", "4", "--obs-keys", "bulk_labels", "--table", table) == 0  # fmt: skip
    query = ad.read_h5ad(files / "query.h5ad")
    hits = oc.tl.search(query, expected, k=4, use_rep="X_pca", obs_keys="bulk_labels")
    result = ad.read_h5ad(searched)
    for key in ("omnicell_search_indices", "omnicell_search_distances"):
        np.testing.assert_array_equal(result.obsm[key], query.obsm[key])
    assert result.uns["omnicell"]["search"]["sha256"] == expected.sha256
    written_table = pd.read_csv(table, sep="\t")
    assert list(written_table.columns) == list(hits.columns)
    assert written_table["reference"].tolist() == hits["reference"].tolist()
    assert written_table["bulk_labels"].tolist() == hits["bulk_labels"].astype(str).tolist()
    np.testing.assert_allclose(written_table["distance"], hits["distance"], rtol=1e-6)


def test_index_refuses_outputs_and_inputs_it_cannot_use(files, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert _cli("index", files / "reference.h5ad", "-o", mine, "--use-rep", "X_pca") == 1
    assert "exists and is not a reference index" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    not_tar = tmp_path / "other.tar"
    not_tar.write_text("not an index")
    assert _cli("index", files / "reference.h5ad", "-o", not_tar, "--use-rep", "X_pca") == 1
    assert not_tar.read_text() == "not an index"
    capsys.readouterr()
    assert _cli("index", files / "reference.h5ad", "-o", tmp_path / "new") == 1
    error = capsys.readouterr().err
    assert "no obsm['X_omnicell']" in error and "--use-rep" in error
    assert not (tmp_path / "new").exists() and not any(p.name.startswith(".new") for p in tmp_path.iterdir())
    assert _cli("index", tmp_path / "missing.h5ad", "-o", tmp_path / "new") == 1
    assert "does not exist" in capsys.readouterr().err
    # An index is replaced by a new one.
    index = tmp_path / "index"
    assert _cli("index", files / "reference.h5ad", "-o", index, "--use-rep", "X_pca", "--obs-keys", "bulk_labels") == 0
    assert _cli("index", files / "reference.h5ad", "-o", index, "--use-rep", "X_pca", "--metric", "cosine") == 0
    assert oc.data.ReferenceIndex.load(index).metric == "cosine"


def test_search_refuses_a_folder_that_is_not_an_index(files, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    output = tmp_path / "out.h5ad"
    assert _cli("search", files / "query.h5ad", "-o", output, "--index", tmp_path / "empty", "--use-rep", "X_pca") == 1
    assert "is not a reference index" in capsys.readouterr().err and not output.exists()
