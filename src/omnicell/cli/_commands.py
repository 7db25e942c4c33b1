"""The table of commands: each ``oc.tl`` tool and ``oc.pl`` figure with its command and its table.

The options of a command are generated from its function (see :mod:`._options`), so adding a keyword
to a tool adds its option. Keywords a command cannot offer are in the command's ``skip`` with the
reason (a test checks every keyword of every tool is either an option or listed).

Functions are named, not imported (``"tl.embed_genes"``): the table is read by ``omnicell --help``, which
must not import torch or scanpy; a command's function is imported when that command is parsed.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from omnicell.cli._options import LABELS_OR_ALL

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EMBED_EXAMPLES", "FIGURES", "TOOLS", "Figure", "Tool", "embed_functions", "resolve", "tool_for"]


def resolve(target: str | Callable) -> Callable:
    """The function ``"tl.embed_genes"`` names (``omnicell.tl.embed_genes``); a callable is itself."""
    if callable(target):
        return target
    package, _, name = target.rpartition(".")
    return getattr(importlib.import_module(f"omnicell.{package}"), name)


@dataclasses.dataclass(frozen=True)
class _Command:
    """What every command of the table has: its name, its function (named or given) and a one-line summary."""

    name: str
    #: The function, or its name under omnicell (``"tl.embed_genes"``), imported when the command is parsed.
    target: str | Callable
    summary: str

    @property
    def function(self) -> Callable:
        return resolve(self.target)

    @property
    def function_name(self) -> str:
        return _target_name(self.target)


@dataclasses.dataclass(frozen=True)
class Tool(_Command):
    """A command that runs one ``oc.tl`` function on the input and writes the result."""

    #: Usage examples for the help: the command's arguments after ``omnicell NAME`` (each must parse).
    examples: tuple[str, ...] = ()
    skip: Mapping[str, str] = dataclasses.field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    #: ``table(adata, returned, keywords) -> DataFrame`` written by ``--table PATH``.
    table: Callable[[Any, Any, dict], pd.DataFrame] | None = None
    table_help: str = ""
    #: ``oc.tl`` functions whose work this command also covers (e.g. a table of another function).
    covers: tuple[str, ...] = ()
    #: Set for a function that returns a model: -o is then its checkpoint folder (``model.save``), and this
    #: word names the model in the help and the result line ("fine-tuned"); empty: -o is the data.
    checkpoint: str = ""
    #: Set for a function that reads INPUT itself, given as a path (an .h5ad read in parts, or a SOMA
    #: experiment), and saves its result to -o, its second argument: this names what -o holds.
    saves: str = ""


@dataclasses.dataclass(frozen=True)
class Figure(_Command):
    """A ``plot FIGURE`` subcommand drawing one ``oc.pl`` function into the -o file."""

    examples: tuple[str, ...] = ()
    skip: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _uns_table(function: str, field: str) -> Callable[[Any, Any, dict], pd.DataFrame]:
    def table(adata, returned, keywords) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(adata.uns["omnicell"][function][field])

    return table


def _marker_table(adata, returned, keywords) -> pd.DataFrame:
    import scanpy as sc

    return sc.get.rank_genes_groups_df(adata, None, key=keywords.get("key_added", "rank_genes_omnicell"))


def _perturbation_table(default_key: str) -> Callable[[Any, Any, dict], pd.DataFrame]:
    def table(adata, returned, keywords) -> pd.DataFrame:
        from omnicell import get

        return get.perturbation_df(adata, key=keywords.get("key_added", default_key))

    return table


def _proportions_table(adata, returned, keywords) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(adata.obsm[keywords.get("key_added", "omnicell_proportions")])


def _mapping_table(adata, returned, keywords) -> pd.DataFrame:
    key = keywords.get("key_added", "omnicell")
    return adata.obs[[f"{key}_{name}" for name in ("label", "confidence", "label_set", "unknown", "novelty_pval")]]


def _returned_table(adata, returned, keywords) -> pd.DataFrame:
    return returned


def _importance_roc_table(adata, returned, keywords) -> pd.DataFrame:
    if keywords.get("groupby") is None:
        raise ValueError("--table with gene-importance needs --groupby (the table is the per-group ROC of importance).")
    from omnicell import tl

    return tl.importance_roc(adata, keywords["groupby"], key=keywords.get("key_added", "omnicell_importance"))


TOOLS: tuple[Tool, ...] = (
    Tool(
        "embed-genes",
        "tl.embed_genes",
        "gene embeddings (dataset or cell level) from the model",
        examples=("embedded.h5ad -o genes.h5ad --epochs 5 --random-state 0",),
    ),
    Tool(
        "gene-modules",
        "tl.gene_modules",
        "gene programmes from gene embeddings (run embed-genes first)",
        examples=("genes.h5ad -o modules.h5ad --min-size 5",),
    ),
    Tool(
        "marker-genes",
        "tl.marker_genes",
        "marker genes per group from gene states (in rank_genes_groups layout)",
        examples=("embedded.h5ad -o markers.h5ad --groupby cell_type --n-genes 50 --table markers.tsv",),
        table=_marker_table,
        table_help="one row per group and gene, as scanpy's rank_genes_groups_df",
    ),
    Tool(
        "perturb-genes",
        "tl.perturb_genes",
        "in-silico knockout / overexpression: per-gene effects against a null of random genes",
        examples=(
            "embedded.h5ad -o knockout.h5ad --genes CD79A,MS4A1 --groupby cell_type --table effects.tsv",
            "embedded.h5ad -o up.h5ad --genes CD3E --mode overexpress --n-null 10",
        ),
        table=_perturbation_table("omnicell_perturb"),
        table_help="one row per group and decoded gene, sorted by p-value (oc.get.perturbation_df)",
    ),
    Tool(
        "perturb-niche",
        "tl.perturb_niche",
        "edit spatial neighbourhoods (remove / replace neighbours, knock genes out in them)",
        examples=(
            "embedded.h5ad -o niche.h5ad --replace-with L4 --groupby domain --table effects.tsv",
            "embedded.h5ad -o niche.h5ad --knockout-in-neighbors Slc17a7 --n-null 10",
        ),
        table=_perturbation_table("omnicell_niche_perturb"),
        table_help="one row per group and decoded gene of the focal cells, sorted by p-value",
        overrides={
            "remove": {
                **LABELS_OR_ALL,
                "help": "labels of --groupby whose neighbours leave each window (space- or comma-separated, or "
                "@FILE with one per line), or all for every neighbour",
            },
        },
    ),
    Tool(
        "expert-usage",
        "tl.expert_usage",
        "mixture-of-experts routing per cell and per group",
        examples=("embedded.h5ad -o experts.h5ad --groupby cell_type",),
    ),
    Tool(
        "gene-importance",
        "tl.gene_importance",
        "attention-based gene importance per cell and per group",
        examples=("embedded.h5ad -o importance.h5ad --groupby cell_type --table roc.tsv",),
        table=_importance_roc_table,
        covers=("importance_roc",),
        table_help="ROC AUC of importance per group (needs --groupby)",
    ),
    Tool(
        "evaluate-clustering",
        "tl.evaluate_clustering",
        "Leiden sweep scored against labels (ARI, NMI)",
        examples=("embedded.h5ad -o clustered.h5ad --label-key cell_type --resolutions 0.2,0.5,1 --table sweep.tsv",),
        table=_uns_table("evaluate_clustering", "table"),
        table_help="one row per resolution",
    ),
    Tool(
        "spatial-domains",
        "tl.spatial_domains",
        "spatial domains from niche embeddings",
        examples=("embedded.h5ad -o domains.h5ad --n-domains 7",),
    ),
    Tool(
        "neighborhood-average",
        "tl.neighborhood_average",
        "baseline niche representation: the mean of each cell's spatial neighbours",
        examples=("section.h5ad -o niche.h5ad --use-rep X_pca --n-neighbors 9",),
    ),
    Tool(
        "annotate",
        "tl.annotate",
        "transfer labels from --reference cells with a classifier on the embeddings",
        examples=("query.h5ad -o annotated.h5ad --reference reference.h5ad --label-key cell_type",),
    ),
    Tool(
        "map",
        "tl.map_query",
        "map cells onto a labelled --reference (.h5ad or index): calibrated labels, label sets, unknown calls",
        examples=(
            "query.h5ad -o mapped.h5ad --reference reference.h5ad --label-key cell_type",
            "query.h5ad -o mapped.h5ad --reference reference_index --label-key cell_type --alpha 0.05 "
            "--table calls.tsv",
        ),
        table=_mapping_table,
        table_help="one row per cell: label, confidence, label set, unknown call and novelty p-value",
    ),
    Tool(
        "cross-validate",
        "tl.cross_validate_annotation",
        "k-fold cross-validation of the annotation classifier on the input's labels",
        examples=("embedded.h5ad -o validated.h5ad --label-key cell_type --folds 5 --table folds.tsv",),
        table=_returned_table,
        table_help="one row per fold (accuracy, macro F1, sizes)",
    ),
    Tool(
        "deconvolve",
        "tl.deconvolve",
        "cell-type proportions of spots from --reference cells",
        examples=("spots.h5ad -o proportions.h5ad --reference cells.h5ad --label-key cell_type --table props.tsv",),
        table=_proportions_table,
        table_help="cell-type proportions, one row per spot",
    ),
    Tool(
        "index",
        "tl.build_index",
        "search index of an embedded reference, for mapping (a folder, or one .tar file)",
        examples=("reference.h5ad -o reference_index --obs-keys cell_type", "reference.h5ad -o reference_index.tar"),
        skip={"path": "the -o output"},
        saves="reference index",
    ),
    Tool(
        "search",
        "tl.search",
        "nearest reference cells of each cell in a reference index (after index), with their metadata",
        examples=("query.h5ad -o searched.h5ad --index reference_index --k 10 --table hits.tsv",),
        table=_returned_table,
        table_help="one row per cell and rank: reference cell, distance and its obs columns",
    ),
    Tool(
        "benchmark",
        "tl.benchmark",
        "scib metrics of embeddings (bio conservation, batch correction)",
        examples=("embedded.h5ad -o scored.h5ad --label-key cell_type --batch-key batch --table scores.tsv",),
        table=_uns_table("benchmark", "results"),
        table_help="one row per embedding, one column per metric",
    ),
    Tool(
        "dropout-robustness",
        "tl.dropout_robustness",
        "clustering agreement after dropping counts at several rates",
        examples=("cells.h5ad -o robustness.h5ad --label-key cell_type --rates 0.1,0.3,0.5 --table curve.tsv",),
        skip={"embed": "a Python callable; the command embeds with --model"},
        table=_uns_table("dropout_robustness", "table"),
        table_help="one row per dropout rate",
    ),
    Tool(
        "fine-tune",
        "tl.fine_tune",
        "continue masked-gene training on the input; -o is a checkpoint folder",
        examples=("cells.h5ad -o finetuned_model --epochs 2 --random-state 0",),
        checkpoint="fine-tuned",
    ),
)

FIGURES: tuple[Figure, ...] = (
    Figure(
        "expert-heatmap",
        "pl.expert_heatmap",
        "expert usage per group (after expert-usage)",
        examples=("experts.h5ad -o experts.png --groupby cell_type",),
    ),
    Figure(
        "gene-modules",
        "pl.gene_modules",
        "module scores on an embedding and per group (after gene-modules)",
        examples=("modules.h5ad -o modules.pdf --groupby cell_type",),
    ),
    Figure(
        "markers",
        "pl.marker_genes",
        "marker-gene dot plot (after marker-genes)",
        examples=("markers.h5ad -o markers.png --n-genes 5",),
        skip={"return_fig": "plot writes the figure into the -o file"},
    ),
    Figure(
        "mapping",
        "pl.mapping",
        "confidence, label sets and unknown calls (after map)",
        examples=("mapped.h5ad -o mapping.png --basis umap",),
        skip={"return_fig": "plot writes the figure into the -o file"},
    ),
    Figure(
        "perturbation",
        "pl.perturbation",
        "per-gene effects of a perturbation, or its shift in space (after perturb-genes, perturb-niche)",
        examples=(
            "knockout.h5ad -o effects.png --n-genes 5",
            "niche.h5ad -o shift.png --kind spatial --key omnicell_niche_perturb",
        ),
        skip={"return_fig": "plot writes the figure into the -o file"},
    ),
    Figure(
        "proportions",
        "pl.proportions",
        "cell-type proportions in space (after deconvolve)",
        examples=("proportions.h5ad -o proportions.png",),
    ),
    Figure("benchmark", "pl.benchmark", "scib results table (after benchmark)", examples=("scored.h5ad -o scib.svg",)),
)

#: ``oc.tl`` functions with a command of their own that is not a :class:`Tool` row.
SPECIAL = {"embed_cells": "embed (with oc.pp.tokenize's options, --shard I/N)"}

#: The functions whose keywords ``embed`` offers (``oc.pp.tokenize``, then ``oc.tl.embed_cells``).
_EMBED_TARGETS = ("pp.tokenize", "tl.embed_cells")

#: Usage examples of ``embed``: its arguments after ``omnicell embed``.
EMBED_EXAMPLES = (
    "cells.h5ad -o embedded.h5ad --model omnicell-v1",
    "section.h5ad -o embedded.h5ad --spatial --n-neighbors 9",
    "big.h5ad -o part0.h5ad --shard 0/2",
)


def embed_functions() -> tuple[Callable, Callable]:
    """``(oc.pp.tokenize, oc.tl.embed_cells)``, imported now."""
    tokenize, embed_cells = map(resolve, _EMBED_TARGETS)
    return tokenize, embed_cells


def __getattr__(name: str) -> Any:
    if name == "EMBED_FUNCTIONS":  # imported on use (the docs build reads it)
        return embed_functions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _target_name(target: str | Callable) -> str:
    return target.rpartition(".")[2] if isinstance(target, str) else target.__name__


def tool_for(function_name: str) -> str | None:
    """The command that runs ``oc.tl.<function_name>``."""
    if function_name in SPECIAL:
        return SPECIAL[function_name].split()[0]
    for tool in TOOLS:
        if _target_name(tool.target) == function_name or function_name in tool.covers:
            return tool.name
    return None
