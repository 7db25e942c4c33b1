"""Sphinx helpers for omnicell's documentation.

``omnicell-api``
    Autosummary tables built from a module's ``__all__`` at build time, so the API page lists
    every public function without anyone editing it. The directives that write reST (this one,
    ``omnicell-slots`` and ``omnicell-keys``) go in an ``eval-rst`` block in Markdown pages::

        ```{eval-rst}
        .. omnicell-api:: omnicell.pp
        ```

    Options: ``:members:`` (space-separated names instead of ``__all__``), ``:toctree:`` (stub
    folder, default ``generated``), ``:currentmodule:`` (prefix stripped from the table's names,
    default ``omnicell``). The stub pages are generated before the sources are read.

``omnicell-cli-help``
    The ``--help`` text of the command line, produced by ``omnicell.cli.main`` at build time::

        ```{omnicell-cli-help} models download
        ```

``omnicell-cli-reference``
    Every command of the command line (walking the parser): a table of the commands with the
    function each one runs, then a section per command with its ``--help`` (in an ``eval-rst`` block)::

        ```{eval-rst}
        .. omnicell-cli-reference::
        ```

``omnicell-slots``
    A table of the AnnData slots the public functions of some modules write, read from the
    ````adata....```` entries of each function's Returns section::

        .. omnicell-slots:: omnicell.pp omnicell.tl

``omnicell-keys``
    The string constants of a module (``omnicell._core.keys``) with their attribute docstrings.

It also demotes intersphinx's "failed to reach any of the inventories" warning to an info message,
so offline builds (and builds while an upstream site is down) pass with ``-W``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import os
import re
import tempfile
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging as sphinx_logging
from sphinx.util.docutils import SphinxDirective

logger = sphinx_logging.getLogger(__name__)

_KINDS = (("Classes", "class"), ("Functions", "function"), ("Constants and objects", "data"))
_DIRECTIVE_RE = re.compile(
    r"^\s*(?:```+\s*\{omnicell-api\}|\.\.\s+omnicell-api::)\s*(?P<module>\S+)\s*$"
    r"(?P<options>(?:\n\s*:[\w-]+:.*$)*)",
    re.MULTILINE,
)
_SECTION_RE = re.compile(r"^(?P<title>[A-Z][\w ]*)\n-{3,}\n", re.MULTILINE)
_OPTION_RE = re.compile(r"^\s*:(?P<name>[\w-]+):\s*(?P<value>.*?)\s*$", re.MULTILINE)


# --------------------------------------------------------------------------------------------------
# API tables from __all__


def public_names(module_name: str, members: str | None = None) -> list[str]:
    """Fully qualified public names of a module: ``members`` if given, else its ``__all__``."""
    module = importlib.import_module(module_name)
    names = members.split() if members else list(getattr(module, "__all__", []))
    missing = [name for name in names if not hasattr(module, name)]
    if missing:
        raise ValueError(f"{module_name}.__all__ names {missing}, which the module does not define")
    return [f"{module_name}.{name}" for name in names]


def _kind(full_name: str) -> str:
    module_name, _, name = full_name.rpartition(".")
    obj = getattr(importlib.import_module(module_name), name)
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "data"


def autosummary_blocks(names: list[str], *, toctree: str, current: str) -> list[str]:
    """The reST lines of one autosummary table per kind of object (classes, functions, constants)."""
    groups = {kind: [n for n in names if _kind(n) == kind] for _, kind in _KINDS}
    several = sum(bool(group) for group in groups.values()) > 1
    prefix = f"{current}." if current else ""
    lines: list[str] = []
    for title, kind in _KINDS:
        if not groups[kind]:
            continue
        if several:
            lines += [f".. rubric:: {title}", ""]
        lines += [".. autosummary::", f"   :toctree: {toctree}", "   :nosignatures:", ""]
        for name in sorted(groups[kind], key=str.lower):
            lines.append(f"   {name.removeprefix(prefix)}")
        lines.append("")
    return lines


def docstring_attributes(full_name: str) -> list[str]:
    """Names listed in the Attributes section of a class's docstring (documented there by napoleon).

    The class template (``_templates/autosummary/class.rst``) documents only the other attributes,
    so that none is described twice.
    """
    module_name, _, name = full_name.rpartition(".")
    doc = inspect.getdoc(getattr(importlib.import_module(module_name), name)) or ""
    sections = list(_SECTION_RE.finditer(doc))
    for index, match in enumerate(sections):
        if match["title"] == "Attributes":
            end = sections[index + 1].start() if index + 1 < len(sections) else len(doc)
            body = doc[match.end() : end].splitlines()
            return [line.split(":")[0].strip() for line in body if line and not line[0].isspace()]
    return []


def class_docstring_attributes(module_names: list[str]) -> dict[str, list[str]]:
    """``{class name: docstring_attributes(class name)}`` for the public classes of some modules."""
    found = {}
    for module_name in module_names:
        for full_name in public_names(module_name):
            if _kind(full_name) == "class":
                found[full_name] = docstring_attributes(full_name)
    return found


class OmnicellApi(SphinxDirective):
    """``omnicell-api MODULE``: autosummary tables of the module's ``__all__``."""

    required_arguments = 1
    has_content = False
    option_spec = {  # noqa: RUF012
        "members": directives.unchanged,
        "toctree": directives.unchanged,
        "currentmodule": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        module_name = self.arguments[0]
        current = self.options.get("currentmodule", "omnicell")
        names = public_names(module_name, self.options.get("members"))
        if not names:
            paragraph = nodes.paragraph()
            paragraph += nodes.emphasis(text=f"{module_name} has no public members yet.")
            return [paragraph]
        lines = [f".. currentmodule:: {current}", ""] if current else []
        lines += autosummary_blocks(names, toctree=self.options.get("toctree", "generated"), current=current)
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), self.content_offset, container)
        return container.children


