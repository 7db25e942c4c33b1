"""The argparse parser of ``omnicell``, built from the command table (:mod:`._commands`).

A command's options are generated from its function, which imports the function (and torch, scanpy ...).
``omnicell --help`` needs only the names and summaries, so :func:`build_parser` with ``lazy=True`` builds
a command's options only when that command is parsed.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

from omnicell.cli._commands import _EMBED_TARGETS, EMBED_EXAMPLES, FIGURES, TOOLS, resolve

__all__ = ["build_parser", "commands_of", "full_build"]

_DESCRIPTION = (
    "OmniCell foundation model for single-cell and spatial data. Every command reads an .h5ad (or an .h5mu "
    "with --mod), never modifies it and writes its output atomically. Models are never downloaded at run "
    "time: fetch a registered one once with `omnicell models download NAME`. Exit status: 0 ok, 1 bad input "
    "or option (one line 'omnicell: error: ...'), 2 usage error, 3 internal error."
)
_EXAMPLES = (
    "demo -o omnicell_demo",
    "embed cells.h5ad -o embedded.h5ad",
    "marker-genes embedded.h5ad -o markers.h5ad --groupby cell_type --table markers.tsv",
    "models download omnicell-v1",
)
_WIDTH = 78


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line first (a wrapper's log shows it), then where the help is."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")
        sys.exit(2)


class _LazyCommands(argparse._SubParsersAction):
    """Subcommands whose options are added only when the command is parsed (or :func:`full_build`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.builders: dict[str, Callable[[argparse.ArgumentParser], None]] = {}

    def add_command(
        self,
        name: str,
        build: Callable[[argparse.ArgumentParser], None],
        *,
        summary: str,
        description: str = "",
        examples: Iterable[str] = (),
        prog: str = "",
    ) -> argparse.ArgumentParser:
        shown = [f"  {prog or self._prog_prefix} {name} {example}".rstrip() for example in examples]
        epilog = "examples:\n" + "\n".join(shown) if shown else None
        parser = self.add_parser(name, help=summary, description=_wrap(description or summary), epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        self.builders[name] = build
        return parser

    def build(self, name: str) -> None:
        build = self.builders.pop(name, None)
        if build is not None:
            build(self.choices[name])

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values and values[0] in self.choices:
            self.build(values[0])
        super().__call__(parser, namespace, values, option_string)


def _wrap(text: str) -> str:
    return "\n".join(textwrap.fill(part, _WIDTH) for part in text.split("\n"))


def _subcommands(parser: argparse.ArgumentParser, dest: str, metavar: str) -> _LazyCommands:
    parser.register("action", "parsers", _LazyCommands)
    return parser.add_subparsers(dest=dest, required=True, metavar=metavar)


def commands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommand parsers of ``parser`` (empty for a leaf)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def full_build(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Build the options of every (sub)command now (the docs and the tests read them all)."""
    for action in parser._actions:
        if isinstance(action, _LazyCommands):
            for name in list(action.builders):
                action.build(name)
            for sub in action.choices.values():
                full_build(sub)
    return parser


def _parameters(functions: Iterable[Callable]) -> set[str]:
    return {name for function in functions for name in inspect.signature(function).parameters}


def _common(group, parser: argparse.ArgumentParser, *, takes: set[str], torch: bool, mod: bool) -> None:
    """The options shared by the commands, shown where they do something.

    Elsewhere they are accepted and hidden (no effect): wrappers written before pass some of them to every
    command (``--device``, ``--seed``, ``--threads``, ``--mod``).
    """
    hidden = argparse.SUPPRESS

    def add(name: str, *, shown: bool, help: str, **spec) -> None:
        if name in parser._option_string_actions:  # e.g. --seed, the alias of a tool's --random-state
            return
        group.add_argument(name, help=help if shown else hidden, **spec)

    model_help = (
        "registry name (fetched once beforehand with `omnicell models download NAME`) or checkpoint folder; "
        "default: the bundled omnicell-tiny, or $OMNICELL_DEFAULT_MODEL. Never downloads."
    )
    device_help = "auto, cpu, cuda, cuda:N or mps: where the model runs (default: auto, CUDA when available)"
    add("--model", shown="model" in takes, help=model_help, default=None, metavar="NAME_OR_FOLDER")
    add("--device", shown="device" in takes, help=device_help, default=None, metavar="DEVICE")
    add("--threads", shown=torch, help="CPU threads for PyTorch (default: all)", type=int, default=None, metavar="N")
    add("--seed", shown=False, help="", type=int, default=None)
    add("--mod", shown=mod, help="modality of an .h5mu input (default: rna); the output is then an .h5mu",
        default=None, metavar="MODALITY")  # fmt: skip
    group.add_argument("--quiet", action="store_true", help="warnings and errors only, no progress")
    group.add_argument("--verbose", action="store_true", help="debug log lines; a traceback with any error")


def _common_group(parser: argparse.ArgumentParser):
    return parser.add_argument_group("common options")


def _io_arguments(
    parser: argparse.ArgumentParser,
    *,
    output: str = "output .h5ad (.h5mu for an .h5mu input)",
    input_help: str = "input .h5ad or .h5mu (never modified)",
    input_type=Path,
) -> None:
    parser.add_argument("input", type=input_type, metavar="INPUT", help=input_help)
    parser.add_argument("-o", "--output", type=Path, required=True, help=output + ", written atomically")


def _data_file_arguments(parser: argparse.ArgumentParser, function) -> None:
    """``--reference FILE``: a keyword of ``function`` hinted ``AnnData``, read from a file by the command."""
    from omnicell.cli._hints import data_file_keywords, takes_index
    from omnicell.cli._options import DATA_FILES, INDEX_FILES, SHARED, option_name

    for name in data_file_keywords(function, SHARED):
        index = takes_index(function, name)
        parser.add_argument(option_name(name), dest=name, type=Path, required=True,
                            metavar="FILE_OR_INDEX" if index else "FILE",
                            help=(INDEX_FILES if index else DATA_FILES)[name])  # fmt: skip


def _build_embed(embed: argparse.ArgumentParser) -> None:
    from omnicell.cli import _run
    from omnicell.cli._options import add_function_options

    common = _common_group(embed)
    # a string: census://... and other URIs must not go through Path
    _io_arguments(
        embed, input_type=str,
        input_help="input .h5ad or .h5mu (never modified), a TileDB-SOMA experiment (folder or URI) or "
        "census://[VERSION/]ORGANISM; .h5ad and SOMA inputs are streamed (also under torchrun)",
    )  # fmt: skip
    soma = embed.add_argument_group("TileDB-SOMA input")
    soma.add_argument("--measurement", default=None, help="measurement to read (default: RNA)")
    soma.add_argument("--x-layer", default=None, help="X layer (default: the measurement's only layer, else raw)")
    soma.add_argument("--obs-filter", default=None, metavar="FILTER",
                      help="SOMA value filter on obs (only those cells), e.g. \"tissue_general == 'blood'\"",
                      )  # fmt: skip
    soma.add_argument("--obs-columns", default=None, metavar="A,B",
                      help="comma-separated obs columns to keep in the output (soma_joinid always)")  # fmt: skip
    embed.add_argument("--shard", default=None, metavar="I/N",
                       help="embed only shard I (from 0) of N contiguous shares of the cells (0/3, 1/3, 2/3); "
                       "gene choice and spatial neighbours still use the whole file")  # fmt: skip
    tokenize, embed_cells = map(resolve, _EMBED_TARGETS)
    add_function_options(
        embed.add_argument_group("tokenisation"), tokenize, skip={}, dest_prefix="tokenize:",
        overrides={"genes": {"type": Path, "metavar": "FILE",
                             "help": "file with one gene id per line (# comments): the ordered gene list; "
                             "default: the most highly variable genes"}},
    )  # fmt: skip
    add_function_options(embed.add_argument_group("embedding"), embed_cells, skip={}, dest_prefix="embed_cells:")
    _common(common, embed, takes=_parameters((tokenize, embed_cells)), torch=True, mod=True)
    embed.set_defaults(run=_run.run_embed)


def _tool_builder(tool) -> Callable[[argparse.ArgumentParser], None]:
    def build(parser: argparse.ArgumentParser) -> None:
        from omnicell.cli import _run
        from omnicell.cli._options import add_function_options

        common = _common_group(parser)
        function = tool.function
        if tool.checkpoint:  # the function returns a model: -o is its checkpoint folder
            _io_arguments(parser, output=f"checkpoint folder for the {tool.checkpoint} model")
        elif tool.saves:  # the function reads INPUT and writes -o itself
            _io_arguments(
                parser, output=f"{tool.saves}: a folder, or an uncompressed tar when it ends in .tar", input_type=str,
                input_help="embedded reference: an .h5ad (never modified; only its obs and obsm are read, obsm in "
                "parts) or a TileDB-SOMA experiment (folder or URI)",
            )  # fmt: skip
        else:
            _io_arguments(parser)
        _data_file_arguments(parser, function)
        if tool.table is not None:
            parser.add_argument("--table", type=Path, default=None, metavar="PATH",
                                help=f"also write a TSV table: {tool.table_help}")  # fmt: skip
        group = parser.add_argument_group(f"{tool.name} options")
        add_function_options(group, function, skip=tool.skip, overrides=tool.overrides, dest_prefix="tool:")
        takes = _parameters([function])
        _common(common, parser, takes=takes, torch=bool(takes & {"model", "device"}), mod="mod" in takes)
        parser.set_defaults(run=_run.run_tool, tool=tool)

    return build


def _figure_builder(figure) -> Callable[[argparse.ArgumentParser], None]:
    def build(parser: argparse.ArgumentParser) -> None:
        from omnicell.cli import _run
        from omnicell.cli._options import add_function_options

        common = _common_group(parser)
        function = figure.function
        _io_arguments(parser, output="figure file (.png, .pdf or .svg)")
        parser.add_argument("--dpi", type=float, default=150, help="resolution of PNG output (default: 150)")
        _data_file_arguments(parser, function)
        add_function_options(parser.add_argument_group(f"plot {figure.name} options"), function,
                             skip=figure.skip, dest_prefix="tool:")  # fmt: skip
        # --mod: the command picks the modality of an .h5mu before drawing
        _common(common, parser, takes=_parameters([function]), torch=False, mod=True)
        parser.set_defaults(run=_run.run_plot, tool=figure)

    return build


def _build_plot(plot: argparse.ArgumentParser) -> None:
    figures = _subcommands(plot, "figure", "FIGURE")
    for figure in FIGURES:
        figures.add_command(figure.name, _figure_builder(figure), summary=figure.summary,
                            description=f"{figure.summary}, drawn into -o (PNG, PDF or SVG by its suffix). "
                            f"Python: oc.pl.{figure.function_name}.",
                            examples=figure.examples, prog="omnicell plot")  # fmt: skip


def _build_merge(merge: argparse.ArgumentParser) -> None:
    from omnicell.cli import _run

    common = _common_group(merge)
    merge.add_argument("shards", type=Path, nargs="+", metavar="SHARD", help="all N shard files, in any order")
    merge.add_argument("-o", "--output", type=Path, required=True, help="output .h5ad, written atomically")
    _common(common, merge, takes=set(), torch=False, mod=False)
    merge.set_defaults(run=_run.run_merge)


def _build_models(models: argparse.ArgumentParser) -> None:
    from omnicell.cli import _run

    actions = _subcommands(models, "action", "ACTION")

    def list_(parser) -> None:
        _common(_common_group(parser), parser, takes=set(), torch=False, mod=False)

    def download(parser) -> None:
        common = _common_group(parser)
        parser.add_argument("name", metavar="NAME", help="registered model (see `omnicell models list`)")
        parser.add_argument("--cache-dir", type=Path, default=None, metavar="FOLDER",
                            help="folder to download into (default: $OMNICELL_CACHE_DIR/NAME, else "
                            "~/.cache/omnicell/NAME)")  # fmt: skip
        _common(common, parser, takes=set(), torch=False, mod=False)

    def convert(parser) -> None:
        common = _common_group(parser)
        parser.add_argument("source", metavar="SOURCE", help="registry name or checkpoint folder (official format)")
        parser.add_argument("destination", type=Path, metavar="DESTINATION", help="new checkpoint folder")
        parser.add_argument("--overwrite", action="store_true", help="replace DESTINATION if it exists")
        _common(common, parser, takes=set(), torch=False, mod=False)

    for name, build, summary, examples in (
        ("list", list_, "registered checkpoints and whether they are downloaded", ("",)),
        ("download", download, "fetch a registered checkpoint into the cache (sha256-checked), once",
         ("omnicell-v1",)),
        ("convert", convert, "write a checkpoint in omnicell's format", ("./official_folder ./omnicell_folder",)),
    ):  # fmt: skip
        actions.add_command(name, build, summary=summary, examples=examples, prog="omnicell models")
    models.set_defaults(run=_run.run_models)


def _build_pretrain(pretrain: argparse.ArgumentParser) -> None:
    from omnicell.cli import _run

    common = _common_group(pretrain)
    pretrain.add_argument("recipe", type=Path, help="recipe file (.yaml, .yml or .toml)")
    pretrain.add_argument("-o", "--output", type=Path, default=None, help="output folder (default: the recipe's)")
    pretrain.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                          help="continue from the newest checkpoint in the output folder or CHECKPOINT")  # fmt: skip
    pretrain.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many steps in all (checkpointed)"
    )
    _common(common, pretrain, takes=set(), torch=True, mod=False)
    pretrain.set_defaults(run=_run.run_pretrain)


def _build_demo(demo: argparse.ArgumentParser) -> None:
    from omnicell.cli import _run

    common = _common_group(demo)
    demo.add_argument("-o", "--output", type=Path, default=Path("omnicell_demo"),
                      help="folder for the figure, table and h5ad (default: omnicell_demo)")  # fmt: skip
    _common(common, demo, takes={"model", "device"}, torch=True, mod=False)
    demo.set_defaults(run=_run.run_demo)


def build_parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """The ``omnicell`` parser (also used to generate the command reference in the docs).

    With ``lazy``, a command's options are built when it is parsed (``omnicell --help`` imports no torch);
    otherwise all of them now.
    """
    from omnicell._version import __version__

    examples = "examples:\n" + "\n".join(f"  omnicell {example}" for example in _EXAMPLES)
    parser = _Parser(prog="omnicell", description=_wrap(_DESCRIPTION), epilog=examples,
                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--version", action="version", version=f"omnicell {__version__}")
    commands = _subcommands(parser, "command", "COMMAND")
    commands.add_command(
        "embed", _build_embed, summary="tokenise and embed the cells (X_omnicell in obsm)",
        description="Tokenise and embed the cells (Python: oc.pp.tokenize, then oc.tl.embed_cells). With "
        "--shard I/N, embed only the I-th of N contiguous shares of the cells (reading the input backed); "
        "gather the shards with `omnicell merge`.", examples=EMBED_EXAMPLES,
    )  # fmt: skip
    commands.add_command("merge", _build_merge, summary="gather the shards of `embed --shard I/N` into one h5ad",
                         examples=("part0.h5ad part1.h5ad -o embedded.h5ad",))  # fmt: skip
    for tool in TOOLS:
        commands.add_command(tool.name, _tool_builder(tool), summary=tool.summary, examples=tool.examples,
                             description=f"{tool.summary}. Python: oc.tl.{tool.function_name}; each option is "
                             "one of its keywords.")  # fmt: skip
    commands.add_command("plot", _build_plot, summary="draw a figure into a PNG, PDF or SVG file (by the -o suffix)",
                         examples=("markers markers.h5ad -o markers.png --groupby cell_type",))  # fmt: skip
    commands.add_command("models", _build_models, summary="list, download or convert checkpoints",
                         examples=("list", "download omnicell-v1"))  # fmt: skip
    commands.add_command(
        "pretrain", _build_pretrain,
        summary="train a model from a recipe (YAML or TOML), on one GPU or several",
        description="Train a model from a recipe (YAML or TOML). On several GPUs, start it with PyTorch's launcher: "
        "torchrun --nproc-per-node 4 -m omnicell pretrain RECIPE.",
        examples=("recipe.yaml -o run1 --max-steps 1000",),
    )  # fmt: skip
    commands.add_command("demo", _build_demo,
                         summary="the main job end to end on the pbmc68k_reduced example data, offline",
                         examples=("-o omnicell_demo",))  # fmt: skip
    return parser if lazy else full_build(parser)
