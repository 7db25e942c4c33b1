"""omnicell: the OmniCell foundation model for single-cell and spatial transcriptomics, scverse-style.

>>> import omnicell as oc
>>> oc.pp.tokenize(adata)
>>> oc.tl.embed_cells(adata)  # adata.obsm['X_omnicell']
"""

from __future__ import annotations

# The "omnicell" logger follows scanpy's verbosity; no handler is installed here (see omnicell._core.log).
from omnicell._core.log import get_logger as _get_logger
from omnicell._version import __version__

_get_logger()

from omnicell import data, datasets, get, models, nn, pl, pp, tl  # noqa: E402
from omnicell._core.settings import settings  # noqa: E402

__all__ = ["__version__", "data", "datasets", "get", "models", "nn", "pl", "pp", "settings", "tl"]
