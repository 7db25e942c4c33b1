"""The Workflows page documents every command (generated from the parser) and every exit status."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from omnicell.cli import _errors

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def docs_extension():
    pytest.importorskip("sphinx", reason="sphinx is in the docs extra (pip install 'omnicell[docs]')")
    spec = importlib.util.spec_from_file_location("omnicell_docs", DOCS / "_ext" / "omnicell_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_lists_every_command_with_its_help(docs_extension):
    commands = [" ".join(words) for words in docs_extension.cli_commands()]
    assert {"embed", "merge", "marker-genes", "plot markers", "models download", "fine-tune"} <= set(commands)
    text = "\n".join(docs_extension.cli_reference_rst())
    for command in commands:
        assert f"``omnicell {command}``" in text
        assert f"usage: omnicell {command}" in text
    assert ":func:`omnicell.tl.marker_genes`" in text


def test_workflows_page_is_linked_and_documents_exit_statuses():
    page = (DOCS / "workflows.md").read_text(encoding="utf-8")
    assert "workflows" in (DOCS / "index.md").read_text(encoding="utf-8")
    assert "omnicell-cli-reference" in page and "--shard I/N" in page
    statuses = {int(code) for code in re.findall(r"^\| (\d+) \|", page, flags=re.MULTILINE)}
    constants = {value for name, value in vars(_errors).items() if name.startswith("EXIT_")}
    assert statuses == constants