def generate_api_stubs(app: Sphinx) -> None:
    """Write autosummary stub pages for every ``omnicell-api`` directive in the sources."""
    from sphinx.ext.autosummary.generate import generate_autosummary_docs

    srcdir = Path(app.srcdir)
    by_folder: dict[Path, list[str]] = {}
    for docname in sorted(app.env.found_docs):
        source = Path(app.env.doc2path(docname))
        if not source.is_file():
            continue
        text = source.read_text(encoding="utf-8")
        for match in _DIRECTIVE_RE.finditer(text):
            options = {m["name"]: m["value"] for m in _OPTION_RE.finditer(match["options"] or "")}
            folder = (source.parent / options.get("toctree", "generated")).resolve()
            by_folder.setdefault(folder, []).extend(public_names(match["module"], options.get("members")))
    with tempfile.TemporaryDirectory() as tmp:
        for index, (folder, names) in enumerate(sorted(by_folder.items())):
            listing = Path(tmp, f"api{index}.rst")
            listing.write_text(
                "\n".join([".. autosummary::", "   :toctree: .", "", *(f"   {n}" for n in names), ""]),
                encoding="utf-8",
            )
            generate_autosummary_docs(
                [str(listing)],
                output_dir=folder,
                suffix=".rst",
                app=app,
                imported_members=app.config.autosummary_imported_members,
                overwrite=app.config.autosummary_generate_overwrite,
            )
            # A name dropped from __all__ leaves a stale stub behind ("not in any toctree"): remove it.
            for stale in sorted(set(folder.glob("omnicell.*.rst")) - {folder / f"{n}.rst" for n in names}):
                stale.unlink()
                logger.info("[omnicell-api] removed stale stub %s", stale.name)
            logger.info("[omnicell-api] %d stubs in %s", len(names), folder.relative_to(srcdir))


# --------------------------------------------------------------------------------------------------
# AnnData slots, from the "Writes" part of each function's Returns section

_SLOT_RE = re.compile(r"^``(?P<slot>(?:adata|mdata)\.[^`]+)``\s*$")


