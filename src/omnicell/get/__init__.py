"""Getters: read omnicell results and model inputs out of an AnnData (``oc.get``)."""

from omnicell.get._perturbation import perturbation_df
from omnicell.get._search import search_results
from omnicell.get._tokens import token_batch

__all__ = ["perturbation_df", "search_results", "token_batch"]
