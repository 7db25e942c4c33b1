"""Command-line options generated from a function's signature and numpydoc docstring.

Every keyword of a tool becomes ``--the-keyword`` (underscores to dashes) with a type read from its
annotation and the help text of its docstring entry, so the command line and the Python API cannot
drift apart. Keywords the command line provides in another way (the input file, ``--model``, ``--device``
...) are listed in :data:`SHARED`; keywords a command cannot offer are listed with a reason per command.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["SHARED", "add_function_options", "docstring_parameters", "option_name"]

#: Keywords every command handles the same way (not generated per tool), with the reason.
SHARED: dict[str, str] = {
    "adata": "the INPUT file (.h5ad, or .h5mu with --mod)",
    "model": "the common --model option",
    "device": "the common --device option",
    "seed": "the common --seed option",
    "mod": "the common --mod option (modality of an .h5mu input)",
    "copy": "the command always writes a new file and never modifies its input",
    "reference": "the common --reference FILE option (an .h5ad)",
    "ax": "plot draws a whole figure into the -o file",
    "show": "plot writes the -o file and shows nothing",
    "save": "plot writes the -o file (PNG, PDF or SVG by suffix)",
}

_SECTION = re.compile(r"^(?P<title>[A-Z][A-Za-z ]+)\n-{3,}\n", re.MULTILINE)


def option_name(parameter: str) -> str:
    """``n_genes`` -> ``--n-genes``."""
    return "--" + parameter.replace("_", "-")


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


def _rst_to_text(text: str) -> str:
    """Readable help text: roles and double backquotes dropped, ``%`` escaped for argparse."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    text = text.replace("``", "'").replace("%", "%%")
    return text


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
    """A list option: several values (``--rates 0.1 0.5``), comma-separated (``0.1,0.5``) or ``@FILE``, flattened."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, [item for value in values for item in value])


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f'expected JSON (e.g. true, false or {{"key": 1}}): {error.msg}') from None


def _tuple_of_floats(text: str) -> tuple[float, ...]:
    return tuple(float(item) for item in _split(text))


_json_value.__name__ = "JSON"
_tuple_of_floats.__name__ = "comma-separated numbers"

_SCALARS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def _choices(annotation: str) -> list[str] | None:
    match = re.search(r"Literal\[([^\]]*)\]", annotation)
    if match:
        return [item.strip().strip("'\"") for item in match.group(1).split(",")]
    if annotation.strip() == "Precision":
        return ["auto", "float32", "bfloat16", "float16"]
    return None


def option_spec(parameter: inspect.Parameter) -> dict[str, Any]:
    """Argparse keywords (``type``, ``action``, ``choices``, ``metavar``) for one parameter."""
    annotation = parameter.annotation if isinstance(parameter.annotation, str) else str(parameter.annotation)
    annotation = annotation.replace("typing.", "")
    optional = "None" in annotation
    default = parameter.default
    spec: dict[str, Any] = {}
    choices = _choices(annotation)
    parts = {part.strip() for part in annotation.split("|")} - {"None"}
    if parts == {"bool"}:
        spec["action"] = argparse.BooleanOptionalAction
        return spec
    if choices is not None:
        spec["choices"] = choices
        spec["type"] = str
    elif "Mapping" in annotation or "dict" in annotation or "MaskingConfig" in annotation:
        spec["type"], spec["metavar"] = _json_value, "JSON"
    elif annotation.startswith("tuple[float"):
        spec["type"], spec["metavar"] = _tuple_of_floats, "W,H"
    elif annotation.startswith("Sequence["):
        inner = annotation[len("Sequence[") :].split("]")[0]
        convert = _SCALARS.get(inner, str)
        spec["type"], spec["action"], spec["nargs"] = _list_of(convert, inner), _Items, "+"
    elif "PathLike" in annotation:
        spec["type"], spec["metavar"] = str, "PATH"
    else:
        for name, convert in _SCALARS.items():
            if name in parts or any(part.startswith(name) for part in parts):
                spec["type"] = convert
                break
        else:
            spec["type"] = str
    if optional and default is not None and default is not inspect.Parameter.empty:
        # The Python default is a value, but None is allowed too: take the word "none".
        spec["type"] = _none_or(spec["type"], getattr(spec["type"], "__name__", "value"))
    return spec


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
    added = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        if name in SHARED or name in skip:
            continue
        spec = dict(overrides.get(name, {})) if overrides and name in overrides else option_spec(parameter)
        required = parameter.default is inspect.Parameter.empty
        help_text = _rst_to_text(spec.pop("help", None) or texts.get(name, ""))
        if spec.get("action") is _Items:
            help_text += " [several values: space- or comma-separated, or @FILE with one per line]"
        if not required and parameter.default is not None:
            default = parameter.default
            shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default
            help_text += f" (default: {shown})"
        if spec.get("action") in (None, _Items) and "choices" not in spec:
            spec.setdefault("metavar", name.upper())
        parser.add_argument(
            option_name(name),
            dest=dest_prefix + name,
            required=required,
            default=argparse.SUPPRESS if not required else None,
            help=help_text,
            **spec,
        )
        added.append(name)
    return added
