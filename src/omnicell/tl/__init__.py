"""Tools: run the model and analyses on an AnnData (``oc.tl``)."""

from ._embed_cells import embed_cells
from ._fine_tune import fine_tune

__all__ = [
    "embed_cells",
    "fine_tune",
]
