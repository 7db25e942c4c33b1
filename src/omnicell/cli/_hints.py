"""The type hints of the tool functions, resolved for the command line.

The modules of omnicell use ``from __future__ import annotations``, so an annotation is a string to be
evaluated in the function's module; a few names in them (``MuData``, sometimes ``AnnData``) are imported
there only for type checkers. Such names are looked up in :data:`_FALLBACK` after the module's own names.
A hint that still cannot be resolved is an error (:class:`HintError`), never a silent ``str`` option.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["HintError", "data_file_keywords", "takes_index", "type_hint", "union_members"]

#: Names a module may import only under ``TYPE_CHECKING``: ``name -> (module, attribute or None)``.
_FALLBACK: dict[str, tuple[str, str | None]] = {
    "AnnData": ("anndata", "AnnData"),
    "MuData": ("mudata", "MuData"),
    "np": ("numpy", None),
    "pd": ("pandas", None),
    "torch": ("torch", None),
    "os": ("os", None),
    "Axes": ("matplotlib.axes", "Axes"),
}


class HintError(TypeError):
    """A keyword's type hint cannot be resolved or has no command-line form."""


class _Fallback(Mapping):
    """:data:`_FALLBACK` as a namespace, importing a module only when a hint names it.

    mudata is not imported by ``import omnicell``, and most hints never need it.
    """

    def __getitem__(self, name: str) -> Any:
        if name not in _FALLBACK:
            raise KeyError(name)
        module, attribute = _FALLBACK[name]
        imported = importlib.import_module(module)
        return getattr(imported, attribute) if attribute else imported

    def __iter__(self) -> Iterator[str]:
        return iter(_FALLBACK)

    def __len__(self) -> int:
        return len(_FALLBACK)


def type_hint(function: Callable, name: str) -> Any:
    """The resolved type hint of keyword ``name`` (``"return"``: of the result) of ``function``.

    One keyword at a time, so that a keyword the command line never offers (a callable, an axes) cannot
    stop the others from resolving.

    Raises
    ------
    HintError
        When the keyword has no annotation or its annotation names something that does not exist.
    """
    target = inspect.unwrap(function)
    where = f"{target.__module__}.{target.__qualname__}"
    annotations = getattr(target, "__annotations__", {})
    if name not in annotations:
        raise HintError(f"{where}: keyword {name!r} has no type hint, so the command line cannot type its option.")
    # get_type_hints of a stand-in holding only this annotation, evaluated in the module's names first.
    holder = types.SimpleNamespace(__annotations__={name: annotations[name]})
    namespace = collections.ChainMap(target.__globals__, _Fallback())
    try:
        return typing.get_type_hints(holder, globalns=target.__globals__, localns=namespace, include_extras=True)[name]
    except Exception as error:  # NameError, AttributeError, ImportError ... from evaluating the annotation
        raise HintError(
            f"{where}: cannot resolve the type hint {annotations[name]!r} of {name!r} ({type(error).__name__}: "
            f"{error}); import the name at module level or add it to omnicell.cli._hints._FALLBACK."
        ) from error


def _strip(hint: Any) -> Any:
    """``Annotated[X, ...]`` -> ``X`` (the metadata says nothing about the option)."""
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def union_members(hint: Any) -> tuple[list[Any], bool]:
    """The members of a union other than None, and whether None is one (``X`` alone: ``[X], False``)."""
    hint = _strip(hint)
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    members = [_strip(member) for member in members]
    return [member for member in members if member is not type(None)], type(None) in members


def data_file_keywords(function: Callable, shared: Mapping[str, str]) -> list[str]:
    """Keywords of ``function`` given as a data file (``--reference FILE``): those in ``shared`` hinted ``AnnData``.

    ``AnnData`` alone or beside other forms, such as a path (see :func:`takes_index`). The first parameter is
    the INPUT and never one of them; a keyword without annotation is not one either.
    """
    from anndata import AnnData

    annotated = getattr(inspect.unwrap(function), "__annotations__", {})
    names = [name for name in list(inspect.signature(function).parameters)[1:] if name in shared and name in annotated]
    return [name for name in names if AnnData in union_members(type_hint(function, name))[0]]


def takes_index(function: Callable, name: str) -> bool:
    """Whether data-file keyword ``name`` also takes a path (``map_query``'s reference: an index folder or .tar)."""
    import os

    return any(isinstance(member, type) and issubclass(member, os.PathLike)
               for member in union_members(type_hint(function, name))[0])  # fmt: skip
