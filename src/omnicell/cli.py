"""The ``omnicell`` command: h5ad in, h5ad out, for shells, Galaxy tools and nf-core modules.

Examples
--------
omnicell embed cells.h5ad -o embedded.h5ad --model omnicell-v1
omnicell embed section.h5ad -o out.h5ad --model ./checkpoint --spatial --n-neighbors 9
omnicell models list
omnicell models download omnicell-v1
omnicell models convert ./official_folder ./omnicell_folder
omnicell pretrain recipes/omnicell-tiny.yaml --output runs/tiny
torchrun --nproc-per-node 4 -m omnicell pretrain recipe.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="omnicell", description="OmniCell foundation model for single-cell and spatial data.")
    parser.add_argument("--version", action="version", version=f"omnicell {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    embed = commands.add_parser("embed", help="tokenise and embed the cells of an h5ad file")
    embed.add_argument("input", type=Path, help="input .h5ad (never modified)")
    embed.add_argument("-o", "--output", type=Path, required=True, help="output .h5ad (written atomically)")
    embed.add_argument("--model", default=None, help="registry name or checkpoint folder (default: oc.settings.default_model)")
    embed.add_argument("--genes", type=Path, default=None, help="file with one gene id per line: the ordered gene list")
    embed.add_argument("--n-genes", type=int, default=2000, help="genes per cell (highly variable genes when --genes is not given)")
    embed.add_argument("--strategy", choices=["hvg", "expressed"], default="hvg",
                       help="hvg: one gene list for all cells (released code); expressed: per cell, expressed genes first (paper)")
    embed.add_argument("--layer", default=None, help="layer with expression values (default: X)")
    embed.add_argument("--use-raw", action="store_true", help="read adata.raw instead of X")
    embed.add_argument("--gene-key", default=None, help="var column with gene ids or symbols (default: var names)")
    embed.add_argument("--species", choices=["auto", "human", "mouse"], default="auto", help="species of the gene names")
    embed.add_argument("--spatial", action="store_true", help="spatial mode: each cell read with its neighbours")
    embed.add_argument("--n-neighbors", type=int, default=9, help="neighbours per cell in spatial mode")
    embed.add_argument("--spatial-key", default="spatial", help="obsm key of the coordinates")
    embed.add_argument("--neighbors-key", default=None, help="obsp/uns key of a squidpy spatial graph to take neighbours from")
    embed.add_argument("--library-key", default=None, help="obs column naming tissue sections (no neighbours across)")
    embed.add_argument("--coord-scale", type=float, default=1.0, help="factor applied to coordinates for the model")
    embed.add_argument("--batch-size", type=int, default=None, help="cells per forward pass")
    embed.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    embed.add_argument("--projection", default="0.9", help="spectral energy share to keep, or 'none'")
    embed.add_argument("--key-added", default="X_omnicell", help="obsm key of the embedding")
    embed.add_argument("--store-window", action="store_true", help="spatial mode: keep every window's embeddings")
    embed.add_argument("--shard", default=None, metavar="I/N",
                       help="embed only the I-th (from 0) of N contiguous shares of the cells; gather with omnicell merge")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")

    merge = commands.add_parser("merge", help="gather the shards of `omnicell embed --shard I/N` into one h5ad")
    merge.add_argument("shards", type=Path, nargs="+", help="all N shard files, in any order")
    merge.add_argument("-o", "--output", type=Path, required=True, help="output .h5ad (written atomically)")
    merge.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = commands.add_parser("demo", help="the main job end to end on pbmc68k_reduced (ships with scanpy), offline")
    demo.add_argument("-o", "--output", type=Path, default=Path("omnicell_demo"), help="folder for the figure, table and h5ad")
    demo.add_argument("--model", default=None, help="registry name or checkpoint folder (default: oc.settings.default_model)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    models = commands.add_parser("models", help="list, download or convert checkpoints")
    actions = models.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="registered checkpoints and whether they are cached")
    download = actions.add_parser("download", help="fetch a registered checkpoint into the cache")
    download.add_argument("name")
    download.add_argument("--cache-dir", type=Path, default=None)
    convert = actions.add_parser("convert", help="write a checkpoint in omnicell's format")
    convert.add_argument("source", help="registry name or checkpoint folder")
    convert.add_argument("destination", type=Path)
    convert.add_argument("--overwrite", action="store_true")

    pretrain = commands.add_parser(
        "pretrain", help="train a model from a recipe (YAML or TOML); also under torchrun -m omnicell pretrain"
    )
    pretrain.add_argument("recipe", type=Path, help="recipe file (.yaml, .yml or .toml)")
    pretrain.add_argument("-o", "--output", type=Path, default=None, help="output folder (default: the recipe's)")
    pretrain.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                          help="continue from the newest checkpoint in the output folder, or from CHECKPOINT")
    pretrain.add_argument("--max-steps", type=int, default=None, help="stop after this many steps in all (checkpointed)")
    pretrain.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (torch.set_num_threads)")
    pretrain.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _read_gene_list(path: Path) -> list[str]:
    genes = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    genes = [gene for gene in genes if gene and not gene.startswith("#")]
    if not genes:
        raise ValueError(f"{path} lists no genes (expected one gene id per line).")
    return genes


def _write_atomically(adata, output: Path) -> None:
    """Write to a hidden temporary file beside ``output`` and rename it (removed on error or SIGTERM/SIGINT)."""
    from ._io import atomic_output

    with atomic_output(output) as temporary:
        adata.write_h5ad(temporary)


def _embed(args: argparse.Namespace) -> None:
    import anndata as ad

    from . import pp, settings, tl

    if not args.input.exists():
        raise FileNotFoundError(f"input file {args.input} does not exist")
    if args.output.resolve() == args.input.resolve():
        raise ValueError("the output must differ from the input (the input is never modified)")
    projection = None if args.projection.lower() == "none" else float(args.projection)
    genes = _read_gene_list(args.genes) if args.genes else None
    if args.quiet:
        settings.progress_bar = False
    tokenize = dict(
        genes=genes,
        n_genes=args.n_genes,
        strategy=args.strategy,
        layer=args.layer,
        use_raw=args.use_raw,
        gene_key=args.gene_key,
        species=args.species,
        spatial=args.spatial,
        n_neighbors=args.n_neighbors,
        spatial_key=args.spatial_key,
        neighbors_key=args.neighbors_key,
        library_key=args.library_key,
        coord_scale=args.coord_scale,
    )
    if args.shard is not None:
        from ._shards import embed_shard, parse_shard

        index, count = parse_shard(args.shard)
        adata = embed_shard(args.input, index=index, count=count, model=args.model, tokenize=tokenize,
                            batch_size=args.batch_size, device=args.device, projection=projection,
                            key_added=args.key_added, store_window=args.store_window)  # fmt: skip
        _write_atomically(adata, args.output)
        print(f"wrote {args.output} (shard {index}/{count}: {adata.n_obs} cells)")
        return
    adata = ad.read_h5ad(args.input)
    pp.tokenize(adata, args.model, **tokenize)
    tl.embed_cells(
        adata,
        args.model,
        batch_size=args.batch_size,
        device=args.device,
        projection=projection,
        key_added=args.key_added,
        store_window=args.store_window,
    )
    _write_atomically(adata, args.output)
    print(f"wrote {args.output} ({adata.n_obs} cells, obsm[{args.key_added!r}] with {adata.obsm[args.key_added].shape[1]} dimensions)")


def _merge(args: argparse.Namespace) -> None:
    from ._shards import merge_shards

    if args.output.resolve() in {path.resolve() for path in args.shards}:
        raise ValueError("the output must differ from the shard files (they are never modified)")
    adata = merge_shards(args.shards)
    _write_atomically(adata, args.output)
    print(f"wrote {args.output} ({adata.n_obs} cells from {len(args.shards)} shards)")


def _models(args: argparse.Namespace) -> None:
    from . import models

    if args.action == "list":
        import pandas as pd

        with pd.option_context("display.max_colwidth", 80, "display.width", 200):
            print(models.available().to_string())
    elif args.action == "download":
        print(models.download(args.name, cache_dir=args.cache_dir))
    else:
        print(models.convert(args.source, args.destination, overwrite=args.overwrite))


def _demo(args: argparse.Namespace) -> None:
    import pandas as pd

    from . import settings
    from ._demo import run_demo

    if args.quiet:
        settings.progress_bar = False
    summary = run_demo(args.output, model=args.model)
    with pd.option_context("display.precision", 3):
        print("Leiden clustering of pbmc68k_reduced against its cell-type labels (best resolution of 0.1..1.0):")
        print(summary.to_string())
    print(f"wrote {args.output / 'umap.png'}, {args.output / 'clustering.csv'} and {args.output / 'pbmc68k_omnicell.h5ad'}")


def _pretrain(args: argparse.Namespace) -> None:
    from . import settings
    from .train import pretrain

    if args.quiet:
        settings.progress_bar = False
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    model = pretrain(args.recipe, output=args.output, resume=args.resume, max_steps=args.max_steps)
    if int(os.environ.get("RANK", "0")) == 0:  # one line under torchrun
        print(
            f"trained {model.name}: {model.n_parameters:,} parameters, {len(model.vocab.genes):,} genes; output in {model.source}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success, 1 on bad input)."""
    args = _parser().parse_args(argv)
    try:
        {"embed": _embed, "merge": _merge, "demo": _demo, "models": _models, "pretrain": _pretrain}[args.command](args)
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError, ArithmeticError) as error:
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        print(f"omnicell: error: {message.splitlines()[0] if message else type(error).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
