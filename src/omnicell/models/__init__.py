"""Named models: load, download and convert checkpoints (``oc.models.load("omnicell-tiny")``).

The registry (:func:`available`, :func:`download`, :func:`register`) knows the bundled and the
downloadable models; :func:`load` reads a name or a folder (official or omnicell format) into an
:class:`OmniCellModel`; :func:`resolve_device` turns ``"auto"`` into a torch device.
"""

from omnicell.models._device import resolve_device
from omnicell.models._model import OmniCellModel, convert, load, resolve_model
from omnicell.models._registry import ModelSpec, available, bundled_folder, download, register

__all__ = [
    "ModelSpec",
    "OmniCellModel",
    "available",
    "bundled_folder",
    "convert",
    "download",
    "load",
    "register",
    "resolve_device",
    "resolve_model",
]
