"""Preprocessing: prepare an AnnData for the model (``oc.pp``)."""

from ._tokenize import tokenize

__all__ = ["tokenize"]
