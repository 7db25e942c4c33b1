"""Exit statuses and the one-line error messages a workflow engine shows."""

from __future__ import annotations

import sys
import traceback

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "report"]

#: Success.
EXIT_OK = 0
#: Bad input or option: a missing, unreadable or malformed file, a wrong value, data the tool cannot use.
EXIT_BAD_INPUT = 1
#: Usage error found by argparse (unknown option, missing argument); argparse prints the usage.
EXIT_USAGE = 2
#: Internal error (a bug): please report it with the traceback of ``--verbose``.
EXIT_INTERNAL = 3
#: Interrupted (Ctrl-C); outputs in progress are removed.
EXIT_INTERRUPTED = 130

#: Exceptions that mean "the input or an option is wrong" (the library raises these with a message that
#: says what to do).
_BAD_INPUT = (ValueError, KeyError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
              PermissionError, FileExistsError, ImportError, OSError)  # fmt: skip


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
        print(f"omnicell: error: {_first_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    hint = "" if debug else " (rerun with --verbose or OMNICELL_DEBUG=1 for the traceback)"
    print(
        f"omnicell: error: internal error, please report it: {type(error).__name__}: {_first_line(error)}{hint}",
        file=sys.stderr,
    )
    return EXIT_INTERNAL
