"""The import graph of src/omnicell keeps the layers of docs/architecture.md, for every module.

Two rules, checked on every module (lazy, function-level imports included), so they also hold for code
not yet written:

- **Layers point downwards.** Each top-level package has a floor (:data:`FLOORS`); a module imports
  only from its own package or from packages on a lower floor.
- **No reaching into another package's private module.** ``omnicell.tl._annotate`` may be imported
  only from inside ``omnicell.tl``; what two packages need moves down (into ``_engine`` or
  ``_core``) or is exported by the package's ``__init__``. The two private packages are imported
  by their modules' public names (``omnicell._core.checks``), never their private ones.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "omnicell"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

#: The floor of every top-level name under ``omnicell``: lower floors never import higher ones, and two
#: packages on the same floor never import each other.
FLOORS: dict[str, int] = {
    "_version": 0,
    "_core": 1,  # keys, settings, logging, progress, provenance, checks, AnnData access: used by all
    "nn": 2,  # the PyTorch network: tensors only
    "data": 3,  # AnnData -> token batches
    "datasets": 3,  # example data sets (pooch)
    "models": 4,  # the registry of named models, loading, device choice
    "_engine": 5,  # running the model over cells: tokenise, plan, batches, embed, split the work
    "train": 6,  # pretraining and fine-tuning loops
    "pp": 7,
    "tl": 7,
    "pl": 7,
    "get": 7,
    "cli": 8,  # the command line and its back ends
    "__main__": 9,
    "": 9,  # omnicell/__init__.py: the public face
}

#: The private modules the package root may hold: nothing loose beside the packages.
ROOT_PRIVATE = {"_version", "_core", "_engine", "__main__", "__init__"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, *, is_package: bool) -> set[str]:
    """Absolute names of the omnicell modules (or module.name) that ``source`` imports, lazy imports included."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # `from omnicell import tl` / `from omnicell.tl import _x` name submodules too
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "omnicell" or name.startswith("omnicell.")}


def _top(name: str) -> str:
    """The top-level package or module under omnicell; '' for the root package and its attributes (``oc.settings``)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOORS else ""


def violations(module: str, imported: set[str]) -> list[str]:
    """Why each import of ``module`` breaks a rule (empty when it keeps both)."""
    found = []
    home = _top(module)
    for name in sorted(imported):
        top = _top(name)
        if name == "omnicell" or top == home:
            continue
        if FLOORS[top] >= FLOORS[home]:
            found.append(f"{name}: {top!r} (floor {FLOORS[top]}) is not below {home or 'omnicell'!r} ({FLOORS[home]})")
        private = [part for part in name.split(".")[2:] if part.startswith("_") and not part.startswith("__")]
        if private:
            found.append(f"{name}: private module {private[0]!r} of another package")
    return found


GRAPH = {
    _module_name(path): imports_of(
        path.read_text(encoding="utf-8"), _module_name(path), is_package=path.name == "__init__.py"
    )
    for path in sorted(PACKAGE.rglob("*.py"))
}


def test_the_graph_covers_every_package():
    tops = {module.split(".")[1] if "." in module else "" for module in GRAPH}
    assert tops == set(FLOORS), f"packages without a floor or floors without a package: {tops ^ set(FLOORS)}"
    assert "omnicell._engine.plan" in GRAPH["omnicell._engine.embed"]
    assert "omnicell._engine.embed" in GRAPH["omnicell.tl._embed_cells"]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down_and_stay_out_of_private_modules(module):
    assert not violations(module, GRAPH[module])


def test_the_root_holds_no_loose_private_module():
    loose = {path.stem for path in PACKAGE.iterdir() if path.name.startswith("_") and path.suffix in (".py", "")}
    loose |= {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name.startswith("_")}
    assert loose - {"__pycache__"} <= ROOT_PRIVATE


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("omnicell.data._hvg", "from omnicell.tl import embed_cells", "not below"),  # upward
        ("omnicell._core.checks", "def f():\n    from omnicell.models import load", "not below"),  # lazy, upward
        ("omnicell.tl._x", "from omnicell.pp import map_genes", "not below"),  # sideways on one floor
        ("omnicell.cli._run", "from omnicell.tl._annotate import _classes", "private module '_annotate'"),
        ("omnicell.tl._x", "from omnicell._engine import _hidden", "private module '_hidden'"),
        ("omnicell.train._x", "import omnicell.get", "not below"),
    ],
)
def test_planted_violations_are_caught(module, source, expected):
    found = violations(module, imports_of(source, module, is_package=False))
    assert any(expected in reason for reason in found), found


def test_allowed_imports_pass():
    source = (
        "from omnicell._core import keys\nfrom omnicell.data import TokenBatch\nfrom omnicell.tl._annotate import x"
    )
    assert violations("omnicell.tl._y", imports_of(source, "omnicell.tl._y", is_package=False)) == []


def test_a_planted_upward_import_fails_this_test(tmp_path):
    """Copy the package, plant one upward import and run this module on the copy: it must fail."""
    copy = tmp_path / "src" / "omnicell"
    copy.parent.mkdir()
    subprocess.run(["cp", "-r", str(PACKAGE), str(copy)], check=True)
    target = copy / "data" / "_neighbors.py"
    target.write_text(
        target.read_text(encoding="utf-8") + "\n\ndef _planted():\n    from omnicell.tl import embed_cells\n"
    )
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_layering.py").write_text(Path(__file__).read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(tests / "test_layering.py"), "-k", "omnicell.data._neighbors"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 1, textwrap.shorten(result.stdout, 2000)
    assert "omnicell.tl: 'tl' (floor 7) is not below 'data' (3)" in result.stdout


def test_the_architecture_page_draws_these_floors():
    """docs/architecture.md draws each package on the floor FLOORS gives it (``7  pp/ tl/ pl/ get/ ...``)."""
    drawing = ARCHITECTURE.read_text(encoding="utf-8").split("```")[1]
    drawn = {}
    for line in drawing.splitlines():
        match = re.match(r"^(\d+)\s+(.*)", line)
        if match:
            for name in re.findall(r"(?:^|\s)(_?[a-z_]+)/", match.group(2)):
                drawn[name] = int(match.group(1))
    expected = {name: floor for name, floor in FLOORS.items() if name not in ("", "__main__", "_version")}
    assert drawn == expected
