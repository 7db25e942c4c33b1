"""The ``omnicell`` command: h5ad in, h5ad out, for shells, Galaxy tools and nf-core modules.

``omnicell <command> INPUT -o OUTPUT [options]``: one command per tool of ``oc.tl`` (options generated
from the tool's keywords: ``key_added`` -> ``--key-added``), ``plot FIGURE``, ``merge`` for the shards of
``embed --shard I/N``, ``models``, ``pretrain`` and ``demo``. The input is never modified; outputs are
written atomically. Exit status: 0 success, 1 bad input or option (one line ``omnicell: error: ...`` on
standard error), 2 usage error (argparse), 3 internal error (a bug: rerun with ``--verbose`` or
``OMNICELL_DEBUG=1`` for the traceback).

Examples
--------
omnicell embed cells.h5ad -o embedded.h5ad --model omnicell-v1
omnicell embed section.h5ad -o out.h5ad --model ./checkpoint --spatial --n-neighbors 9
omnicell embed big.h5ad -o part1.h5ad --shard 1/4; omnicell merge part*.h5ad -o embedded.h5ad
omnicell marker-genes embedded.h5ad -o markers.h5ad --groupby cell_type --table markers.tsv
omnicell plot markers markers.h5ad -o markers.png --groupby cell_type
omnicell models download omnicell-v1
torchrun --nproc-per-node 4 -m omnicell pretrain recipe.yaml
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence

from omnicell.cli._errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, report
from omnicell.cli._parser import build_parser

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


@contextlib.contextmanager
def _command_logging(args: argparse.Namespace) -> Iterator[None]:
    """While the command runs, one handler on the ``omnicell`` logger.

    INFO lines (progress, what was written) go to standard error unless --quiet; the logger is
    restored afterwards, as main() may run in-process (tests, the docs build).
    """
    from omnicell._core.log import get_logger

    logger = get_logger()
    saved = (logger.level, logger.propagate, warnings.formatwarning)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("omnicell: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    warnings.formatwarning = _one_line_warning
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate, warnings.formatwarning = saved


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one log-like line (no source file and line) for engine logs."""
    text = " ".join(str(message).split())
    return f"omnicell: warning: {text}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    parser = build_parser(lazy=True)  # a command's options are built when it is parsed: --help imports no torch
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0) or a usage error (2)
        return int(exit_.code or 0)
    debug = bool(getattr(args, "verbose", False) or os.environ.get("OMNICELL_DEBUG"))
    from omnicell._core.settings import settings

    saved = (settings.progress_bar, settings.device, settings.seed)
    with _command_logging(args):
        try:
            if getattr(args, "quiet", False):
                settings.progress_bar = False
            args.run(args)
        except BaseException as error:  # every failure becomes one line and an exit status
            if isinstance(error, SystemExit):
                raise
            return report(error, debug=debug)
        finally:
            settings.progress_bar, settings.device, settings.seed = saved
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
