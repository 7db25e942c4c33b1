"""omnicell: the OmniCell foundation model for single-cell and spatial transcriptomics, scverse-style.

>>> import omnicell as oc
>>> oc.pp.tokenize(adata)
>>> oc.tl.embed_cells(adata)  # adata.obsm['X_omnicell']
"""

from __future__ import annotations

import logging as _logging

from ._version import __version__

_logger = _logging.getLogger("omnicell")
if not _logger.handlers:
    _handler = _logging.StreamHandler()
    _handler.setFormatter(_logging.Formatter("%(name)s: %(message)s"))
    _logger.addHandler(_handler)
    _logger.propagate = False

from . import data, get, model, models, pl, pp, tl  # noqa: E402
from ._settings import settings  # noqa: E402

settings.verbosity = settings.verbosity or "WARNING"

__all__ = ["__version__", "data", "get", "model", "models", "pl", "pp", "settings", "tl"]
