"""The README's table of calls says what each needs first: every "run oc.x.y(...) first" error is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import omnicell as oc

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("pp", "tl", "pl", "get")
# an error message telling the user to run another function first (in a plain or an f-string)
PREREQUISITE = re.compile(r"[Rr]un oc\.\w+\.(\w+)\([^\n]{0,60}?first")


def _table() -> list[tuple[str, str]]:
    """(call, needs first) of each row of the README's table of calls."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("| call | needs first | writes |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        call, needs, _ = line.strip("|").split(" | ", 2)
        rows.append((call, needs))
    return rows


def _modules_with_prerequisites() -> list[tuple[str, str, set[str]]]:
    """(subpackage, public function, functions its module's errors say to run first)."""
    found = []
    for sub in SUBPACKAGES:
        public = set(getattr(oc, sub).__all__)
        for path in sorted((ROOT / "src" / "omnicell" / sub).glob("_*.py")):
            text = path.read_text(encoding="utf-8")
            needed = set(PREREQUISITE.findall(text))
            functions = [name for name in re.findall(r"^def (\w+)\(", text, re.MULTILINE) if name in public]
            found += [(sub, function, needed) for function in functions if needed]
    return found


def test_prerequisites_are_found():
    pairs = {(function, name) for _, function, needed in _modules_with_prerequisites() for name in needed}
    assert {("gene_modules", "embed_genes"), ("expert_heatmap", "expert_usage")} <= pairs


@pytest.mark.parametrize(("sub", "function", "needed"), _modules_with_prerequisites(), ids=lambda v: str(v))
def test_readme_says_what_each_call_needs_first(sub, function, needed):
    rows = [needs for call, needs in _table() if re.search(rf"`oc\.{sub}\.{function}\b", call)]
    assert rows, f"oc.{sub}.{function} is not in the README's table"
    missing = [name for name in needed if not any(name in needs for needs in rows)]
    assert not missing, f"README: oc.{sub}.{function} needs {missing} first, its row does not say so"
