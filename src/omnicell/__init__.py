"""omnicell: the OmniCell foundation model for single-cell and spatial transcriptomics, scverse-style.

>>> import omnicell as oc
>>> oc.pp.tokenize(adata)
>>> oc.tl.embed_cells(adata)  # adata.obsm['X_omnicell']
"""

from __future__ import annotations

# The "omnicell" logger follows scanpy's verbosity; no handler is installed here (see _logging).
from ._logging import get_logger as _get_logger
from ._version import __version__

_get_logger()

from . import data, datasets, get, model, models, pl, pp, tl  # noqa: E402
from ._settings import settings  # noqa: E402

__all__ = ["__version__", "data", "datasets", "get", "model", "models", "pl", "pp", "settings", "tl"]
