"""Scatter/gather: ``embed --shard I/N`` over every shard, then ``merge``, equals the unsharded run."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import STARMAP
from omnicell._engine.split import shard_slice
from omnicell.cli import main
from omnicell.cli._shards import merge_shards, parse_shard


@pytest.mark.parametrize(("n_obs", "count"), [(10, 3), (3, 5), (0, 2), (100, 1), (7, 7)])
def test_shard_slice_matches_array_split(n_obs, count):
    expected = np.array_split(np.arange(n_obs), count)
    for index in range(count):
        np.testing.assert_array_equal(np.arange(n_obs)[shard_slice(n_obs, index, count)], expected[index])


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1", "a/b", "0/0"])
def test_parse_shard_rejects(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


@pytest.fixture(scope="module")
def starmap_file(tmp_path_factory):
    adata = ad.read_h5ad(STARMAP)[:130].copy()
    # A graph in obsp must come back whole: a random sparse symmetric matrix over the cells.
    graph = sp.random(adata.n_obs, adata.n_obs, density=0.05, random_state=0, format="csr", dtype=np.float32)
    adata.obsp["graph"] = graph + graph.T
    path = tmp_path_factory.mktemp("shards") / "starmap.h5ad"
    adata.write_h5ad(path)
    return path


def _run(*args):
    assert main([*map(str, args), "--quiet"]) == 0


@pytest.mark.parametrize("spatial", [False, True], ids=["single-cell", "spatial"])
def test_three_shards_merge_to_the_unsharded_run(starmap_file, tmp_path, spatial):
    options = ["--n-genes", "48", "--batch-size", "16", "--model", "omnicell-tiny"]
    if spatial:
        options += ["--spatial", "--n-neighbors", "4", "--store-window"]
    _run("embed", starmap_file, "-o", tmp_path / "full.h5ad", *options)
    for index in (2, 0, 1):
        _run("embed", starmap_file, "-o", tmp_path / f"part{index}.h5ad", "--shard", f"{index}/3", *options)
    shard = ad.read_h5ad(tmp_path / "part1.h5ad", backed="r")
    assert shard.n_obs == 43 and shard.obs_names[0] == ad.read_h5ad(starmap_file, backed="r").obs_names[44]
    _run(
        "merge",
        tmp_path / "part1.h5ad",
        tmp_path / "part0.h5ad",
        tmp_path / "part2.h5ad",
        "-o",
        tmp_path / "merged.h5ad",
    )

    full, merged = ad.read_h5ad(tmp_path / "full.h5ad"), ad.read_h5ad(tmp_path / "merged.h5ad")
    assert list(merged.obs_names) == list(full.obs_names)
    import pandas.testing as pd_testing

    pd_testing.assert_frame_equal(merged.obs, full.obs)
    pd_testing.assert_frame_equal(merged.var, full.var)
    assert (merged.X != full.X).nnz == 0 and merged.X.dtype == full.X.dtype
    assert sorted(merged.obsm) == sorted(full.obsm)
    for key in full.obsm:
        assert merged.obsm[key].dtype == full.obsm[key].dtype
        np.testing.assert_array_equal(merged.obsm[key], full.obsm[key])  # bit-identical float32 on CPU
    assert (merged.obsp["graph"] != full.obsp["graph"]).nnz == 0
    records, reference = merged.uns["omnicell"], full.uns["omnicell"]
    assert sorted(records) == sorted(reference) and "shard" not in records
    assert records["embed_cells"] == reference["embed_cells"]
    np.testing.assert_array_equal(records["tokenize"]["genes"], reference["tokenize"]["genes"])
    if spatial:
        assert "X_omnicell_window" in merged.obsm and np.isnan(merged.obsm["X_omnicell_window"]).sum() == 0


@pytest.fixture(scope="module")
def two_runs(starmap_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    for index in range(2):
        _run("embed", starmap_file, "-o", folder / f"a{index}.h5ad", "--shard", f"{index}/2", "--n-genes", "32")
    _run("embed", starmap_file, "-o", folder / "b0.h5ad", "--shard", "0/2", "--n-genes", "24")
    return folder


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["a0"], "1/2 missing"),
        (["a0", "a0", "a1"], "given twice"),
        (["b0", "a1"], "other tokenize parameters"),
        (["a0", "nothere"], "does not exist"),
        (["a0", "input"], "is not a shard"),
    ],
)
def test_merge_refuses_shards_that_do_not_belong_together(two_runs, starmap_file, files, message, capsys):
    paths = [starmap_file if name == "input" else two_runs / f"{name}.h5ad" for name in files]
    output = two_runs / "merged.h5ad"
    assert main(["merge", *map(str, paths), "-o", str(output)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("omnicell: error:") and message in error and len(error.strip().splitlines()) == 1
    assert not output.exists()


def test_merge_api_takes_anndata_objects(two_runs):
    merged = merge_shards([ad.read_h5ad(two_runs / "a1.h5ad"), two_runs / "a0.h5ad"])
    assert merged.n_obs == 130 and "shard" not in merged.uns["omnicell"]
