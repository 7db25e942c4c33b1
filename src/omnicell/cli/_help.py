"""Help texts for a shell user, translated from the numpydoc entries written for Python users.

A docstring says ``level="cell"``, ``None uses oc.settings.seed`` or ``see oc.tl.embed_genes(adata, ...)``;
the command line says ``--level cell``, ``none uses the default seed`` and ``omnicell embed-genes``. The
translation is rule-based (so a new keyword gets it for free); an entry whose text is about Python itself
gets a hand-written help in :data:`KEYWORD_HELP`. ``tests/cli/test_help.py`` checks every option of every
command for what must not be left.
"""

from __future__ import annotations

import ast
import enum
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["KEYWORD_HELP", "default_text", "shell_help", "shell_text"]

#: The kNN graph a clustering reuses (evaluate-clustering, spatial-domains).
_GRAPH_KEY = (
    "reuse a kNN graph instead of building one: an obsp or uns key as scanpy's neighbors writes "
    "it (neighbors, or its key_added), or squidpy-style (knn9 for obsp knn9_connectivities); --n-neighbors and "
    "--metric are then ignored. none: build the graph and store it under the --use-rep key plus _knn, as scanpy's "
    "neighbors would."
)

#: Help of keywords whose docstring speaks of Python objects: ``keyword`` (every function) or
#: ``("tl.function", keyword)``.
KEYWORD_HELP: dict[str | tuple[str, str], str] = {
    "random_state": "random seed of the stochastic steps; none: the configured seed (0)",
    ("tl.evaluate_clustering", "neighbors_key"): _GRAPH_KEY,
    ("tl.spatial_domains", "neighbors_key"): _GRAPH_KEY,
    ("tl.marker_genes", "n_genes"): "markers listed per group. A group with fewer genes passing the expression "
    "filter is completed with the best-scoring remaining genes (log fold change <= 0) and a warning.",
    ("tl.marker_genes", "store"): "zarr store of cell-level gene embeddings written by `omnicell embed-genes "
    "--level cell --store PATH`: read it instead of running the model again",
    ("tl.embed_genes", "store"): "zarr store (replaced if present) to write the full cell-level embeddings to "
    "(cells x genes x dimensions), e.g. for `omnicell marker-genes --store`. With --level dataset the per-cell "
    "embeddings the GNN reads go there instead of a temporary store.",
    ("tl.benchmark", "bio_conservation"): "compute the bio-conservation metrics (isolated labels, KMeans NMI/ARI, "
    "label silhouette, cLISI): true, false, or a JSON object switching single metrics or giving their "
    """arguments as scib-metrics takes them, e.g. '{"nmi_ari_cluster_labels_leiden": true}'""",
    ("tl.benchmark", "batch_correction"): "compute the batch-correction metrics (BRAS, iLISI, kBET, graph "
    "connectivity, PCR comparison): true, false, or a JSON object as for --bio-conservation, e.g. "
    """'{"kbet_per_label": false}'""",
    ("tl.benchmark", "embeddings"): "obsm keys to score, e.g. X_pca,X_omnicell",
    ("tl.fine_tune", "masking"): "JSON object overriding the stage's masking rates (keys nonzero, zero, "
    """neighbor_nonzero, neighbor_zero, mask_value), e.g. '{"nonzero": 0.2}'""",
    ("tl.perturb_genes", "cells"): "obs names of the cells to perturb; none: all cells",
    ("tl.perturb_niche", "cells"): "obs names of the focal cells; none: all cells",
    ("tl.perturb_genes", "key_added"): "key of the results: obs key plus _shift, obsm, layers and uns keys",
    ("tl.perturb_niche", "key_added"): "key of the results: obs key plus _shift (and _domain_before, "
    "_domain_after), obsm, layers and uns keys",
    ("tl.search", "index"): "reference index: a folder or .tar written by `omnicell index`, or an embedded reference "
    ".h5ad (indexed now, exactly up to 100,000 cells)",
    ("pl.proportions", "key"): "obsm key of the proportions (one column per cell type)",
    ("pl.marker_genes", "use_raw"): "plot the markers from .raw of the input; none: as they were computed",
}

