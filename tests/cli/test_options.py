"""The command line cannot drift from the API: every keyword of every tool is an option or listed with a reason."""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import typing
from pathlib import Path

import pytest

import omnicell as oc
from omnicell.cli import build_parser
from omnicell.cli._commands import EMBED_FUNCTIONS, FIGURES, TOOLS, Tool, tool_for
from omnicell.cli._hints import HintError, data_file_keywords, takes_index, type_hint, union_members
from omnicell.cli._options import SHARED, add_function_options, docstring_parameters, option_name, option_spec
from omnicell.cli._parser import _tool_builder
from omnicell.models import OmniCellModel


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {string for action in parser._actions for string in action.option_strings}


def _check_covered(function, parser, skip) -> None:
    options = _options(parser)
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) or name == "adata":
            continue
        if name in skip:
            assert skip[name], f"{function.__name__}.{name}: the exclusion needs a reason"
            continue
        if name in SHARED and name not in ("copy", "ax", "show", "save"):
            expected = {
                "model": "--model",
                "device": "--device",
                "mod": "--mod",
                "reference": "--reference",
            }
            assert expected[name] in options, f"{function.__name__}.{name}: no {expected[name]}"
            continue
        if name in SHARED:
            continue
        option = option_name(name, function)
        assert option in options, f"{function.__name__}.{name} has no option {option}"


def test_every_tool_of_oc_tl_has_a_command():
    commands = _subparsers(build_parser())
    for name in oc.tl.__all__:
        command = tool_for(name)
        assert command is not None and command in commands, f"oc.tl.{name} has no command"


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.name)
def test_every_keyword_of_every_tool_has_its_option(tool):
    parser = _subparsers(build_parser())[tool.name]
    _check_covered(tool.function, parser, tool.skip)


def test_embed_has_every_keyword_of_tokenize_and_embed_cells():
    parser = _subparsers(build_parser())["embed"]
    for function in EMBED_FUNCTIONS:
        _check_covered(function, parser, {})
    assert "--shard" in _options(parser)


@pytest.mark.parametrize("figure", FIGURES, ids=lambda figure: figure.name)
def test_every_keyword_of_every_figure_has_its_option(figure):
    plot = _subparsers(_subparsers(build_parser())["plot"])
    _check_covered(figure.function, plot[figure.name], figure.skip)


def test_every_command_accepts_the_common_options():
    """Shown where they do something (tests/cli/test_help.py), accepted everywhere: wrappers pass them."""
    parser = build_parser()
    commands = _subparsers(parser)
    leaves = []
    for name, sub in commands.items():
        if name in ("plot", "models"):
            leaves += list(_subparsers(sub).values())
        else:
            leaves.append(sub)
    for sub in leaves:
        assert {"--device", "--threads", "--seed", "--model", "--quiet", "--verbose"} <= _options(sub), sub.prog


def test_help_texts_come_from_the_docstrings():
    texts = docstring_parameters(oc.tl.marker_genes)
    assert texts["groupby"].startswith("``obs`` column")
    sub = _subparsers(build_parser())["marker-genes"]
    action = next(a for a in sub._actions if "--n-genes" in a.option_strings)
    assert action.help.startswith("markers listed per group") and action.help.endswith("(default: 100)")


def test_option_types_follow_the_annotations():
    assert option_spec(oc.tl.evaluate_clustering, "resolutions")["type"]("0.5,1") == [0.5, 1.0]
    assert option_spec(oc.tl.evaluate_clustering, "select")["choices"] == ["ari+nmi", "ari", "nmi"]
    projection = option_spec(oc.tl.embed_cells, "projection")["type"]
    assert projection("none") is None and projection("0.8") == 0.8
    assert option_spec(oc.tl.gene_modules, "score")["action"] is argparse.BooleanOptionalAction
    bio = option_spec(oc.tl.benchmark, "bio_conservation")["type"]
    assert bio('{"isolated_labels": false}') == {"isolated_labels": False} and bio("true") is True
    # Precision is a Literal alias imported from another module: its choices come from the hint itself
    assert option_spec(oc.tl.embed_cells, "precision")["choices"] == ["auto", "float32", "bfloat16", "float16"]
    vmax = option_spec(oc.pl.proportions, "vmax")["type"]  # float | str | None = "auto"
    assert vmax("auto") == "auto" and vmax("0.5") == 0.5 and vmax("none") is None


