"""Every command's help, walked option by option: written for a shell user, and every example in it parses.

A new tool or keyword gets its help generated from its docstring (:mod:`omnicell.cli._help`); these rules
keep what a shell user cannot use out of it.
"""

from __future__ import annotations

import argparse
import inspect
import re
import shlex
import subprocess
import sys

import pytest

from omnicell.cli import build_parser
from omnicell.cli._commands import FIGURES, TOOLS, embed_functions
from omnicell.cli._parser import commands_of

#: Names in CamelCase that are not Python classes: products, algorithms, colour maps.
ALLOWED_CAMEL = ("OmniCell", "PyTorch", "TileDB", "PageRank", "KMeans", "AdamW", "NaN", r"RdBu_r\b", "YlGnBu")

#: What a Python user's docstring leaves in a shell user's help.
ARTEFACTS = {
    "nested quotes": re.compile(r"'\"\w|\w\"'|''\w"),
    "Python constant": re.compile(r"\b(None|True|False)\b"),
    "keyword syntax": re.compile(r"(?<![-=\w])[a-z_][a-z0-9_]*=(?!=)"),
    "Python call": re.compile(r"\b(oc|omnicell|sc|sq|np|pd)\.[\w.]+\(|\bmin\(|\bmax\("),
    "Python object": re.compile(r"\b(sc|sq|scanpy|squidpy)\.(pp|tl|pl|get|gr)\.\w|\badata\b|\bsettings\.\w"),
    "Python expression": re.compile(r"\w \+ '|' \+ \w|\bmodel\.\w|\w\['"),
    "warning class": re.compile(r"\w+Warning\b|\w+Error\b"),
    "class name": re.compile(rf"\b(?!{'|'.join(ALLOWED_CAMEL)})[A-Z][a-z]+[A-Z]\w*"),
}


