"""omnicell: the OmniCell foundation model for single-cell and spatial transcriptomics, scverse-style.

>>> import omnicell as oc
>>> oc.pp.tokenize(adata)
>>> oc.tl.embed_cells(adata)  # adata.obsm['X_omnicell']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The "omnicell" logger follows scanpy's verbosity; no handler is installed here (see omnicell._core.log).
from omnicell._core.log import get_logger as _get_logger
from omnicell._core.settings import settings
from omnicell._version import __version__

_get_logger()

if TYPE_CHECKING:
    from omnicell import data, datasets, get, models, nn, pl, pp, tl

__all__ = ["__version__", "data", "datasets", "get", "models", "nn", "pl", "pp", "settings", "tl"]

#: Subpackages imported on first use (PEP 562), so that ``omnicell --help`` and ``import omnicell`` do not
#: import torch, scanpy or squidpy; ``oc.tl.embed_cells`` works as before.
_SUBPACKAGES = frozenset({"data", "datasets", "get", "models", "nn", "pl", "pp", "tl"})


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"omnicell.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'omnicell' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBPACKAGES)