def test_options_not_given_keep_the_python_defaults():
    args = build_parser().parse_args(["marker-genes", "in.h5ad", "-o", "out.h5ad", "--groupby", "g", "--n-genes", "7"])
    given = {key.split(":", 1)[1]: value for key, value in vars(args).items() if key.startswith("tool:")}
    assert given == {"groupby": "g", "n_genes": 7}


# A tool written as omnicell's are: postponed annotations, a Literal alias, an Enum and a dataclass from
# another module, AnnData and MuData imported only for type checkers.
_ALIASES = """
import dataclasses
import enum
from typing import Literal

Mode = Literal["fast", "exact"]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Config:
    rate: float = 0.1
"""

_TOOLS = '''
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from oc_cli_test_aliases import Colour, Config, Mode

if TYPE_CHECKING:
    from anndata import AnnData
    from mudata import MuData


def tool(
    adata: AnnData | MuData,
    reference: AnnData,
    *,
    mode: Mode = "fast",
    maybe_mode: Mode | None = "exact",
    colour: Colour = Colour.RED,
    config: Config | None = None,
    scale: float | None = 1.0,
    sizes: Sequence[int] = (1, 2),
    weights: tuple[float, ...] | None = None,
    log: os.PathLike | None = None,
    flag: bool = False,
    count: int = 3,
) -> AnnData:
    """A tool.

    Parameters
    ----------
    mode
        How.
    """


def broken(adata: AnnData, *, level: NoSuchType = 1) -> None:
    """A keyword whose hint names nothing."""


def unhinted(adata: AnnData, *, level=1) -> None:
    """A keyword without a hint."""


def no_form(adata: AnnData, *, callback: Callable[[int], int] | None = None) -> None:
    """A keyword of a type the command line cannot spell."""
'''


