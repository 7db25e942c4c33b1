"""Command-line options generated from a function's signature and numpydoc docstring.

Every keyword of a tool becomes ``--the-keyword`` (underscores to dashes) with a type read from its
resolved type hint (:mod:`._hints`) and the help text of its docstring entry, translated for a shell user
(:mod:`._help`), so the command line and the Python API cannot drift apart. One concept has one option
name across commands (:data:`RENAMED`); a renamed option keeps its generated spelling as a hidden alias.
Keywords the command line provides in another way (the input file, ``--model``, ``--device`` ...) are
listed in :data:`SHARED`; keywords a command cannot offer are listed with a reason per command.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import json
import os
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omnicell.cli._help import default_text, shell_help
from omnicell.cli._hints import HintError, type_hint, union_members

__all__ = [
    "DATA_FILES",
    "HIDDEN_ALIASES",
    "INDEX_FILES",
    "LABELS_OR_ALL",
    "RENAMED",
    "SHARED",
    "add_function_options",
    "docstring_parameters",
    "option_name",
    "option_names",
    "option_spec",
]

#: Keywords every command handles the same way (not generated per tool), with the reason.
SHARED: dict[str, str] = {
    "adata": "the INPUT file (.h5ad, or .h5mu with --mod)",
    "model": "the common --model option",
    "device": "the common --device option",
    "mod": "the common --mod option (modality of an .h5mu input)",
    "copy": "the command always writes a new file and never modifies its input",
    "reference": "the common --reference FILE option (an .h5ad)",
    "ax": "plot draws a whole figure into the -o file",
    "show": "plot writes the -o file and shows nothing",
    "save": "plot writes the -o file (PNG, PDF or SVG by suffix)",
}

#: Help of the keywords given as a data file, ``--reference FILE``: those of :data:`SHARED` hinted ``AnnData``
#: (see :func:`._hints.data_file_keywords`); the command reads the file and passes its AnnData.
DATA_FILES: dict[str, str] = {"reference": "labelled reference cells (.h5ad), embedded with the same model"}

#: What a data-file option also takes when its keyword takes a path (see :func:`._hints.takes_index`).
INDEX_FILES: dict[str, str] = {
    "reference": "labelled reference cells (.h5ad) embedded with the same model, or a reference index (a folder "
    "or .tar written by `omnicell index` with the labels among its --obs-keys)"
}

_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}\n", re.MULTILINE)


#: One option name per concept across commands: ``keyword -> option`` for every function, and
#: ``(function, keyword) -> option`` where a keyword means something else in one function. The generated
#: spelling stays a hidden alias (wrappers written before the rename keep working).
RENAMED: dict[str | tuple[str, str], str] = {
    "n_epochs": "epochs",  # embed_genes; annotate, deconvolve, cross_validate and fine_tune say epochs
    "learning_rate": "lr",  # likewise: lr in the four others
    ("tokenize", "n_genes"): "genes_per_cell",  # --n-genes is markers per group (marker-genes, plot markers)
}

#: Hidden spellings of an option besides its generated one: ``random_state`` is scanpy's name, and
#: ``--seed`` was the command line's before it.
HIDDEN_ALIASES: dict[str, tuple[str, ...]] = {"random_state": ("seed",)}


def option_name(parameter: str, function: Callable | None = None) -> str:
    """``n_genes`` -> ``--n-genes``; renamed where :data:`RENAMED` says (``n_epochs`` -> ``--epochs``)."""
    return option_names(parameter, function)[0]


def option_names(parameter: str, function: Callable | None = None) -> tuple[str, tuple[str, ...]]:
    """The shown option of keyword ``parameter`` of ``function`` and its hidden aliases."""
    dashed = "--" + parameter.replace("_", "-")
    name = getattr(function, "__name__", None)
    renamed = RENAMED.get((name, parameter), RENAMED.get(parameter)) if name is not None else RENAMED.get(parameter)
    shown = "--" + renamed.replace("_", "-") if renamed else dashed
    aliases = ["--" + alias.replace("_", "-") for alias in HIDDEN_ALIASES.get(parameter, ())]
    hidden = ([dashed] if renamed else []) + aliases
    return shown, tuple(hidden)


def docstring_parameters(function: Callable) -> dict[str, str]:
    """The text of each entry of the numpydoc Parameters section, one line, by parameter name."""
    doc = inspect.cleandoc(function.__doc__ or "")
    sections = list(_SECTION.finditer(doc))
    body = ""
    for i, match in enumerate(sections):
        if match.group("title").strip() == "Parameters":
            end = sections[i + 1].start() if i + 1 < len(sections) else len(doc)
            body = doc[match.end() : end]
    entries: dict[str, str] = {}
    names: list[str] = []
    for line in body.splitlines():
        if line and not line.startswith(" "):
            names = [name.strip().lstrip("*") for name in line.split(":")[0].split(",")]
            for name in names:
                entries[name] = ""
        elif names and line.strip():
            for name in names:
                entries[name] = (entries[name] + " " + line.strip()).strip()
    return entries


def _split(text: str) -> list[str]:
    """Items of a comma-separated value, or the lines of ``@FILE`` (one per line, # comments)."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise argparse.ArgumentTypeError(f"cannot read {path}: {error.strerror or error}") from None
        items = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    else:
        items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list or @FILE, got {text!r}")
    return items


def _none_or(convert: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """A converter that also takes ``none`` (the Python default None)."""

    def parse(text: str) -> Any:
        if text.strip().lower() == "none":
            return None
        return convert(text)

    parse.__name__ = name
    return parse


def _list_of(convert: Callable[[str], Any], name: str) -> Callable[[str], list]:
    def parse(text: str) -> list:
        return [convert(item) for item in _split(text)]

    parse.__name__ = f"list of {name}"
    return parse


class _Items(argparse.Action):
    """A list option: several values (``--rates 0.1 0.5``), comma-separated (``0.1,0.5``) or ``@FILE``, flattened.

    A value None is the word ``none`` (a list keyword whose default is not None): the option is then None.
    """

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        flat = None if any(value is None for value in values) else [item for value in values for item in value]
        setattr(namespace, self.dest, flat)


class _LabelsOrAll(_Items):
    """A list of labels, or the word ``all`` alone for a keyword's ``True`` (e.g. every neighbour)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        flat = [item for value in values for item in value]
        setattr(namespace, self.dest, True if flat == ["all"] else flat)


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f'expected JSON (e.g. true, false or {{"key": 1}}): {error.msg}') from None


def _tuple_of_floats(text: str) -> tuple[float, ...]:
    return tuple(float(item) for item in _split(text))


_json_value.__name__ = "JSON"
_tuple_of_floats.__name__ = "comma-separated numbers"

#: Scalar hints and their converters, in the order a union of several tries them (``float | str``: a number,
#: else the word, e.g. ``--vmax 0.5`` or ``--vmax auto``).
_SCALARS: tuple[type, ...] = (int, float, str)


def _first_of(converters: list[Callable[[str], Any]]) -> Callable[[str], Any]:
    """The first converter that takes the text (a union of scalars); one converter is itself."""
    if len(converters) == 1:
        return converters[0]

    def parse(text: str) -> Any:
        for convert in converters[:-1]:
            try:
                return convert(text)
            except ValueError:
                continue
        return converters[-1](text)

    parse.__name__ = " or ".join(convert.__name__ for convert in converters)
    return parse


def _member_of(enum_type: type[enum.Enum]) -> Callable[[str], enum.Enum]:
    """An Enum member from its value or its name."""
    members = {str(member.value): member for member in enum_type} | {member.name: member for member in enum_type}

    def parse(text: str) -> enum.Enum:
        if text not in members:
            shown = ", ".join(str(member.value) for member in enum_type)
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {shown})")
        return members[text]

    parse.__name__ = enum_type.__name__
    return parse


def _choice_text(choice: Any) -> str:
    return str(choice.value) if isinstance(choice, enum.Enum) else str(choice)


def _is_type(hint: Any, base: type | tuple[type, ...]) -> bool:
    """Whether ``hint`` (bare or parametrised, as ``dict[str, float]``) is a subclass of ``base``."""
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and issubclass(origin, base)


def _is_json(hint: Any) -> bool:
    """Mappings and dataclasses (e.g. ``MaskingConfig``, whose keywords a dict gives) are given as JSON."""
    return _is_type(hint, Mapping) or (isinstance(hint, type) and dataclasses.is_dataclass(hint))


def _is_list(hint: Any) -> bool:
    return _is_type(hint, Sequence) and not _is_type(hint, (str, tuple))


def _float_tuple(hint: Any) -> bool:
    """``tuple[float, float]`` or ``tuple[float, ...]``."""
    items = [item for item in typing.get_args(hint) if item is not Ellipsis]
    return _is_type(hint, tuple) and bool(items) and all(item is float for item in items)


def _spec_of(hint: Any, default: Any, where: str) -> dict[str, Any]:
    """Argparse keywords for a keyword with type hint ``hint`` and Python default ``default``.

    Members of a union the command line cannot spell (arrays, models, devices) are left to the Python API;
    the option takes the others. Precedence in a union: choices, JSON, tuple of numbers, list, path, scalars.
    """
    members, optional = union_members(hint)
    literals = [
        value for member in members if typing.get_origin(member) is typing.Literal for value in typing.get_args(member)
    ]
    enums = [member for member in members if _is_type(member, enum.Enum)]
    spec: dict[str, Any] = {}
    if members and all(member is bool for member in members):
        spec["action"] = argparse.BooleanOptionalAction
        return spec
    if enums and not literals and len(enums) == 1:
        spec["type"], spec["choices"] = _member_of(enums[0]), list(enums[0])
        spec["metavar"] = "{" + ",".join(map(_choice_text, enums[0])) + "}"
    elif literals and not enums:
        kinds = {type(value) for value in literals}
        spec["choices"], spec["type"] = literals, kinds.pop() if len(kinds) == 1 else str
    elif any(_is_json(member) for member in members):
        spec["type"], spec["metavar"] = _json_value, "JSON"
    elif any(_float_tuple(member) for member in members):
        spec["type"], spec["metavar"] = _tuple_of_floats, "W,H"
    elif any(_is_list(member) for member in members):
        inner = typing.get_args(next(member for member in members if _is_list(member))) or (str,)
        if inner[0] not in _SCALARS:
            raise HintError(f"{where}: no command-line form for a list of {inner[0]!r} (hint {hint!r}).")
        spec["type"], spec["action"], spec["nargs"] = _list_of(inner[0], inner[0].__name__), _Items, "+"
    elif any(_is_type(member, os.PathLike) for member in members):
        spec["type"], spec["metavar"] = str, "PATH"
    else:
        scalars = [scalar for scalar in _SCALARS if scalar in members]
        if not scalars:
            raise HintError(
                f"{where}: no command-line form for the type hint {hint!r}; list the keyword in the command's "
                "skip with a reason, or give it an override."
            )
        spec["type"] = _first_of(scalars)
    if optional:
        # None is allowed (as the default or besides it): take the word "none", as the help says.
        spec["type"] = _none_or(spec["type"], getattr(spec["type"], "__name__", "value") + " or none")
        if "choices" in spec:
            spec["metavar"] = "{" + ",".join([*map(_choice_text, spec["choices"]), "none"]) + "}"
            spec["choices"] = [*spec["choices"], None]
    return spec


def option_spec(function: Callable, name: str) -> dict[str, Any]:
    """Argparse keywords (``type``, ``action``, ``choices``, ``metavar``) for keyword ``name`` of ``function``.

    Read from the resolved type hint (:func:`._hints.type_hint`), never from the annotation's text.

    Raises
    ------
    HintError
        When the hint cannot be resolved or the command line has no form for it.
    """
    parameter = inspect.signature(function).parameters[name]
    where = f"{function.__module__}.{function.__qualname__}({name})"
    return _spec_of(type_hint(function, name), parameter.default, where)


def add_function_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    function: Callable,
    *,
    skip: Mapping[str, str],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    dest_prefix: str = "",
) -> list[str]:
    """Add ``--option`` for every parameter of ``function`` not in :data:`SHARED` or ``skip``.

    A parameter without a default becomes a required option. ``overrides`` replaces the generated
    argparse keywords of a parameter (e.g. a gene list read from a file). Returns the parameter
    names added (the argparse ``dest`` is ``dest_prefix + name``).
    """
    texts = docstring_parameters(function)
    parameters = inspect.signature(function).parameters
    names = {name: option_name(name, function) for name in parameters if name not in SHARED and name not in skip}
    added = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        if name in SHARED or name in skip:
            continue
        spec = dict(overrides[name]) if overrides and name in overrides else option_spec(function, name)
        required = parameter.default is inspect.Parameter.empty
        shown, hidden = option_names(name, function)
        is_flag = spec.get("action") is argparse.BooleanOptionalAction
        help_text = shell_help(spec.pop("help", None) or texts.get(name, ""), name, function=function,
                               options=names, flag=is_flag)  # fmt: skip
        if spec.get("action") is _Items:
            help_text += " [several values: space- or comma-separated, or @FILE with one per line]"
        if not required and parameter.default is not None and not re.search(r"\bdefault\b", help_text.lower()):
            help_text += f" (default: {default_text(parameter.default, shown if is_flag else None)})"
        if spec.get("action") in (None, _Items) and "choices" not in spec:
            spec.setdefault("metavar", shown[2:].replace("-", "_").upper())
        common = {"dest": dest_prefix + name, "default": argparse.SUPPRESS if not required else None, **spec}
        parser.add_argument(shown, required=required, help=help_text.replace("%", "%%"), **common)
        for alias in hidden:  # the former spelling: accepted, not shown
            parser.add_argument(alias, help=argparse.SUPPRESS, **common)
        added.append(name)
    return added


#: The spec of a keyword taking labels or ``True`` (``perturb-niche --remove L4,cc`` or ``--remove all``).
LABELS_OR_ALL: dict[str, Any] = {
    "type": _list_of(str, "labels"),
    "action": _LabelsOrAll,
    "nargs": "+",
    "metavar": "LABEL",
}
