"""Exit statuses and the one-line error messages a workflow engine shows.

The library's messages are written for Python users (``pass spatial_key=``, ``run
oc.pp.tokenize(adata, model, spatial=True) first``); :func:`cli_message` translates them at this boundary
into the command line's words (``pass --spatial-key``, ``run omnicell embed --spatial first``), so the
messages are not written twice.
"""

from __future__ import annotations

import re
import sys
import traceback

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "cli_message", "report"]

#: Success.
EXIT_OK = 0
#: Bad input or option: a missing, unreadable or malformed file, a wrong value, data the tool cannot use.
EXIT_BAD_INPUT = 1
#: Usage error found by argparse (unknown option, missing argument): one line, then where the help is.
EXIT_USAGE = 2
#: Internal error (a bug): please report it with the traceback of ``--verbose``.
EXIT_INTERNAL = 3
#: Interrupted (Ctrl-C); outputs in progress are removed.
EXIT_INTERRUPTED = 130

#: Exceptions that mean "the input or an option is wrong" (the library raises these with a message that
#: says what to do).
_BAD_INPUT = (ValueError, KeyError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
              PermissionError, FileExistsError, ImportError, OSError)  # fmt: skip


_CALL = re.compile(r"\b(?:oc|omnicell)\.(tl|pp|pl)\.(\w+)\(([^()]*)\)")
_KEYWORD = re.compile(r"(?<![-\w.\[])([a-z_][a-z0-9_]*)=(?!=)('[^']*'|\"[^\"]*\"|(?:[^\s,;)]*[^\s,;).:])?)")


def _option(keyword: str, value: str) -> str:
    """``spatial_key='x'`` -> ``--spatial-key x``; ``spatial=True`` -> ``--spatial``; ``layer=`` -> ``--layer``."""
    from omnicell.cli._options import option_name

    option = option_name(keyword)
    value = value.strip("'\"")
    if value == "True":
        return option
    if value == "False":
        return "--no-" + option[2:]
    if value in ("", "...") or re.fullmatch(r"[A-Z]+", value):  # a bare keyword, or a placeholder (PATH)
        return option + (" " + value if value and value != "..." else "")
    return f"{option} {'none' if value == 'None' else value}"


def _command_call(match: re.Match) -> str:
    from omnicell.cli._help import _command

    command = _command(match.group(1), match.group(2)) or f"omnicell {match.group(2).replace('_', '-')}"
    options = [_option(*keyword.groups()) for keyword in _KEYWORD.finditer(match.group(3))]
    return " ".join([command, *options])


def _keywords() -> set[str]:
    """Keywords with an option: of the commands' functions already imported, and the common ones.

    A message from the library comes from one of those functions; any other ``name=`` (a URL query, a repr)
    stays as it is.
    """
    import inspect

    from omnicell.cli._commands import _EMBED_TARGETS, FIGURES, TOOLS, resolve
    from omnicell.cli._options import SHARED

    names = set(SHARED) - {"adata", "copy", "ax", "show", "save"}
    targets = [*_EMBED_TARGETS, *(entry.target for entry in (*TOOLS, *FIGURES))]
    for target in targets:
        if callable(target) or f"omnicell.{target.rpartition('.')[0]}" in sys.modules:
            names |= set(inspect.signature(resolve(target)).parameters)
    return names


def cli_message(text: str) -> str:
    """A library message in the command line's words: options, commands, the input file (see module doc)."""
    text = _CALL.sub(_command_call, text)
    if _KEYWORD.search(text):
        known = _keywords()
        text = _KEYWORD.sub(lambda match: _option(*match.groups()) if match.group(1) in known else match.group(0), text)
    text = re.sub(r"\badata\.", "the input's ", text)
    return re.sub(r"\badata\b", "the input", text)


def _first_line(error: BaseException) -> str:
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def report(error: BaseException, *, debug: bool) -> int:
    """Print one line for ``error`` on standard error (the traceback first when ``debug``); the exit status."""
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    if isinstance(error, KeyboardInterrupt):
        print("omnicell: error: interrupted; no output was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if "OutOfMemoryError" in type(error).__name__:
        print(
            f"omnicell: error: out of memory on the device ({_first_line(error)[:120]}); "
            "lower --batch-size or use --device cpu.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if isinstance(error, _BAD_INPUT):
        print(f"omnicell: error: {cli_message(_first_line(error))}", file=sys.stderr)
        for line in getattr(error, "details", ()):  # after the error line, never instead of it
            print(f"omnicell:   {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    hint = "" if debug else " (rerun with --verbose or OMNICELL_DEBUG=1 for the traceback)"
    print(
        f"omnicell: error: internal error, please report it: {type(error).__name__}: {_first_line(error)}{hint}",
        file=sys.stderr,
    )
    return EXIT_INTERNAL
