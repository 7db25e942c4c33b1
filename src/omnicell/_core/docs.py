"""Docstring parts shared by the tools (scanpy's ``_utils._doc_params``, squidpy's docrep).

A tool's docstring names a part as ``{doc_model}`` on a line of its own in the Parameters section;
:func:`doc_params` fills it in, so every tool describes ``model``, ``copy``, ``mod`` ... alike.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DOC_PARTS", "doc_params"]

_F = TypeVar("_F", bound=Callable)

DOC_PARTS: dict[str, str] = {
    "doc_adata": """\
adata
    Cells x genes, as given to :func:`omnicell.pp.tokenize` (run here with its defaults if it was
    not run); a MuData is read through its modality ``mod``.""",
    "doc_model": """\
model
    Model object (:class:`~omnicell.models.OmniCellModel`), registry name or checkpoint folder;
    None uses ``oc.settings.default_model``. It must have the vocabulary ``tokenize`` used.""",
    "doc_batch_size": """\
batch_size
    Cells (focal cells in spatial mode) per forward pass; None uses ``oc.settings.batch_size``.
    Results do not depend on it.""",
    "doc_device": """\
device
    ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``; None uses ``oc.settings.device``.""",
    "doc_precision": """\
precision
    ``"auto"`` runs bfloat16 autocast on CUDA and float32 elsewhere; ``"float32"``,
    ``"bfloat16"`` or ``"float16"`` force one. Pooling and projections are always float32.""",
    "doc_neighbors_key": """\
neighbors_key
    Reuse a kNN graph instead of building one: a key as ``sc.pp.neighbors`` writes it
    (``'neighbors'``, or its ``key_added``) or squidpy-style (``'knn9'`` ->
    ``obsp['knn9_connectivities']``); ``n_neighbors`` and ``metric`` are then ignored. None
    builds the graph and stores it as ``sc.pp.neighbors(key_added=use_rep + '_knn')`` would
    (``obsp[use_rep + '_knn_connectivities']``, ``..._distances``, ``uns[use_rep + '_knn']``).""",
    "doc_mod": """\
mod
    Modality of a MuData to use; results are written into it.""",
    "doc_copy": """\
copy
    Return a modified copy instead of writing into ``adata``.""",
}
"""Parameter descriptions by placeholder name (without braces)."""


def doc_params(function: _F) -> _F:
    """Fill the ``{doc_*}`` placeholders of ``function``'s docstring with :data:`DOC_PARTS`.

    The docstring is cleaned (:func:`inspect.cleandoc`) first, so the parts, written without
    indentation, line up with the rest; an unknown placeholder is an error at import time.
    """
    doc = inspect.cleandoc(function.__doc__ or "")
    for name, text in DOC_PARTS.items():
        doc = doc.replace("{" + name + "}", text)
    if "{doc_" in doc:
        start = doc.index("{doc_")
        raise KeyError(f"{function.__qualname__}: unknown docstring part {doc[start : doc.index('}', start) + 1]}.")
    function.__doc__ = doc
    return function
