"""Named models: load, download and convert checkpoints (``oc.models.load("omnicell-tiny")``).

The registry (:func:`available`, :func:`download`, :func:`register`) knows the bundled and the
downloadable models; :func:`load` reads a name or a folder (official or omnicell format) into an
:class:`OmniCellModel`; :func:`resolve_device` turns ``"auto"`` into a torch device.

Names are imported on first use (PEP 562): the registry needs no torch, so ``omnicell models list``
starts without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: The private module holding each public name.
_WHERE = {
    "resolve_device": "_device",
    "OmniCellModel": "_model",
    "convert": "_model",
    "load": "_model",
    "resolve_model": "_model",
    "ModelSpec": "_registry",
    "available": "_registry",
    "bundled_folder": "_registry",
    "download": "_registry",
    "register": "_registry",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"omnicell.models.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'omnicell.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