def written_slots(function) -> list[tuple[str, str]]:
    """``(slot, description)`` pairs listed under a function's Returns section (numpydoc style)."""
    doc = inspect.getdoc(function) or ""
    sections = list(_SECTION_RE.finditer(doc))
    for index, match in enumerate(sections):
        if match["title"] != "Returns":
            continue
        end = sections[index + 1].start() if index + 1 < len(sections) else len(doc)
        body = doc[match.end() : end].splitlines()
        break
    else:
        return []
    slots: list[tuple[str, list[str]]] = []
    for line in body:
        found = _SLOT_RE.match(line)
        if found:
            slots.append((found["slot"], []))
        elif slots and (line.startswith(" ") or not line.strip()):
            slots[-1][1].append(line.strip())
        elif slots and line.strip():
            break  # unindented prose after the list
    return [(slot, " ".join(part for part in text if part)) for slot, text in slots]


class OmnicellSlots(SphinxDirective):
    """``omnicell-slots MODULE ...``: a table of the AnnData slots each public function writes."""

    required_arguments = 1
    optional_arguments = 10
    has_content = False

    def run(self) -> list[nodes.Node]:
        rows: list[tuple[str, str, str]] = []
        for module_name in self.arguments:
            for full_name in public_names(module_name):
                function = getattr(importlib.import_module(module_name), full_name.rpartition(".")[2])
                if not inspect.isfunction(function):
                    continue
                for slot, text in written_slots(function):
                    rows.append((slot, full_name, text))
        if not rows:
            raise self.error(f"no function of {', '.join(self.arguments)} documents the slots it writes")

        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 30 20 50", ""]
        lines += ["   * - slot", "     - written by", "     - content"]
        for slot, full_name, text in rows:
            lines += [f"   * - ``{slot}``", f"     - :func:`~{full_name}`", f"     - {text}".rstrip()]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), self.content_offset, container)
        return container.children


class OmnicellKeys(SphinxDirective):
    """``omnicell-keys MODULE``: the module's string constants, their values and attribute docstrings."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        from sphinx.pycode import ModuleAnalyzer

        module_name = self.arguments[0]
        module = importlib.import_module(module_name)
        analyzer = ModuleAnalyzer.for_module(module_name)
        docs = {name: " ".join(line.strip() for line in lines if line.strip())
                for (_, name), lines in analyzer.find_attr_docs().items()}  # fmt: skip
        constants = [(n, v) for n, v in vars(module).items() if n.isupper() and isinstance(v, str)]
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 25 25 50", ""]
        lines += ["   * - constant", "     - value", "     - meaning"]
        for name, value in constants:
            lines += [f"   * - ``{name}``", f"     - ``{value!r}``", f"     - {docs.get(name, '')}".rstrip()]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), self.content_offset, container)
        return container.children


# --------------------------------------------------------------------------------------------------
# Command-line help


def cli_help(words: list[str], width: int = 100) -> str:
    """``omnicell WORDS --help`` as printed by the installed package."""
    from omnicell import cli

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)  # argparse wraps to the terminal width
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
            cli.main([*words, "--help"])
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return buffer.getvalue().rstrip()


class OmnicellCliHelp(SphinxDirective):
    """``omnicell-cli-help [SUBCOMMAND ...]``: a literal block with the command's ``--help``."""

    optional_arguments = 10
    has_content = False

    def run(self) -> list[nodes.Node]:
        text = cli_help(list(self.arguments))
        if not text:
            raise self.error(f"`omnicell {' '.join(self.arguments)} --help` printed nothing")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def cli_commands() -> list[list[str]]:
    """The words of every leaf command of the parser (``['embed']``, ``['plot', 'markers']``, ...)."""
    import argparse

    from omnicell.cli import build_parser

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> list[list[str]]:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers:
            return [words]
        found = []
        for name, sub in subparsers[0].choices.items():
            found += walk(sub, [*words, name])
        return found

    return walk(build_parser(), [])


