"""The import graph of src/omnicell keeps the layers of ARCHITECTURE.md (imports point downwards)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "omnicell"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the omnicell modules ``path`` imports, lazy (function-level) imports included."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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
            # `from . import tl` / `from .tl import _x` name submodules too
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "omnicell" or name.startswith("omnicell.")}


GRAPH = {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def _private_tl(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 3 and parts[1] == "tl" and parts[2].startswith("_")


def test_the_graph_was_built():
    assert "omnicell.tl._embed_cells" in GRAPH and "omnicell._loader" in GRAPH
    assert "omnicell._loader" in GRAPH["omnicell.tl._tokenized"]
    assert any(_private_tl(name) for name in GRAPH["omnicell.tl"])  # the subpackage re-exports its tools


@pytest.mark.parametrize("layer", ["train", "get", "pl"])
def test_no_private_tl_import_from(layer):
    offenders = {
        module: sorted(name for name in imported if _private_tl(name))
        for module, imported in GRAPH.items()
        if module.split(".")[1:2] == [layer]
    }
    assert not {m: names for m, names in offenders.items() if names}


@pytest.mark.parametrize("layer", ["data", "model"])
def test_lower_layers_import_no_user_facing_layer(layer):
    forbidden = ("tl", "pp", "pl", "get", "cli", "train", "models", "_loader")
    offenders = {
        module: sorted(name for name in imported if name.split(".")[1:2] and name.split(".")[1] in forbidden)
        for module, imported in GRAPH.items()
        if module.split(".")[1:2] == [layer]
    }
    assert not {m: names for m, names in offenders.items() if names}


def test_the_loader_imports_no_user_facing_layer():
    for module in ("omnicell._loader", "omnicell._tokenization", "omnicell._anndata_io", "omnicell._groups"):
        assert not {name for name in GRAPH[module] if name.split(".")[1:2] in (["tl"], ["pp"], ["pl"], ["get"])}, module
