"""What each command does once its options are parsed."""

from __future__ import annotations

import argparse
import inspect
import os
from pathlib import Path
from typing import Any

from omnicell._core.atomic import atomic_output
from omnicell.cli._files import InputError, check_output, read_data, read_reference, write_data
from omnicell.cli._hints import data_file_keywords, takes_index
from omnicell.cli._options import SHARED

__all__ = ["run_embed", "run_merge", "run_models", "run_plot", "run_pretrain", "run_tool"]

_FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


def _say(text: str) -> None:
    """The one result line on standard output (what was written)."""
    print(text, flush=True)


def _keywords(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """The options given for one function (absent ones keep the function's defaults)."""
    return {key[len(prefix) :]: value for key, value in vars(args).items() if key.startswith(prefix)}


def _apply_common(args: argparse.Namespace) -> None:
    """--device, --threads and the hidden --seed of commands without --random-state, checked before any file is read."""
    from omnicell._core.settings import settings

    if args.device is not None:
        try:
            settings.device = args.device
        except ValueError as error:
            raise InputError(f"--device {args.device}: {error}") from None
    if getattr(args, "seed", None) is not None:
        settings.seed = int(args.seed)
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be a positive number, got {args.threads}.")
        import torch

        torch.set_num_threads(int(args.threads))


def _model(args: argparse.Namespace) -> str | None:
    """The --model value, checked offline: a folder, the bundled model or an already downloaded one."""
    from omnicell import models
    from omnicell._core.settings import settings

    name = args.model if args.model is not None else settings.default_model
    if Path(name).expanduser().exists():
        return str(name)
    listing = models.available()
    if name not in listing.index:
        raise InputError(
            f"--model {name}: no such checkpoint folder or registered model "
            f"(registered: {', '.join(listing.index)}; see `omnicell models list`)."
        )
    if not bool(listing.loc[name, "cached"]):
        raise InputError(
            f"--model {name} is not downloaded yet, and commands never download (a workflow must not fetch at run "
            f"time): run `omnicell models download {name}` once, then --model {name} works offline."
        )
    return str(name)


def _call_keywords(function, args: argparse.Namespace, mod: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` plus the common options the function takes (model, device, mod, data files as reference)."""
    parameters = inspect.signature(function).parameters
    keywords = dict(given)
    if "model" in parameters:
        keywords["model"] = _model(args)
    if "device" in parameters and args.device is not None:
        keywords["device"] = args.device
    if "mod" in parameters and mod is not None:
        keywords["mod"] = mod
    for name in data_file_keywords(function, SHARED):  # --reference FILE (or an index, where the function takes one)
        keywords[name] = read_reference(getattr(args, name), mod=mod, command=args.command,
                                        index=takes_index(function, name))  # fmt: skip
    return keywords


def _modality(data: Any, mod: str | None):
    return data.mod[mod] if mod is not None else data


def _write_table(table, path: Path) -> None:
    import pandas as pd

    table = pd.DataFrame(table)
    with atomic_output(path) as temporary:
        table.to_csv(temporary, sep="\t", index=not isinstance(table.index, pd.RangeIndex))


def run_embed(args: argparse.Namespace) -> None:
    from omnicell import pp, tl
    from omnicell.data import is_soma_uri

    _apply_common(args)
    soma = is_soma_uri(args.input)
    soma_options = {"measurement": args.measurement, "x_layer": args.x_layer, "obs_filter": args.obs_filter,
                    "obs_columns": args.obs_columns}  # fmt: skip
    if not soma:
        given = [f"--{key.replace('_', '-')}" for key, value in soma_options.items() if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} apply to a TileDB-SOMA experiment; {args.input} is not one.")
    args.input = args.input if soma else Path(args.input)
    check_output(args.output, [] if soma else [args.input])
    tokenize = _keywords(args, "tokenize:")
    embed = _keywords(args, "embed_cells:")
    if "genes" in tokenize:
        tokenize["genes"] = _read_gene_list(tokenize["genes"])
    model = _model(args)
    if args.shard is not None and soma:
        raise InputError("--shard reads .h5ad files; split a SOMA input with --obs-filter or run under torchrun.")
    if args.shard is None and (soma or (args.input.suffix == ".h5ad" and args.mod is None)):
        _embed_streaming(args, soma=soma, soma_options=soma_options, model=model, tokenize=tokenize, embed=embed)
        return
    if args.shard is not None:
        from omnicell.cli._shards import embed_shard, parse_shard

        index, count = parse_shard(args.shard)
        if args.input.suffix == ".h5mu" or args.mod is not None:
            raise InputError(
                "--shard reads .h5ad files; write the modality to an .h5ad first (mdata['rna'].write(...))."
            )
        read_data(args.input, mod=None, backed=True)[0].file.close()  # a readable .h5ad, checked up front
        if args.output.suffix != ".h5ad":
            raise InputError(f"-o {args.output}: a shard is written as .h5ad.")
        shard = embed_shard(args.input, index=index, count=count, model=model, tokenize=tokenize,
                            device=args.device, **embed)  # fmt: skip
        write_data(shard, args.output)
        _say(f"wrote {args.output} (shard {index}/{count}: {shard.n_obs} cells)")
        return
    data, mod = read_data(args.input, mod=args.mod)
    extra = {"mod": mod} if mod is not None else {}
    pp.tokenize(data, model, **tokenize, **extra)
    tl.embed_cells(data, model, device=args.device, **embed, **extra)
    write_data(data, args.output)
    key = embed.get("key_added", "X_omnicell")
    adata = _modality(data, mod)
    _say(f"wrote {args.output} ({adata.n_obs} cells, obsm[{key!r}] with {adata.obsm[key].shape[1]} dimensions)")


def _embed_streaming(args, *, soma: bool, soma_options: dict, model, tokenize: dict, embed: dict) -> None:
    """An .h5ad (backed) or SOMA input, streamed to the output; one shard per rank under torchrun."""
    from omnicell.cli._embed_file import embed_to_file

    if soma:
        if args.output.suffix != ".h5ad":
            raise InputError(f"-o {args.output}: the embeddings of a SOMA experiment are written as .h5ad.")
    else:
        read_data(args.input, mod=None, backed=True)[0].file.close()  # a readable .h5ad, checked up front
    columns = soma_options["obs_columns"]
    summary = embed_to_file(
        str(args.input), args.output, model=model, tokenize=tokenize, device=args.device,
        measurement=soma_options["measurement"] or "RNA", x_layer=soma_options["x_layer"],
        obs_filter=soma_options["obs_filter"],
        obs_columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else (), **embed,
    )  # fmt: skip
    if summary["rank"] == 0:  # one line under torchrun
        processes = f" on {summary['world_size']} processes" if summary["world_size"] > 1 else ""
        key = embed.get("key_added", "X_omnicell")
        _say(
            f"wrote {args.output} ({summary['n_obs']} cells, obsm[{key!r}] with "
            f"{summary['n_components']} dimensions{processes})"
        )


def _read_gene_list(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"--genes {path}: cannot read the gene list ({error.strerror or error}).") from None
    genes = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not genes:
        raise InputError(f"--genes {path} lists no genes (expected one gene id per line).")
    return genes


def run_merge(args: argparse.Namespace) -> None:
    from omnicell.cli._shards import merge_shards

    check_output(args.output, list(args.shards), suffixes=(".h5ad",))
    for path in args.shards:
        read_data(path, mod=None, what="shard file", backed=True)[0].file.close()
    merged = merge_shards(args.shards)
    write_data(merged, args.output)
    _say(f"wrote {args.output} ({merged.n_obs} cells from {len(args.shards)} shards)")


def run_tool(args: argparse.Namespace) -> None:
    tool = args.tool
    _apply_common(args)
    if tool.saves:
        _run_saving_tool(args)
        return
    if tool.checkpoint:  # the function returns a model, saved as a checkpoint folder
        if args.output.exists() and not args.output.is_dir():
            raise InputError(f"-o {args.output}: {tool.name} writes a checkpoint folder; this is a file.")
    else:
        check_output(args.output, [args.input])
    table_path = getattr(args, "table", None)
    if table_path is not None and Path(table_path).resolve() in {
        Path(args.input).resolve(),
        Path(args.output).resolve(),
    }:
        raise InputError(f"--table {table_path}: the table must differ from the input and output files.")
    given = _keywords(args, "tool:")
    data, mod = read_data(args.input, mod=args.mod)
    keywords = _call_keywords(tool.function, args, mod, given)
    returned = tool.function(data, **keywords)
    if tool.checkpoint:
        with atomic_output(args.output, directory=True) as folder:
            returned.save(folder, overwrite=True)
        _say(f"wrote {args.output} ({tool.checkpoint} {returned.name}: {returned.n_parameters:,} parameters)")
        return
    adata = _modality(data, mod)
    written = [str(args.output)]
    if table_path is not None:
        _write_table(tool.table(adata, returned, keywords), table_path)
        written.append(str(table_path))
    write_data(data, args.output)
    _say(f"wrote {' and '.join(written)} ({tool.name}, {adata.n_obs} cells)")


def _run_saving_tool(args: argparse.Namespace) -> None:
    """A function that reads INPUT (a path) and saves to -o itself: ``function(input, output, **options)``."""
    from omnicell.data import is_index_folder, is_index_tar, is_soma_uri

    tool = args.tool
    source = args.input
    if not is_soma_uri(source):
        source = Path(source)
        if not source.is_file():
            raise InputError(f"input file {source} does not exist (or is a folder that is not a SOMA experiment).")
        if source.resolve() == Path(args.output).resolve():
            raise InputError(f"-o {args.output}: the output must differ from the input.")
    output = Path(args.output)
    tar = output.suffix == ".tar"
    if output.exists() and not (is_index_tar(output) if tar else is_index_folder(output)):
        raise InputError(
            f"-o {output} exists and is not a {tool.saves}; choose a new path (an existing {tool.saves} is replaced)."
        )
    keywords = _call_keywords(tool.function, args, None, _keywords(args, "tool:"))
    with atomic_output(output, directory=not tar) as temporary:
        if tar:
            temporary.unlink()  # the function writes the tar itself
        returned = tool.function(str(source), temporary, **keywords)
    _say(f"wrote {output} ({tool.saves}: {returned.n_cells} cells, {returned.dim} dimensions, {returned.method})")


def run_plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only, no display
    import matplotlib.pyplot as plt

    figure = args.tool
    _apply_common(args)
    if args.output.suffix.lower() not in _FIGURE_SUFFIXES:
        raise InputError(f"-o {args.output}: the figure file must end in .png, .pdf or .svg.")
    check_output(args.output, [args.input], suffixes=_FIGURE_SUFFIXES + tuple(s.upper() for s in _FIGURE_SUFFIXES))
    data, mod = read_data(args.input, mod=args.mod)
    adata = _modality(data, mod)
    keywords = _call_keywords(figure.function, args, None, _keywords(args, "tool:"))
    plt.close("all")
    returned = figure.function(adata, show=False, **keywords)
    drawn = _figure_of(returned) or plt.gcf()
    with atomic_output(args.output) as temporary:
        drawn.savefig(temporary, dpi=args.dpi, bbox_inches="tight", format=args.output.suffix.lower()[1:])
    plt.close("all")
    _say(f"wrote {args.output} (plot {figure.name})")


def _figure_of(returned: Any):
    if returned is None:
        return None
    if hasattr(returned, "figure") and hasattr(returned.figure, "savefig"):
        return returned.figure
    if hasattr(returned, "savefig"):
        return returned
    values = (
        list(returned.values())
        if isinstance(returned, dict)
        else list(returned)
        if isinstance(returned, (list, tuple))
        else []
    )
    for value in values:
        found = _figure_of(value)
        if found is not None:
            return found
    return None


def run_models(args: argparse.Namespace) -> None:
    from omnicell import models

    if args.action == "list":
        _say(_model_table(models.available()))
    elif args.action == "download":
        try:
            folder = models.download(args.name, cache_dir=args.cache_dir)
        except OSError as error:  # offline: the files to place by hand, each with its URL and sha256
            first, *listing = str(error).splitlines()
            raise InputError(first, details=[line.strip() for line in listing if line.strip()]) from None
        _say(str(folder))
    else:
        _say(str(models.convert(args.source, args.destination, overwrite=args.overwrite)))


def _model_table(listing, width: int = 100) -> str:
    """``models list`` within ``width`` columns: name and state, the description wrapped below, the folder."""
    import textwrap

    lines = []
    for name, row in listing.iterrows():
        state = "downloaded" if bool(row["cached"]) else f"not downloaded: omnicell models download {name}"
        if name == "omnicell-tiny" or "bundled" in str(row["folder"]):
            state = "bundled" if bool(row["cached"]) else state
        lines.append(f"{name}  ({state})")
        lines += textwrap.wrap(str(row["description"]), width, initial_indent="    ", subsequent_indent="    ")
        lines.append(f"    folder: {row['folder']}")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> None:
    import pandas as pd

    from omnicell.cli._demo import run_demo as demo

    _apply_common(args)
    summary = demo(args.output, model=_model(args))
    with pd.option_context("display.precision", 3):
        _say("Leiden clustering of pbmc68k_reduced against its cell-type labels (best resolution of 0.1..1.0),")
        _say("omnicell embedding beside expression PCA (50 components of log1p CP10k):")
        _say(summary.to_string())
    _say(summary.attrs["model"])
    _say(
        f"wrote {args.output / 'umap.png'}, {args.output / 'clustering.csv'} and "
        f"{args.output / 'pbmc68k_omnicell.h5ad'}"
    )


def run_pretrain(args: argparse.Namespace) -> None:
    from omnicell.train import pretrain

    _apply_common(args)
    model = pretrain(args.recipe, output=args.output, resume=args.resume, max_steps=args.max_steps)
    if int(os.environ.get("RANK", "0")) == 0:  # one line under torchrun
        _say(
            f"trained {model.name}: {model.n_parameters:,} parameters, {len(model.vocab.genes):,} genes; "
            f"output in {model.source}"
        )
