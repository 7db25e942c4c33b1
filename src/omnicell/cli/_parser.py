"""The argparse parser of ``omnicell``, built from the command table (:mod:`._commands`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from omnicell.cli import _run
from omnicell.cli._commands import EMBED_FUNCTIONS, FIGURES, TOOLS
from omnicell.cli._hints import data_file_keywords
from omnicell.cli._options import DATA_FILES, SHARED, add_function_options, option_name

__all__ = ["build_parser"]

_DESCRIPTION = (
    "OmniCell foundation model for single-cell and spatial data. Every command reads an .h5ad (or an .h5mu with "
    "--mod), never modifies it and writes its output atomically. Exit status: 0 ok, 1 bad input or option "
    "(one line 'omnicell: error: ...'), 2 usage error, 3 internal error."
)


def _common_options(*, data: bool) -> argparse.ArgumentParser:
    """The options every command takes (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--model",
        default=None,
        metavar="NAME_OR_FOLDER",
        help="registry name (downloaded beforehand with `omnicell models download`) or checkpoint "
        "folder; default: the bundled omnicell-tiny or $OMNICELL_DEFAULT_MODEL. Never downloads.",
    )
    group.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="auto, cpu, cuda, cuda:N or mps: where to run the model (default: auto, CUDA when available)",
    )
    group.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for PyTorch (default: all)")
    group.add_argument("--seed", type=int, default=None, help="random seed of stochastic steps (default: 0)")
    group.add_argument("--quiet", action="store_true", help="warnings and errors only, no progress")
    group.add_argument("--verbose", action="store_true", help="debug log lines; a traceback with any error")
    if data:
        group.add_argument(
            "--mod",
            default=None,
            metavar="MODALITY",
            help="modality of an .h5mu input (default: rna); the output is then an .h5mu",
        )
    return common  # fmt: skip


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
    for name in data_file_keywords(function, SHARED):
        parser.add_argument(option_name(name), dest=name, type=Path, required=True, metavar="FILE",
                            help=DATA_FILES[name])  # fmt: skip


def _add_embed(commands, common) -> None:
    embed = commands.add_parser(
        "embed", parents=[common], help="tokenise and embed the cells (oc.pp.tokenize + oc.tl.embed_cells)",
        description="Run oc.pp.tokenize and oc.tl.embed_cells. With --shard I/N, embed only the I-th of N contiguous "
        "shares of the cells (reading the input backed); gather the shards with `omnicell merge`.",
    )  # fmt: skip
    # a string: census://... and other URIs must not go through Path
    _io_arguments(
        embed, input_type=str,
        input_help="input .h5ad or .h5mu (never modified), a TileDB-SOMA experiment (folder or URI) or "
        "census://[VERSION/]ORGANISM; .h5ad and SOMA inputs are streamed (also under torchrun)",
    )  # fmt: skip
    soma = embed.add_argument_group("TileDB-SOMA input (oc.data.read_soma)")
    soma.add_argument("--measurement", default=None, help="measurement to read (default: RNA)")
    soma.add_argument("--x-layer", default=None, help="X layer (default: the measurement's only layer, else raw)")
    soma.add_argument("--obs-filter", default=None, metavar="FILTER",
                      help="SOMA value_filter on obs (only those cells), as \"tissue_general == 'blood'\"")  # fmt: skip
    soma.add_argument("--obs-columns", default=None, metavar="A,B",
                      help="comma-separated obs columns to keep in the output (soma_joinid always)")  # fmt: skip
    embed.add_argument("--shard", default=None, metavar="I/N",
                       help="embed only shard I (from 0) of N contiguous shares of the cells (0/3, 1/3, 2/3); "
                       "gene choice and spatial neighbours still use the whole file")  # fmt: skip
    tokenize, embed_cells = EMBED_FUNCTIONS
    add_function_options(
        embed.add_argument_group("tokenisation (oc.pp.tokenize)"), tokenize, skip={}, dest_prefix="tokenize:",
        overrides={"genes": {"type": Path, "metavar": "FILE",
                             "help": "file with one gene id per line (# comments): the ordered gene list; "
                             "default: the most highly variable genes"}},
    )  # fmt: skip
    add_function_options(
        embed.add_argument_group("embedding (oc.tl.embed_cells)"), embed_cells, skip={}, dest_prefix="embed_cells:"
    )
    embed.set_defaults(run=_run.run_embed)


