"""The ``omnicell`` command: h5ad in, h5ad out, for shells, Galaxy tools and nf-core modules.

``omnicell <command> INPUT -o OUTPUT [options]``: one command per tool of ``oc.tl`` (options generated
from the tool's keywords: ``n_genes`` -> ``--n-genes``), ``plot FIGURE``, ``merge`` for the shards of
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
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from ._errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, report
from ._parser import build_parser

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


def _setup_logging(args: argparse.Namespace) -> None:
    """One handler on the ``omnicell`` logger: INFO lines (progress, what was written) unless --quiet."""
    from .._logging import get_logger

    logger = get_logger()
    for handler in list(logger.handlers):
        if getattr(handler, "_omnicell_cli", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("omnicell: %(message)s"))
    handler._omnicell_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings as one log-like line (no source file and line) for engine logs."""
    text = " ".join(str(message).split())
    return f"omnicell: warning: {text}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version (0) or a usage error (2)
        return int(exit_.code or 0)
    debug = bool(getattr(args, "verbose", False) or os.environ.get("OMNICELL_DEBUG"))
    from .. import settings

    saved = (settings.progress_bar, settings.device, settings.seed, warnings.formatwarning)
    _setup_logging(args)
    warnings.formatwarning = _one_line_warning
    try:
        if getattr(args, "quiet", False):
            settings.progress_bar = False
        args.run(args)
    except BaseException as error:
        if isinstance(error, SystemExit):
            raise
        return report(error, debug=debug)
    finally:
        settings.progress_bar, settings.device, settings.seed, warnings.formatwarning = saved
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
