"""Preprocessing: prepare an AnnData for the model (``oc.pp``)."""

from omnicell._engine.tokenize import tokenize
from omnicell.pp._map_genes import map_genes

__all__ = ["map_genes", "tokenize"]