def _add_tool(commands, common, tool) -> None:
    parser = commands.add_parser(
        tool.name, parents=[common], help=tool.summary,
        description=f"{tool.summary} (oc.tl.{tool.function.__name__}). Options mirror its keywords.",
    )  # fmt: skip
    if tool.checkpoint:  # the function returns a model: -o is its checkpoint folder
        _io_arguments(parser, output=f"checkpoint folder for the {tool.checkpoint} model")
    else:
        _io_arguments(parser)
    _data_file_arguments(parser, tool.function)
    if tool.table is not None:
        parser.add_argument("--table", type=Path, default=None, metavar="PATH",
                            help=f"also write a TSV table: {tool.table_help}")  # fmt: skip
    group = parser.add_argument_group(f"oc.tl.{tool.function.__name__} options")
    add_function_options(group, tool.function, skip=tool.skip, overrides=tool.overrides, dest_prefix="tool:")
    parser.set_defaults(run=_run.run_tool, tool=tool)


def _add_plot(commands, common) -> None:
    plot = commands.add_parser("plot", help="draw a figure into a PNG, PDF or SVG file (by the -o suffix)")
    figures = plot.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    for figure in FIGURES:
        parser = figures.add_parser(
            figure.name, parents=[common], help=figure.summary,
            description=f"{figure.summary}: oc.pl.{figure.function.__name__} into -o (PNG, PDF or SVG by suffix).",
        )  # fmt: skip
        _io_arguments(parser, output="figure file (.png, .pdf or .svg)")
        parser.add_argument("--dpi", type=float, default=150, help="resolution of PNG output (default: 150)")
        _data_file_arguments(parser, figure.function)
        group = parser.add_argument_group(f"oc.pl.{figure.function.__name__} options")
        add_function_options(group, figure.function, skip=figure.skip, dest_prefix="tool:")
        parser.set_defaults(run=_run.run_plot, tool=figure)


def build_parser() -> argparse.ArgumentParser:
    """The ``omnicell`` parser (also used to generate the command reference in the docs)."""
    from omnicell._version import __version__

    parser = argparse.ArgumentParser(prog="omnicell", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"omnicell {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, common_files = _common_options(data=False), _common_options(data=True)

    _add_embed(commands, common_files)
    merge = commands.add_parser(
        "merge", parents=[common], help="gather the shards of `embed --shard I/N` into one h5ad"
    )
    merge.add_argument("shards", type=Path, nargs="+", metavar="SHARD", help="all N shard files, in any order")
    merge.add_argument("-o", "--output", type=Path, required=True, help="output .h5ad, written atomically")
    merge.set_defaults(run=_run.run_merge)
    for tool in TOOLS:
        _add_tool(commands, common_files, tool)
    _add_plot(commands, common_files)

    models = commands.add_parser("models", help="list, download or convert checkpoints")
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("list", parents=[common], help="registered checkpoints and whether they are cached")
    download = actions.add_parser("download", parents=[common], help="fetch a registered checkpoint into the cache")
    download.add_argument("name")
    download.add_argument("--cache-dir", type=Path, default=None)
    convert = actions.add_parser("convert", parents=[common], help="write a checkpoint in omnicell's format")
    convert.add_argument("source", help="registry name or checkpoint folder")
    convert.add_argument("destination", type=Path)
    convert.add_argument("--overwrite", action="store_true")
    models.set_defaults(run=_run.run_models)

    pretrain = commands.add_parser(
        "pretrain", parents=[common],
        help="train a model from a recipe (YAML or TOML); also under torchrun -m omnicell pretrain",
    )  # fmt: skip
    pretrain.add_argument("recipe", type=Path, help="recipe file (.yaml, .yml or .toml)")
    pretrain.add_argument("-o", "--output", type=Path, default=None, help="output folder (default: the recipe's)")
    pretrain.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                          help="continue from the newest checkpoint in the output folder or CHECKPOINT")  # fmt: skip
    pretrain.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many steps in all (checkpointed)"
    )
    pretrain.set_defaults(run=_run.run_pretrain)

    demo = commands.add_parser(
        "demo", parents=[common], help="the main job end to end on pbmc68k_reduced (ships with scanpy), offline"
    )
    demo.add_argument("-o", "--output", type=Path, default=Path("omnicell_demo"),
                      help="folder for the figure, table and h5ad")  # fmt: skip
    demo.set_defaults(run=_run.run_demo)
    return parser
