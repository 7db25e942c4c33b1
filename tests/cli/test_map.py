"""omnicell map: the command's output equals oc.tl.map_query's, with an .h5ad or an index as --reference."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import omnicell as oc
from omnicell.cli import EXIT_BAD_INPUT, main


def _cells(n: int, seed: int) -> ad.AnnData:
    """Embedded cells of three overlapping types (an embedding-only AnnData, as a reference often is)."""
    centres = np.random.default_rng(7).normal(size=(3, 8)) * 2
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 3, n)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type{t}" for t in types])}, index=[f"{seed}-{i}" for i in range(n)]
    )
    adata = ad.AnnData(np.zeros((n, 2), dtype=np.float32), obs=obs)
    adata.obsm["X_omnicell"] = (centres[types] + rng.normal(size=(n, 8))).astype(np.float32)
    return adata


@pytest.fixture
def files(tmp_path):
    reference, query = _cells(400, 0), _cells(100, 1)
    reference.write_h5ad(tmp_path / "reference.h5ad")
    query.write_h5ad(tmp_path / "query.h5ad")
    return tmp_path


def _run(*args) -> int:
    return main([*map(str, args), "--quiet"])


def _same_calls(path, expected: ad.AnnData) -> None:
    written = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(written.obs, expected.obs)
    pd.testing.assert_frame_equal(written.obsm["omnicell_probabilities"], expected.obsm["omnicell_probabilities"])
    record, python = written.uns["omnicell"]["map_query"], expected.uns["omnicell"]["map_query"]
    assert sorted(record) == sorted(python)
    for key in ("coverage", "threshold", "temperature", "mean_set_size", "reference_sha256", "query_coverage"):
        assert record[key] == python[key], key


def test_map_with_a_reference_file_and_an_index(files, capsys):
    options = ["--label-key", "cell_type", "--alpha", "0.2", "--query-label-key", "cell_type", "--random-state", "3"]
    output, table = files / "mapped.h5ad", files / "calls.tsv"
    assert _run("map", files / "query.h5ad", "-o", output, "--reference", files / "reference.h5ad", *options,
                "--table", table) == 0  # fmt: skip
    expected = ad.read_h5ad(files / "query.h5ad")
    oc.tl.map_query(expected, ad.read_h5ad(files / "reference.h5ad"), "cell_type", alpha=0.2,
                    query_label_key="cell_type", random_state=3)  # fmt: skip
    expected.write_h5ad(files / "python.h5ad")  # as the command's output is read: strings become categories
    expected = ad.read_h5ad(files / "python.h5ad")
    _same_calls(output, expected)
    calls = pd.read_csv(table, sep="\t", index_col=0)
    assert list(calls.columns) == [
        f"omnicell_{c}" for c in ("label", "confidence", "label_set", "unknown", "novelty_pval")
    ]
    assert (calls["omnicell_label"] == expected.obs["omnicell_label"].astype(str)).all()
    np.testing.assert_allclose(calls["omnicell_confidence"], expected.obs["omnicell_confidence"], rtol=1e-6)

    # An index folder (and its .tar) as --reference: the same calls, the index's hash in the record.
    for name in ("reference_index", "reference_index.tar"):
        assert _run("index", files / "reference.h5ad", "-o", files / name, "--obs-keys", "cell_type") == 0
        from_index = files / f"mapped_{name.replace('.', '_')}.h5ad"
        assert _run("map", files / "query.h5ad", "-o", from_index, "--reference", files / name, *options) == 0
        mapped = ad.read_h5ad(from_index)
        pd.testing.assert_frame_equal(mapped.obsm["omnicell_probabilities"], expected.obsm["omnicell_probabilities"])
        pd.testing.assert_frame_equal(mapped.obs, expected.obs)
        index_hash = oc.data.ReferenceIndex.load(files / name).sha256
        assert mapped.uns["omnicell"]["map_query"]["reference_sha256"] == index_hash
    capsys.readouterr()

    figure = files / "mapping.png"
    assert _run("plot", "mapping", output, "-o", figure, "--basis", "omnicell") == 0
    assert figure.read_bytes()[:4] == b"\x89PNG"


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("omnicell: error: "), lines
    return lines[0]


def test_map_errors_name_the_option(files, capsys):
    output = files / "mapped.h5ad"
    base = ["map", files / "query.h5ad", "-o", output, "--label-key", "cell_type"]
    (files / "not_an_index").mkdir()
    assert _run(*base, "--reference", files / "not_an_index") == EXIT_BAD_INPUT
    assert "not a reference index" in _error(capsys)
    assert _run(*base, "--reference", files / "reference.h5ad", "--alpha", "1.5") == EXIT_BAD_INPUT
    assert "alpha must lie strictly between 0 and 1" in _error(capsys)
    assert _run(*base, "--reference", files / "reference.h5ad", "--k", "1000") == EXIT_BAD_INPUT
    assert "--k 1000 exceeds" in _error(capsys)
    assert not output.exists()