@pytest.fixture
def typed(tmp_path, monkeypatch):
    (tmp_path / "oc_cli_test_aliases.py").write_text(_ALIASES, encoding="utf-8")
    (tmp_path / "oc_cli_test_tools.py").write_text(_TOOLS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("oc_cli_test_aliases", "oc_cli_test_tools"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("oc_cli_test_tools")


def _parse(function, *words):
    parser = argparse.ArgumentParser()
    add_function_options(parser, function, skip={})
    return vars(parser.parse_args(list(words)))


def test_a_literal_alias_from_another_module_gives_its_choices(typed):
    spec = option_spec(typed.tool, "mode")
    assert spec["choices"] == ["fast", "exact"] and spec["type"] is str
    assert _parse(typed.tool, "--mode", "exact")["mode"] == "exact"
    with pytest.raises(SystemExit):
        _parse(typed.tool, "--mode", "slow")
    # an optional Literal with a non-None default also takes the word none
    assert _parse(typed.tool, "--maybe-mode", "none")["maybe_mode"] is None
    assert _parse(typed.tool, "--maybe-mode", "fast")["maybe_mode"] == "fast"


def test_an_enum_gives_its_values_as_choices(typed):
    colour = sys.modules["oc_cli_test_aliases"].Colour
    spec = option_spec(typed.tool, "colour")
    assert spec["choices"] == list(colour) and spec["metavar"] == "{red,blue}"
    assert _parse(typed.tool, "--colour", "blue")["colour"] is colour.BLUE
    with pytest.raises(SystemExit):
        _parse(typed.tool, "--colour", "green")


def test_other_hints_give_their_converters(typed):
    assert option_spec(typed.tool, "config")["type"]('{"rate": 0.5}') == {"rate": 0.5}  # a dataclass: JSON
    assert option_spec(typed.tool, "scale")["type"]("none") is None
    assert option_spec(typed.tool, "flag")["action"] is argparse.BooleanOptionalAction
    assert option_spec(typed.tool, "count")["type"] is int
    assert option_spec(typed.tool, "log")["metavar"] == "PATH"
    given = _parse(typed.tool, "--sizes", "1,2", "3", "--weights", "0.5,1.5,2")
    assert given["sizes"] == [1, 2, 3] and given["weights"] == (0.5, 1.5, 2.0)


def test_unresolvable_or_missing_hints_fail_when_the_parser_is_built(typed):
    with pytest.raises(HintError, match=r"NoSuchType.*'level'"):
        add_function_options(argparse.ArgumentParser(), typed.broken, skip={})
    with pytest.raises(HintError, match="'level' has no type hint"):
        add_function_options(argparse.ArgumentParser(), typed.unhinted, skip={})
    with pytest.raises(HintError, match="no command-line form"):
        add_function_options(argparse.ArgumentParser(), typed.no_form, skip={})
    # a keyword the command does not offer is never resolved
    assert add_function_options(argparse.ArgumentParser(), typed.broken, skip={"level": "not offered"}) == []


def test_a_keyword_hinted_anndata_is_a_data_file(typed):
    assert data_file_keywords(typed.tool, SHARED) == ["reference"]
    parser = argparse.ArgumentParser()
    _tool_builder(Tool("typed", typed.tool, "a tool"))(parser)
    args = parser.parse_args(["in.h5ad", "-o", "out.h5ad", "--reference", "ref.h5ad"])
    assert args.reference == Path("ref.h5ad") and "--mode" in _options(parser)
    with_reference = {tool.name for tool in TOOLS if "--reference" in _options(_subparsers(build_parser())[tool.name])}
    assert with_reference == {"annotate", "deconvolve", "map"}
    # map_query also takes a path (an index folder or .tar), which --reference then passes on
    assert [takes_index(tool.function, "reference") for tool in TOOLS if tool.name in with_reference] == [
        False,
        True,
        False,
    ]


def test_a_checkpoint_output_follows_the_returned_model():
    for tool in TOOLS:
        returns_model = type_hint(tool.function, "return") is OmniCellModel
        assert bool(tool.checkpoint) == returns_model, tool.name
    action = next(a for a in _subparsers(build_parser())["fine-tune"]._actions if "-o" in a.option_strings)
    assert action.help == "checkpoint folder for the fine-tuned model, written atomically"


def _generated_options():
    """(function, keyword, argparse action) of every generated option of every command."""
    commands = _subparsers(build_parser())
    parsers = [(commands[tool.name], {"tool": tool.function}, tool.overrides) for tool in TOOLS]
    plots = _subparsers(commands["plot"])
    parsers += [(plots[figure.name], {"tool": figure.function}, {}) for figure in FIGURES]
    tokenize, embed_cells = EMBED_FUNCTIONS
    parsers.append((commands["embed"], {"tokenize": tokenize, "embed_cells": embed_cells}, {"genes": {}}))
    for parser, functions, overrides in parsers:
        for action in parser._actions:
            prefix, _, name = action.dest.partition(":")
            if prefix in functions and name not in overrides:
                yield functions[prefix], name, action


def test_no_option_is_a_string_unless_its_hint_is():
    checked = 0
    for function, name, action in _generated_options():
        members, _ = union_members(type_hint(function, name))
        converter = getattr(action.type, "__name__", None)
        if action.type is str or converter == "str":
            literal_strings = any(
                typing.get_origin(m) is typing.Literal and all(isinstance(v, str) for v in typing.get_args(m))
                for m in members
            )
            paths = any(isinstance(m, type) and issubclass(m, os.PathLike) for m in members)
            assert str in members or literal_strings or paths, f"{function.__name__}.{name}: str for {members}"
        checked += 1
    assert checked > 150  # every tool's, figure's and embed's options
