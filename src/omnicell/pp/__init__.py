"""Preprocessing: prepare an AnnData for the model (``oc.pp``)."""

from ._map_genes import map_genes
from ._tokenize import tokenize

__all__ = ["map_genes", "tokenize"]
