"""The command line cannot drift from the API: every keyword of every tool is an option or listed with a reason."""

from __future__ import annotations

import argparse
import inspect

import pytest

import omnicell as oc
from omnicell.cli import build_parser
from omnicell.cli._commands import EMBED_FUNCTIONS, FIGURES, TOOLS, tool_for
from omnicell.cli._options import SHARED, docstring_parameters, option_name, option_spec


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
                "seed": "--seed",
                "mod": "--mod",
                "reference": "--reference",
            }
            assert expected[name] in options, f"{function.__name__}.{name}: no {expected[name]}"
            continue
        if name in SHARED:
            continue
        assert option_name(name) in options, f"{function.__name__}.{name} has no option {option_name(name)}"


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


def test_every_command_takes_the_common_options():
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
    assert action.help.startswith("Genes listed per group") and action.help.endswith("(default: 100)")


def test_option_types_follow_the_annotations():
    signature = inspect.signature(oc.tl.evaluate_clustering).parameters
    assert option_spec(signature["resolutions"])["type"]("0.5,1") == [0.5, 1.0]
    assert option_spec(signature["select"])["choices"] == ["ari+nmi", "ari", "nmi"]
    projection = option_spec(inspect.signature(oc.tl.embed_cells).parameters["projection"])["type"]
    assert projection("none") is None and projection("0.8") == 0.8
    assert (
        option_spec(inspect.signature(oc.tl.gene_modules).parameters["score"])["action"]
        is argparse.BooleanOptionalAction
    )
    bio = option_spec(inspect.signature(oc.tl.benchmark).parameters["bio_conservation"])["type"]
    assert bio('{"isolated_labels": false}') == {"isolated_labels": False} and bio("true") is True


def test_options_not_given_keep_the_python_defaults():
    args = build_parser().parse_args(["marker-genes", "in.h5ad", "-o", "out.h5ad", "--groupby", "g", "--n-genes", "7"])
    given = {key.split(":", 1)[1]: value for key, value in vars(args).items() if key.startswith("tool:")}
    assert given == {"groupby": "g", "n_genes": 7}
