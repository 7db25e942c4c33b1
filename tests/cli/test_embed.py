"""The omnicell command: input untouched, output atomic, bad input exits non-zero with one line."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import anndata as ad
import numpy as np
import pytest

from _helpers import align_signs
from omnicell.cli import main


@pytest.fixture
def input_file(tiny_adata, tmp_path):
    path = tmp_path / "cells.h5ad"
    tiny_adata.write_h5ad(path)
    return path


@pytest.fixture
def gene_file(expected, tmp_path):
    path = tmp_path / "genes.txt"
    path.write_text("# selected genes\n" + "\n".join(expected["selected_genes"]) + "\n")
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_embed_single_cell_and_spatial(input_file, gene_file, tiny_dir, tmp_path, expected, capsys):
    before = _digest(input_file)
    output = tmp_path / "out" / "embedded.h5ad"
    with pytest.warns(UserWarning, match="express none"):
        status = main(
            [
                "embed",
                str(input_file),
                "-o",
                str(output),
                "--model",
                str(tiny_dir),
                "--genes",
                str(gene_file),
                "--quiet",
            ]
        )
    assert status == 0
    assert _digest(input_file) == before
    result = ad.read_h5ad(output)
    reference = expected["sc_cell_embedding"]
    np.testing.assert_allclose(align_signs(result.obsm["X_omnicell"], reference), reference, atol=1e-4)
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("wrote") == 1  # one result line, not a log line as well

    spatial_output = tmp_path / "spatial.h5ad"
    with pytest.warns(UserWarning):
        status = main(["embed", str(input_file), "-o", str(spatial_output), "--model", str(tiny_dir),
                       "--genes", str(gene_file), "--spatial", "--n-neighbors", "3", "--store-window",
                       "--batch-size", "5", "--quiet"])  # fmt: skip
    assert status == 0
    window = ad.read_h5ad(spatial_output).obsm["X_omnicell_window"]
    np.testing.assert_allclose(
        align_signs(window, expected["sp_cell_embedding"]), expected["sp_cell_embedding"], atol=1e-3
    )


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda a: a.X.__setitem__((2, 2), -1), "negative values"),
        (lambda a: a.obsm.pop("spatial"), "coordinates"),
        (lambda a: setattr(a, "var_names", [f"G{i}" for i in range(a.n_vars)]), "vocabulary"),
    ],
)
def test_bad_input_leaves_no_output(tiny_adata, tiny_dir, tmp_path, corrupt, message, capsys):
    corrupt(tiny_adata)
    path = tmp_path / "bad.h5ad"
    tiny_adata.write_h5ad(path)
    output = tmp_path / "result.h5ad"
    status = main(
        ["embed", str(path), "-o", str(output), "--model", str(tiny_dir), "--spatial", "--n-neighbors", "3", "--quiet"]
    )
    assert status == 1
    error = capsys.readouterr().err
    assert error.startswith("omnicell: error:") and message in error
    assert len(error.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [path]  # no output, no temporary file left


def test_missing_input_and_same_output(tiny_dir, input_file, tmp_path, capsys):
    assert main(["embed", str(tmp_path / "none.h5ad"), "-o", str(tmp_path / "o.h5ad"), "--model", str(tiny_dir)]) == 1
    assert main(["embed", str(input_file), "-o", str(input_file), "--model", str(tiny_dir)]) == 1
    assert "output must differ" in capsys.readouterr().err


def test_models_commands_through_the_installed_script(tiny_dir, tmp_path):
    listing = subprocess.run(
        [sys.executable, "-m", "omnicell.cli", "models", "list"], capture_output=True, text=True, check=True
    )
    assert "omnicell-v1" in listing.stdout
    converted = subprocess.run(
        ["omnicell", "models", "convert", str(tiny_dir), str(tmp_path / "own")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "own" / "model.safetensors").exists() and "own" in converted.stdout
    failed = subprocess.run(["omnicell", "models", "download", "nope"], capture_output=True, text=True)
    assert failed.returncode == 1 and "Unknown model 'nope'" in failed.stderr
