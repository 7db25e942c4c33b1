"""The table of commands: each ``oc.tl`` tool and ``oc.pl`` figure with its command and its table.

The options of a command are generated from its function (see :mod:`._options`), so adding a keyword
to a tool adds its option. Keywords a command cannot offer are in the command's ``skip`` with the
reason (a test checks every keyword of every tool is either an option or listed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from omnicell import pl, pp, tl

__all__ = ["FIGURES", "TOOLS", "Figure", "Tool", "tool_for"]


@dataclasses.dataclass(frozen=True)
class Tool:
    """A command that runs one ``oc.tl`` function on the input and writes the result."""

    name: str
    function: Callable
    summary: str
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


@dataclasses.dataclass(frozen=True)
class Figure:
    """A ``plot FIGURE`` subcommand drawing one ``oc.pl`` function into the -o file."""

    name: str
    function: Callable
    summary: str
    skip: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _uns_table(function: str, field: str) -> Callable[[Any, Any, dict], pd.DataFrame]:
    def table(adata, returned, keywords) -> pd.DataFrame:
        return pd.DataFrame(adata.uns["omnicell"][function][field])

    return table


def _marker_table(adata, returned, keywords) -> pd.DataFrame:
    import scanpy as sc

    return sc.get.rank_genes_groups_df(adata, None, key=keywords.get("key_added", "rank_genes_omnicell"))


def _proportions_table(adata, returned, keywords) -> pd.DataFrame:
    return pd.DataFrame(adata.obsm[keywords.get("key_added", "omnicell_proportions")])


def _returned_table(adata, returned, keywords) -> pd.DataFrame:
    return returned


def _importance_roc_table(adata, returned, keywords) -> pd.DataFrame:
    if keywords.get("groupby") is None:
        raise ValueError("--table with gene-importance needs --groupby (the table is the per-group ROC of importance).")
    return tl.importance_roc(adata, keywords["groupby"], key=keywords.get("key_added", "omnicell_importance"))


_RUNS_MODEL = "runs the model chosen with --model"

TOOLS: tuple[Tool, ...] = (
    Tool("embed-genes", tl.embed_genes, "gene embeddings (dataset or cell level) from the model"),
    Tool("gene-modules", tl.gene_modules, "gene programmes from gene embeddings (run embed-genes first)"),
    Tool(
        "marker-genes",
        tl.marker_genes,
        "marker genes per group from gene states (scanpy's rank_genes_groups schema)",
        table=_marker_table,
        table_help="one row per group and gene (sc.get.rank_genes_groups_df)",
    ),
    Tool("expert-usage", tl.expert_usage, "mixture-of-experts routing per cell and per group"),
    Tool(
        "gene-importance",
        tl.gene_importance,
        "attention-based gene importance per cell and per group",
        table=_importance_roc_table,
        covers=("importance_roc",),
        table_help="ROC AUC of importance per group (oc.tl.importance_roc; needs --groupby)",
    ),
    Tool(
        "evaluate-clustering",
        tl.evaluate_clustering,
        "Leiden sweep scored against labels (ARI, NMI)",
        table=_uns_table("evaluate_clustering", "table"),
        table_help="one row per resolution",
    ),
    Tool("spatial-domains", tl.spatial_domains, "spatial domains from niche embeddings"),
    Tool(
        "neighborhood-average",
        tl.neighborhood_average,
        "baseline niche representation: the mean of each cell's spatial neighbours",
    ),
    Tool("annotate", tl.annotate, "transfer labels from --reference cells with a classifier on the embeddings"),
    Tool(
        "cross-validate",
        tl.cross_validate_annotation,
        "k-fold cross-validation of the annotation classifier on the input's labels",
        table=_returned_table,
        table_help="one row per fold (accuracy, macro F1, sizes)",
    ),
    Tool(
        "deconvolve",
        tl.deconvolve,
        "cell-type proportions of spots from --reference cells",
        table=_proportions_table,
        table_help="cell-type proportions, one row per spot",
    ),
    Tool(
        "benchmark",
        tl.benchmark,
        "scib metrics of embeddings (bio conservation, batch correction)",
        table=_uns_table("benchmark", "results"),
        table_help="one row per embedding, one column per metric",
    ),
    Tool(
        "dropout-robustness",
        tl.dropout_robustness,
        "clustering agreement after dropping counts at several rates",
        skip={"embed": "a Python callable; the command embeds with --model"},
        table=_uns_table("dropout_robustness", "table"),
        table_help="one row per dropout rate",
    ),
    Tool(
        "fine-tune",
        tl.fine_tune,
        "continue masked-gene training on the input; -o is a checkpoint folder",
        checkpoint="fine-tuned",
    ),
)

FIGURES: tuple[Figure, ...] = (
    Figure("expert-heatmap", pl.expert_heatmap, "expert usage per group (after expert-usage)"),
    Figure("gene-modules", pl.gene_modules, "module scores on an embedding and per group (after gene-modules)"),
    Figure("markers", pl.marker_genes, "marker-gene dot plot (after marker-genes)"),
    Figure("proportions", pl.proportions, "cell-type proportions in space (after deconvolve)"),
    Figure("benchmark", pl.benchmark, "scib results table (after benchmark)"),
)

#: ``oc.tl`` functions with a command of their own that is not a :class:`Tool` row.
SPECIAL = {"embed_cells": "embed (with oc.pp.tokenize's options, --shard I/N)"}

#: The keywords of ``embed`` that come from ``oc.pp.tokenize`` and ``oc.tl.embed_cells``.
EMBED_FUNCTIONS = (pp.tokenize, tl.embed_cells)


def tool_for(function_name: str) -> str | None:
    """The command that runs ``oc.tl.<function_name>``."""
    if function_name in SPECIAL:
        return SPECIAL[function_name].split()[0]
    for tool in TOOLS:
        if tool.function.__name__ == function_name or function_name in tool.covers:
            return tool.name
    return None
