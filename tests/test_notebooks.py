"""The tutorials: every analysis of oc.tl and oc.pl appears in a notebook stored with its outputs (kept small).

The docs build (``scripts/build_docs.sh``, run by CI) executes every notebook again and fails if one no longer runs.
"""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path

import pytest

import omnicell as oc

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _calls(notebook: Path) -> set[str]:
    """Dotted names of the functions called in the code cells (IPython shell lines skipped)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    source = "\n".join(
        line
        for cell in cells
        if cell["cell_type"] == "code"
        for line in "".join(cell["source"]).splitlines()
        if not line.lstrip().startswith(("!", "%"))
    )
    names = set()
    for node in ast.walk(ast.parse(source, filename=str(notebook))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            parts, value = [node.func.attr], node.func.value
            while isinstance(value, ast.Attribute):
                parts.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name):
                names.add(".".join([value.id, *reversed(parts)]))
    return names


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("module", ["tl", "pl"])
def test_every_tool_and_plot_is_in_a_notebook(module):
    called = set().union(*(_calls(notebook) for notebook in NOTEBOOKS))
    missing = [name for name in getattr(oc, module).__all__ if f"oc.{module}.{name}" not in called]
    assert not missing, f"oc.{module} functions no tutorial calls: {missing}"


#: A stored notebook and each of its figures stay below these (scripts/execute_notebooks.py shrinks figures).
MAX_NOTEBOOK_BYTES, MAX_FIGURE_BYTES = 300_000, 60_000


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_stored_executed_with_small_outputs_and_names_its_model(notebook):
    """Shown with their results on GitHub and with OMNICELL_DOCS_EXECUTE=off; re-executed by the docs build."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    # run top to bottom in one kernel, as scripts/execute_notebooks.py does
    assert [cell["execution_count"] for cell in code] == list(range(1, len(code) + 1))
    outputs = [output for cell in code for output in cell["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert not [o for o in outputs if o["output_type"] == "stream" and o["name"] == "stderr"]  # progress, notices
    figures = [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    assert figures, "every tutorial shows at least one figure"
    assert max(len(figure) for figure in figures) <= MAX_FIGURE_BYTES
    assert notebook.stat().st_size <= MAX_NOTEBOOK_BYTES
    text = "".join("".join(cell["source"]) for cell in cells)
    assert 'oc.models.available().loc["omnicell-v1", "cached"]' in text  # the guarded switch to the released model
    assert "**not** the released model's" in text  # figures are the bundled model's, and say so
