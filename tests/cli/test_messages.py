"""Messages at the command line are in its words: options and commands, never Python keywords or calls."""

from __future__ import annotations

import re

import numpy as np
import pytest

import omnicell as oc
from omnicell.cli import EXIT_BAD_INPUT, EXIT_USAGE, main
from omnicell.cli._errors import cli_message

#: ``name=`` keyword syntax, or a call of a Python function.
PYTHON = re.compile(r"(?<![-=\w])[a-z_]\w*=(?!=)|\b(oc|omnicell|sc|sq)\.[\w.]+\(|\badata\b")


@pytest.fixture
def cells(tiny_adata, tmp_path):
    path = tmp_path / "cells.h5ad"
    del tiny_adata.obsm["spatial"]
    tiny_adata.obs["group"] = np.where(np.arange(tiny_adata.n_obs) % 2 == 0, "a", "b")
    tiny_adata.write_h5ad(path)
    return path


def _stderr(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("No coordinates in adata.obsm['spatial']; pass spatial_key=.", "pass --spatial-key."),
        ("No layer 'counts' in adata.layers. Pass layer=.", "Pass --layer."),
        (
            "adata was tokenised without context; run oc.pp.tokenize(adata, model, spatial=True) first.",
            "run omnicell embed --spatial first.",
        ),
        ("No gene modules; run oc.tl.gene_modules(adata) first.", "run omnicell gene-modules first."),
        ("bfloat16 autocast is supported on CUDA only; use precision='float32' on the CPU.", "--precision float32"),
        ("PyTorch sees no CUDA GPU; use device='cpu' or 'auto'.", "use --device cpu"),
        ("No marker genes in adata.uns['m']; run oc.tl.marker_genes(adata, groupby) first.", "omnicell marker-genes"),
    ],
)
def test_library_messages_are_translated_to_options(message, expected):
    import omnicell.pl
    import omnicell.tl  # noqa: F401  (the keywords known are those of the imported tools)

    translated = cli_message(message)
    assert expected in translated
    assert not PYTHON.search(translated), translated


def test_messages_of_real_commands_name_options(cells, tmp_path, tiny_dir, capsys):
    output = str(tmp_path / "out.h5ad")
    failing = [
        ["embed", str(cells), "-o", output, "--model", str(tiny_dir), "--spatial"],  # no obsm['spatial']
        ["embed", str(cells), "-o", output, "--model", str(tiny_dir), "--layer", "counts"],  # no such layer
        ["gene-modules", str(cells), "-o", output],  # no gene embeddings
        ["plot", "markers", str(cells), "-o", str(tmp_path / "m.png"), "--groupby", "group"],  # no markers
    ]
    for argv in failing:
        assert main(argv) == EXIT_BAD_INPUT, argv
        lines = _stderr(capsys)
        error = [line for line in lines if line.startswith("omnicell: error: ")]
        assert len(error) == 1, lines
        assert not PYTHON.search(error[0]), error[0]
    assert main(failing[0]) == EXIT_BAD_INPUT
    assert "--spatial-key" in _stderr(capsys)[-1]


def test_usage_error_line_comes_first(cells, capsys):
    assert main(["embed", str(cells), "-o", "x.h5ad", "--projection", "abc"]) == EXIT_USAGE
    lines = _stderr(capsys)
    assert lines[0].startswith("omnicell embed: error: argument --projection") and "abc" in lines[0]
    assert len(lines) <= 2 and not any(line.startswith("usage:") for line in lines)


def test_random_state_none_and_the_hidden_seed_run(cells, tmp_path, capsys):
    """``--random-state none`` (the documented default) and the former ``--seed`` both run a tool."""
    from omnicell.cli import build_parser

    parser = build_parser()
    for value in (["--random-state", "none"], ["--seed", "2"]):
        args = parser.parse_args(["evaluate-clustering", str(cells), "-o", "x.h5ad", "--label-key", "g", *value])
        assert vars(args)["tool:random_state"] == (None if value[1] == "none" else 2)


def test_offline_download_lists_every_file_with_url_and_sha256(tmp_path, monkeypatch, capsys):
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(OSError) as python_error:
        oc.models.download("omnicell-v1", cache_dir=tmp_path / "v1")
    files = [line.strip() for line in str(python_error.value).splitlines()[1:] if line.strip()]
    assert len(files) == 4 and all("sha256" in line and "https://" in line for line in files)
    assert main(["models", "download", "omnicell-v1", "--cache-dir", str(tmp_path / "v1")]) == EXIT_BAD_INPUT
    lines = _stderr(capsys)
    assert lines[0].startswith("omnicell: error: Could not download")  # the error line first
    for line in files:  # then every file, its sha256 and its URL
        assert any(line in shown for shown in lines[1:]), line


def test_a_registry_model_not_downloaded_says_the_command(cells, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(oc.settings, "cache_dir", tmp_path / "empty-cache")
    assert main(["embed", str(cells), "-o", str(tmp_path / "o.h5ad"), "--model", "omnicell-v1"]) == EXIT_BAD_INPUT
    line = _stderr(capsys)[0]
    assert "run `omnicell models download omnicell-v1` once" in line and "never download" in line


def test_models_list_fits_100_columns(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert names == list(oc.models.available().index)
    assert max(len(line) for line in out.splitlines() if "folder:" not in line) <= 100


def test_readme_and_demo_footer_say_the_command_line_never_downloads():
    """They said ``--model omnicell-v1`` is "downloaded once"; the command line never downloads (wrappers)."""
    from pathlib import Path
    from types import SimpleNamespace

    from omnicell.cli._demo import model_line

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert "`omnicell models download omnicell-v1` once" in readme and "never downloads" in readme
    assert "downloaded once (about" not in readme
    footer = model_line(SimpleNamespace(name="omnicell-tiny", n_parameters=1_100_000))
    assert "`omnicell models download omnicell-v1` once" in footer and "downloaded once" not in footer
