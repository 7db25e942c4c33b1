"""The ``omnicell`` logger: follows scanpy's verbosity, installs no handler.

Library code logs through ``logging.getLogger("omnicell")``. Its level is, in order:

1. what ``oc.settings.verbosity`` (or the environment variable ``OMNICELL_VERBOSITY``) set;
2. else scanpy's ``sc.settings.verbosity`` when scanpy is imported (``info`` shows omnicell's INFO lines);
3. else the standard default (WARNING, through the root logger).

No handler is installed at import: applications configure logging (the ``omnicell`` command installs a
one-line handler). When no handler is configured anywhere and scanpy is imported, records go to scanpy's
handler, so a notebook that set ``sc.settings.verbosity = "info"`` sees omnicell's lines as it sees scanpy's.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "get_logger", "scanpy_level"]

LOGGER_NAME = "omnicell"


def scanpy_level() -> int | None:
    """The logging level of scanpy's verbosity, or None when scanpy is not imported."""
    scanpy = sys.modules.get("scanpy")
    settings = getattr(scanpy, "settings", None)
    try:
        return int(settings.verbosity.level)
    except (AttributeError, TypeError, ValueError):
        return None


class _OmnicellLogger(logging.Logger):
    """A logger whose unset level follows scanpy's verbosity (looked up on every call: it can change)."""

    def getEffectiveLevel(self) -> int:
        if self.level != logging.NOTSET:
            return self.level
        level = scanpy_level()
        return level if level is not None else super().getEffectiveLevel()

    def isEnabledFor(self, level: int) -> bool:
        if self.disabled or self.manager.disable >= level:
            return False
        return level >= self.getEffectiveLevel()

    def callHandlers(self, record: logging.LogRecord) -> None:
        if not _has_handler(self) and scanpy_level() is not None:
            scanpy_root = getattr(sys.modules["scanpy"].settings, "_root_logger", None)
            if scanpy_root is not None and scanpy_root.handlers:
                record.time_passed, record.deep = None, None  # fields scanpy's formatter reads
                for handler in scanpy_root.handlers:
                    if record.levelno >= handler.level:
                        handler.handle(record)
                return
        super().callHandlers(record)


def _has_handler(logger: logging.Logger) -> bool:
    current: logging.Logger | None = logger
    while current is not None:
        if current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False


def get_logger() -> logging.Logger:
    """The ``omnicell`` logger (created as :class:`_OmnicellLogger` on first use)."""
    existing = logging.Logger.manager.loggerDict.get(LOGGER_NAME)
    if isinstance(existing, logging.Logger):
        return existing
    previous = logging.getLoggerClass()
    logging.setLoggerClass(_OmnicellLogger)
    try:
        return logging.getLogger(LOGGER_NAME)
    finally:
        logging.setLoggerClass(previous)