_ROLE = re.compile(r":\w+:`~?([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_CALL = re.compile(r"^(?:oc|omnicell)\.(tl|pp|pl)\.(\w+)(?:\((.*)\))?$")
_SETTING = re.compile(r"(?:min\()?(?:oc|omnicell)\.settings\.(\w+)(?:, (\d+)\))?")
_KEYWORD = re.compile(r"^(\w+)=(.*)$")
_LIBRARIES = {"sc": "scanpy", "sq": "squidpy"}
_LIBRARY = re.compile(r"\b(sc|sq)\.(?:pp|tl|pl|get|gr)\.(\w+)")


def _command(package: str, name: str) -> str | None:
    from omnicell.cli._commands import FIGURES, _target_name, tool_for

    if package == "pl":
        figure = next((figure for figure in FIGURES if _target_name(figure.target) == name), None)
        return f"omnicell plot {figure.name}" if figure else None
    command = tool_for(name) if package == "tl" else "embed" if name == "tokenize" else None
    return f"omnicell {command}" if command else None


def _setting(match: re.Match) -> str:
    words = {"seed": "seed (0)"}.get(match.group(1), match.group(1).replace("_", " "))
    return f"the configured {words}" + (f", at most {match.group(2)}" if match.group(2) else "")


def _value(text: str, *, flag: str | None = None) -> str:
    """A Python value as the shell spells it: ``"cell"`` -> cell, ``None`` -> none, a dict as JSON."""
    text = text.strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    if value is None:
        return "none"
    if isinstance(value, bool):
        if flag:
            return flag if value else "--no-" + flag[2:]
        return "true" if value else "false"
    if isinstance(value, (list, tuple)) and all(isinstance(item, (str, int, float)) for item in value):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return "'" + json.dumps(value) + "'"
    return str(value)


def _literal(inner: str, options: Mapping[str, str], flag: str | None, absent: frozenset[str] = frozenset()) -> str:
    """One ````literal```` of a docstring, for the shell (``absent``: keywords whose default None means "not given")."""
    inner = inner.strip()
    slot = re.fullmatch(r"(obs|obsm|obsp|var|varm|uns|layers)\[(.+)\]", inner)
    if slot:  # obsm[key_added + '_probabilities'] -> obsm key --key-added plus _probabilities
        return f"{slot.group(1)} key {_literal(slot.group(2), options, flag, absent)}"
    if " + " in inner:  # key_added + '_niche'
        return " plus ".join(_literal(part, options, flag, absent) for part in inner.split(" + "))
    call = _CALL.match(inner)
    if call:
        command = _command(call.group(1), call.group(2)) or f"the Python function {call.group(2)}"
        arguments = [part.strip() for part in (call.group(3) or "").split(",")]
        given = [_literal(part, options, None) for part in arguments if _KEYWORD.match(part)]
        return " ".join([command, *given])
    if _SETTING.fullmatch(inner):
        return _SETTING.sub(_setting, inner)
    keyword = _KEYWORD.match(inner)
    if keyword and keyword.group(1) in absent and keyword.group(2).strip() == "None":
        return "without " + options[keyword.group(1)]
    if keyword and keyword.group(1) in options:
        value = keyword.group(2).strip()
        return options[keyword.group(1)] + (" " + _value(value) if value and value != "..." else "")
    if inner in options:
        return options[inner]
    if inner in ("True", "False") and flag:
        return _value(inner, flag=flag)
    return _value(inner)


def shell_text(
    text: str,
    *,
    options: Mapping[str, str] | None = None,
    flag: str | None = None,
    absent: frozenset[str] = frozenset(),
) -> str:
    """``text`` (numpydoc/reST for Python users) for a shell user; ``options`` maps keyword -> option."""
    options = options or {}

    def role(match: re.Match) -> str:
        target = match.group(1)
        parts = target.split(".")
        if len(parts) >= 3 and parts[0] in ("omnicell", "oc") and parts[1] in ("tl", "pp", "pl"):
            return _command(parts[1], parts[-1]) or parts[-1]
        return parts[-1]

    text = _ROLE.sub(role, text)
    text = _LITERAL.sub(lambda match: _literal(match.group(1), options, flag, absent), text)
    text = re.sub(r"\bmodel\.tokenization(\.\w+)*", "the model's tokenisation settings", text)
    text = re.sub(r"\b([Ww])ith without\b", lambda match: "Without" if match.group(1) == "W" else "without", text)
    text = _SETTING.sub(_setting, text)
    text = _LIBRARY.sub(lambda match: f"{_LIBRARIES[match.group(1)]}'s {match.group(2)}", text)
    text = re.sub(r"\badata\.(raw|X)\b", r".\1 of the input", text)
    text = re.sub(r"\badata\b", "the input", text)
    text = re.sub(r"\bNone\b", "none", text)
    if flag:
        text = re.sub(r"\bTrue\b", flag, text)
        text = re.sub(r"\bFalse\b", "--no-" + flag[2:], text)
    text = re.sub(r"\bTrue\b", "true", text)
    text = re.sub(r"\bFalse\b", "false", text)
    return " ".join(text.split())


def shell_help(text: str, keyword: str, *, function: Callable, options: Mapping[str, str], flag: bool = False) -> str:
    """The help of option ``keyword`` of ``function``: :data:`KEYWORD_HELP`, else its translated docstring."""
    import inspect

    name = (
        f"{function.__module__.split('.')[1]}.{function.__name__}"
        if function.__module__.startswith("omnicell.")
        else ""
    )
    own = KEYWORD_HELP.get((name, keyword), KEYWORD_HELP.get(keyword))
    parameters = inspect.signature(function).parameters
    absent = frozenset(key for key in options if key in parameters and parameters[key].default is None)
    return shell_text(own if own is not None else text, options=options, flag=options.get(keyword) if flag else None,
                      absent=absent)  # fmt: skip


def default_text(default: Any, flag: str | None = None) -> str:
    """A Python default as the shell spells it (``True`` of ``--pts`` -> ``--pts``, a tuple -> ``0.1,0.5``)."""
    if isinstance(default, enum.Enum):
        default = default.value
    if isinstance(default, bool):
        return (flag if default else "--no-" + flag[2:]) if flag else ("true" if default else "false")
    if isinstance(default, (list, tuple)):
        return ",".join(map(str, default))
    if isinstance(default, dict):
        return "'" + json.dumps(default) + "'"
    return str(default)