def cli_reference_rst() -> list[str]:
    """ReST for ``omnicell-cli-reference``: a table of the commands, then each command's help."""
    from omnicell.cli._commands import EMBED_FUNCTIONS, FIGURES, TOOLS

    runs = {"embed": " + ".join(f":func:`omnicell.{f.__module__.split('.')[1]}.{f.__name__}`" for f in EMBED_FUNCTIONS)}
    runs.update({tool.name: f":func:`omnicell.tl.{tool.function.__name__}`" for tool in TOOLS})
    runs.update({f"plot {fig.name}": f":func:`omnicell.pl.{fig.function.__name__}`" for fig in FIGURES})
    runs.update({
        "merge": "gathers the shards of ``embed --shard I/N``",
        "models list": ":func:`omnicell.models.available`",
        "models download": ":func:`omnicell.models.download`",
        "models convert": ":func:`omnicell.models.convert`",
        "pretrain": ":func:`omnicell.train.pretrain`",
        "demo": "the quick-start analysis of pbmc68k_reduced, end to end",
    })  # fmt: skip
    commands = cli_commands()
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 30 70", "", "   * - command", "     - runs"]
    for words in commands:
        name = " ".join(words)
        lines += [f"   * - ``omnicell {name}``", f"     - {runs.get(name, '')}".rstrip()]
    lines.append("")
    for words in commands:
        title = f"``omnicell {' '.join(words)}``"
        lines += [title, "~" * len(title), "", ".. code-block:: text", ""]
        lines += [f"   {line}".rstrip() for line in cli_help(words).splitlines()]
        lines.append("")
    return lines


class OmnicellCliReference(SphinxDirective):
    """``omnicell-cli-reference``: every command with its help, generated from the parser."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from sphinx.util.nodes import nested_parse_with_titles

        container = nodes.container()
        source = StringList(cli_reference_rst(), source=self.get_source_info()[0])
        nested_parse_with_titles(self.state, source, container)
        return container.children


# --------------------------------------------------------------------------------------------------
# Intersphinx without network


class _DemoteUnreachableInventories(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "failed to reach any of the inventories" in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "intersphinx (no cross-links to this project): " + str(record.msg)
        return True


def drop_type_docstrings(app, what, name, obj, options, lines) -> None:
    """A constant without a docstring of its own shows its value, not the docstring of its type."""
    if what in ("data", "attribute") and lines and type(obj).__doc__:
        if "\n".join(lines).strip() == inspect.cleandoc(type(obj).__doc__).strip():
            lines.clear()


def prose_returns(app, what, name, obj, options, lines) -> None:
    """Keep a numpydoc Returns section as prose (conf.py: ``napoleon_custom_sections = ["Returns"]``).

    sphinx-autodoc-typehints puts a line ``:`` under the Returns heading (so that napoleon reads
    no return type from it); with Returns rendered as a generic section that line would show.
    """
    for index in range(len(lines) - 2):
        if lines[index].strip() == "Returns" and set(lines[index + 1].strip()) == {"-"} and lines[index + 2] == ":":
            del lines[index + 2]
            return


def setup(app: Sphinx) -> dict[str, object]:
    """Register the directives and event handlers."""
    app.add_directive("omnicell-api", OmnicellApi)
    app.add_directive("omnicell-cli-help", OmnicellCliHelp)
    app.add_directive("omnicell-cli-reference", OmnicellCliReference)
    app.add_directive("omnicell-slots", OmnicellSlots)
    app.add_directive("omnicell-keys", OmnicellKeys)
    app.connect("builder-inited", generate_api_stubs)
    app.connect("autodoc-process-docstring", drop_type_docstrings)
    # after sphinx-autodoc-typehints' own handler (priority 499), before napoleon's (500)
    app.connect("autodoc-process-docstring", prose_returns, priority=499)
    demote = _DemoteUnreachableInventories()
    for name in ("sphinx.sphinx.ext.intersphinx", "sphinx.sphinx.ext.intersphinx._load"):  # Sphinx >= 8.1, older
        logging.getLogger(name).addFilter(demote)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