def _leaves(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    children = commands_of(parser)
    if not children:
        yield words, parser
    for name, child in children.items():
        yield from _leaves(child, (*words, name))


PARSER = build_parser()
LEAVES = dict(_leaves(PARSER))


def _shown(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings and action.help is not argparse.SUPPRESS]


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {string for action in _shown(parser) for string in action.option_strings}


def _examples(help_text: str) -> list[list[str]]:
    after = help_text.split("examples:\n", 1)[1] if "examples:\n" in help_text else ""
    return [shlex.split(line)[1:] for line in after.splitlines() if line.strip().startswith("omnicell ")]


def _minimal_argv(words: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """The command with its required arguments, from its first example."""
    return _examples(parser.format_help())[0]


@pytest.mark.parametrize("words", list(LEAVES), ids=" ".join)
def test_help_has_examples_and_each_parses(words):
    parser = LEAVES[words]
    examples = _examples(parser.format_help())
    assert examples, f"omnicell {' '.join(words)} --help shows no example"
    for argv in examples:
        assert argv[: len(words)] == list(words), argv
        PARSER.parse_args(argv)  # a usage error exits (SystemExit), failing the test


@pytest.mark.parametrize("words", list(LEAVES), ids=" ".join)
def test_example_values_in_option_help_parse(words):
    """``--bio-conservation``'s help shows a JSON value: the option's own parser must take it."""
    parser = LEAVES[words]
    base = _minimal_argv(words, parser)
    for action in _shown(parser):
        for quoted in re.findall(r"e\.g\. ('[^']+')", str(action.help)):
            value = shlex.split(quoted)[0]
            args = PARSER.parse_args([*base, action.option_strings[-1], value])
            assert getattr(args, action.dest) not in (None, argparse.SUPPRESS), (action.option_strings, value)


def test_the_json_example_of_bio_conservation_is_shown_and_parses():
    action = next(a for a in _shown(LEAVES[("benchmark",)]) if "--bio-conservation" in a.option_strings)
    assert re.search(r"e\.g\. '\{", action.help), action.help
    example = _examples(LEAVES[("benchmark",)].format_help())[0]
    args = PARSER.parse_args([*example, "--bio-conservation", '{"nmi_ari_cluster_labels_leiden": true}'])
    assert vars(args)["tool:bio_conservation"] == {"nmi_ari_cluster_labels_leiden": True}


@pytest.mark.parametrize("words", list(LEAVES), ids=" ".join)
def test_help_has_no_python_artefacts(words):
    parser = LEAVES[words]
    texts = {"description": parser.description or "", "epilog": parser.epilog or ""}
    texts |= {action.option_strings[-1]: str(action.help) % {} for action in _shown(parser)}
    texts |= {action.dest: str(action.help or "") for action in parser._actions if not action.option_strings}
    found = [
        f"{where}: {kind}: {match.group(0)!r} in {text!r}"
        for where, text in texts.items()
        for kind, pattern in ARTEFACTS.items()
        for match in [pattern.search(text)]
        if match
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("words", list(LEAVES), ids=" ".join)
def test_defaults_are_shown_once(words):
    for action in _shown(LEAVES[words]):
        text = str(action.help).lower()
        assert len(re.findall(r"\bdefault\b", text)) <= 1, f"{action.option_strings[-1]}: {action.help}"


@pytest.mark.parametrize("words", list(LEAVES), ids=" ".join)
def test_none_is_accepted_where_the_help_says_so(words):
    parser = LEAVES[words]
    base = _minimal_argv(words, parser)
    for action in _shown(parser):
        # "none" as a value: starting a clause ("none: ...", "; none uses ...") or offered ("... or none")
        if action.nargs == 0 or not re.search(r"(?:^|[;.(] )none\b|\bor none\b|\{[^}]*none\}", str(action.help)):
            continue
        option = action.option_strings[-1]
        args = PARSER.parse_args([*base, option, "none"])
        assert getattr(args, action.dest) is None, option


def test_one_seed_option_and_one_name_per_concept():
    for words, parser in LEAVES.items():
        shown = _options(parser)
        assert not shown & {"--seed", "--n-epochs", "--learning-rate"}, (words, shown & {"--seed"})
        for action in _shown(parser):  # --n-genes is markers per group wherever it is shown
            if "--n-genes" in action.option_strings:
                assert "marker" in action.help.lower(), (words, action.help)
    markers = next(a for a in _shown(LEAVES[("plot", "markers")]) if "--n-genes" in a.option_strings)
    assert "completed" not in markers.help  # the plot's own help, not marker-genes'
    assert "--random-state" in _options(LEAVES[("embed-genes",)])
    assert "--genes-per-cell" in _options(LEAVES[("embed",)])
    assert {"--epochs", "--lr"} <= _options(LEAVES[("embed-genes",)]) & _options(LEAVES[("annotate",)])


@pytest.mark.parametrize("argv", [
    ["embed-genes", "x.h5ad", "-o", "y.h5ad", "--seed", "3"],
    ["embed-genes", "x.h5ad", "-o", "y.h5ad", "--random-state", "3"],
])  # fmt: skip
def test_seed_is_a_hidden_alias_of_random_state(argv):
    args = PARSER.parse_args(argv)
    assert args.__dict__["tool:random_state"] == 3
    assert (
        PARSER.parse_args(["embed-genes", "x.h5ad", "-o", "y.h5ad", "--random-state", "none"]).__dict__[
            "tool:random_state"
        ]
        is None
    )
    # the former spellings of renamed options still parse (wrappers written before the rename)
    args = PARSER.parse_args(["embed-genes", "x.h5ad", "-o", "y.h5ad", "--n-epochs", "2", "--learning-rate", "0.1"])
    assert (args.__dict__["tool:n_epochs"], args.__dict__["tool:learning_rate"]) == (2, 0.1)
    assert PARSER.parse_args(["embed", "x.h5ad", "-o", "y.h5ad", "--n-genes", "7"]).__dict__["tokenize:n_genes"] == 7


def test_common_options_only_where_the_function_takes_them():
    checked = 0
    for tool in TOOLS:
        takes = set(inspect.signature(tool.function).parameters)
        shown = _options(LEAVES[(tool.name,)])
        for keyword in ("model", "device", "mod"):
            assert (f"--{keyword}" in shown) == (keyword in takes), (tool.name, keyword)
            checked += 1
        # still accepted, hidden: wrappers pass --device/--seed/--threads to every command
        example = _examples(LEAVES[(tool.name,)].format_help())[0]
        PARSER.parse_args([*example, "--device", "cpu", "--seed", "0", "--threads", "1", "--model", "m"])
    assert checked == 3 * len(TOOLS)
    takes = {name for function in embed_functions() for name in inspect.signature(function).parameters}
    assert {"model", "device", "mod"} <= takes and {"--model", "--device", "--mod"} <= _options(LEAVES[("embed",)])
    for figure in FIGURES:
        assert not {"--model", "--device"} & _options(LEAVES[("plot", figure.name)])
    for words in [("merge",), ("models", "list"), ("models", "download"), ("models", "convert")]:
        assert not {"--model", "--device", "--mod", "--threads"} & _options(LEAVES[words]), words


def test_models_options_have_help():
    for words in [("models", "download"), ("models", "convert")]:
        parser = LEAVES[words]
        for action in parser._actions:
            assert action.help, (words, action.dest)


def test_top_level_help_imports_no_torch_scanpy_or_squidpy():
    for argv in (["--help"], ["--version"], ["models", "list"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "omnicell", *argv], capture_output=True,
                              text=True, check=True)  # fmt: skip
        imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
        heavy = [name for name in imported if name.split(".")[0] in ("torch", "scanpy", "squidpy")]
        assert not heavy, (argv, heavy[:5])
        assert len(imported) > 10, done.stderr[-500:]  # the -X importtime lines were read
        # the issue's own check: `python -X importtime -m omnicell --help 2>&1 | grep -E "torch|scanpy|squidpy"`
        assert not re.search("torch|scanpy|squidpy", done.stdout + done.stderr), argv


def test_import_omnicell_is_lazy_and_keeps_its_names():
    code = (
        "import sys, omnicell as oc; names = (sorted(oc.__all__), 'tl' in dir(oc)); "
        "before = {m.split('.')[0] for m in sys.modules}; oc.tl.embed_cells; "
        "print(names, 'torch' in before, 'scanpy' in before, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = ["__version__", "data", "datasets", "get", "models", "nn", "pl", "pp", "settings", "tl"]
    assert done.stdout.split() == [*str((expected, True)).split(), "False", "False", "True"]
