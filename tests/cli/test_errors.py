"""Errors a wrapper can show: one line `omnicell: error: ...` naming the file or option, and the documented status."""

from __future__ import annotations

import subprocess
import sys

import anndata as ad
import numpy as np
import pytest

from omnicell.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_USAGE, main


@pytest.fixture
def cells(tiny_adata, tmp_path):
    path = tmp_path / "cells.h5ad"
    tiny_adata.obs["group"] = np.where(np.arange(tiny_adata.n_obs) % 2 == 0, "a", "b")
    tiny_adata.write_h5ad(path)
    return path


def _error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("omnicell: error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("cell,gene\n1,2\n"), "not an HDF5"),
        (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64), "cannot read input file"),
        (lambda p: p.mkdir(), "is a folder"),
    ],
    ids=["missing", "csv", "truncated", "folder"],
)
def test_unreadable_inputs(make, message, tmp_path, capsys, tiny_dir):
    path = tmp_path / "cells.h5ad"
    make(path)
    status = main(["gene-modules", str(path), "-o", str(tmp_path / "out.h5ad")])
    assert status == EXIT_BAD_INPUT
    line = _error(capsys)
    assert message in line and str(path) in line
    assert not (tmp_path / "out.h5ad").exists()


def test_wrong_suffixes_and_same_output(cells, tmp_path, capsys):
    assert main(["embed", str(cells.with_suffix(".csv")), "-o", str(tmp_path / "o.h5ad")]) == EXIT_BAD_INPUT
    assert "does not exist" in _error(capsys)
    assert main(["embed", str(cells), "-o", str(tmp_path / "out.csv")]) == EXIT_BAD_INPUT
    assert "-o" in _error(capsys)
    assert main(["embed", str(cells), "-o", str(cells)]) == EXIT_BAD_INPUT
    assert "must differ from the input" in _error(capsys)
    assert (
        main(["plot", "markers", str(cells), "-o", str(tmp_path / "figure.jpg"), "--groupby", "group"])
        == EXIT_BAD_INPUT
    )
    assert ".png, .pdf or .svg" in _error(capsys)


def test_bad_option_values(cells, tmp_path, capsys, tiny_dir):
    output = tmp_path / "out.h5ad"
    common = [str(cells), "-o", str(output), "--model", str(tiny_dir)]
    assert main(["embed", *common, "--device", "tpu"]) == EXIT_BAD_INPUT
    assert "--device tpu" in _error(capsys)
    assert main(["embed", *common, "--shard", "3/3"]) == EXIT_BAD_INPUT
    assert "--shard 3/3" in _error(capsys)
    assert main(["embed", *common, "--n-genes", "0"]) == EXIT_BAD_INPUT
    assert "n_genes" in _error(capsys)
    assert main(["embed", *common, "--genes", str(tmp_path / "none.txt")]) == EXIT_BAD_INPUT
    assert "--genes" in _error(capsys)
    assert main(["embed", *common, "--threads", "0"]) == EXIT_BAD_INPUT
    assert "--threads" in _error(capsys)
    assert main(["marker-genes", *common, "--groupby", "nope"]) == EXIT_BAD_INPUT
    assert "nope" in _error(capsys)
    assert not output.exists()


def test_models_are_never_downloaded(cells, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMNICELL_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert main(["embed", str(cells), "-o", str(tmp_path / "o.h5ad"), "--model", "omnicell-v1"]) == EXIT_BAD_INPUT
    assert "omnicell models download omnicell-v1" in _error(capsys)
    assert main(["embed", str(cells), "-o", str(tmp_path / "o.h5ad"), "--model", "no-such-model"]) == EXIT_BAD_INPUT
    assert "no such checkpoint folder" in _error(capsys)


def test_usage_errors_exit_2(cells, capsys):
    assert main(["embed", str(cells)]) == EXIT_USAGE  # no -o
    assert main(["no-such-command"]) == EXIT_USAGE
    assert main(["evaluate-clustering", str(cells), "-o", "x.h5ad"]) == EXIT_USAGE  # --label-key is required
    assert main(["evaluate-clustering", str(cells), "-o", "x.h5ad", "--label-key", "g", "--select", "f1"]) == EXIT_USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_internal_errors_exit_3_with_the_traceback_only_when_verbose(cells, tmp_path, capsys, monkeypatch):
    from omnicell.cli import _run

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(_run, "read_data", broken)
    arguments = ["gene-modules", str(cells), "-o", str(tmp_path / "o.h5ad")]
    assert main(arguments) == EXIT_INTERNAL
    line = _error(capsys)
    assert "internal error" in line and "ZeroDivisionError: a bug" in line and "--verbose" in line
    assert main([*arguments, "--verbose"]) == EXIT_INTERNAL
    assert "Traceback" in capsys.readouterr().err


def test_h5mu_input_with_mod(tiny_adata, tiny_dir, expected, tmp_path, capsys):
    import mudata

    tiny_adata.X = tiny_adata.X.astype(np.float32)
    protein = ad.AnnData(np.ones((tiny_adata.n_obs, 2), dtype=np.float32), obs=tiny_adata.obs.copy())
    path = tmp_path / "cells.h5mu"
    mudata.MuData({"gex": tiny_adata, "prot": protein}).write_h5mu(path)
    genes = tmp_path / "genes.txt"
    genes.write_text("\n".join(expected["selected_genes"]))
    output = tmp_path / "out.h5mu"
    arguments = [str(path), "-o", str(output), "--model", str(tiny_dir), "--genes", str(genes), "--quiet"]
    assert main(["embed", *arguments]) == EXIT_BAD_INPUT  # no 'rna' modality: --mod is needed
    assert "--mod" in _error(capsys)
    with pytest.warns(UserWarning, match="express none"):
        assert main(["embed", *arguments, "--mod", "gex"]) == 0
    result = mudata.read_h5mu(output)
    assert result.mod["gex"].obsm["X_omnicell"].shape[0] == tiny_adata.n_obs
    assert "X_omnicell" in result.obsm
    assert main(["embed", *arguments[:-1], "--mod", "gex", "-o", str(tmp_path / "out.h5ad")]) == EXIT_BAD_INPUT
    assert "must end in .h5mu" in _error(capsys)


def test_installed_script_reports_one_line(tmp_path):
    missing, output = tmp_path / "none.h5ad", tmp_path / "o.h5ad"
    result = subprocess.run(
        [sys.executable, "-m", "omnicell", "spatial-domains", str(missing), "-o", str(output)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip().splitlines() == [
        f"omnicell: error: input file {tmp_path / 'none.h5ad'} does not exist."
    ]
