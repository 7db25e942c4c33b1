"""Tools: run the model and analyses on an AnnData (``oc.tl``)."""

from ._embed_cells import embed_cells

__all__ = ["embed_cells"]
