"""The ``omnicell`` logger: follows scanpy's verbosity and, as scanpy does, writes to stderr by itself.

Library code logs through ``logging.getLogger("omnicell")``. Its level is, in order:

1. what ``oc.settings.verbosity`` (or the environment variable ``OMNICELL_VERBOSITY``) set;
2. else scanpy's ``sc.settings.verbosity`` when scanpy is imported (``info`` shows omnicell's INFO lines);
3. else the standard default (WARNING, through the root logger).

Where the records go is decided for each record, so that the application's choice always wins:

* the application configured logging (a handler on the ``omnicell`` logger, a parent, or the root logger, as
  ``logging.basicConfig`` or the ``omnicell`` command installs): its handlers, nothing else;
* else, when the level follows scanpy's verbosity and scanpy has its handler: scanpy's handler, so a notebook
  that set ``sc.settings.verbosity = "info"`` sees omnicell's lines as it sees scanpy's;
* else omnicell's own stderr handler (never attached to a logger, so never duplicated), so that
  ``oc.settings.verbosity = "info"`` shows INFO lines in a script, as ``sc.settings.verbosity`` does for scanpy.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "STDERR_HANDLER", "get_logger", "scanpy_level"]

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
        if _has_handler(self):  # the application configured logging
            super().callHandlers(record)
            return
        if self.level == logging.NOTSET and scanpy_level() is not None:
            scanpy_root = getattr(sys.modules["scanpy"].settings, "_root_logger", None)
            if scanpy_root is not None and scanpy_root.handlers:
                record.time_passed, record.deep = None, None  # fields scanpy's formatter reads
                for handler in scanpy_root.handlers:
                    if record.levelno >= handler.level:
                        handler.handle(record)
                return
        STDERR_HANDLER.handle(record)  # the level was checked by the logger: oc.settings.verbosity


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (looked up on each record: pytest and notebooks replace it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


class _Formatter(logging.Formatter):
    """scanpy's style: INFO lines as they are, warnings and errors prefixed with their level."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        return message if record.levelno < logging.WARNING else f"{record.levelname}: {message}"


#: omnicell's own handler, used only where no handler is configured (see the module's docstring).
STDERR_HANDLER = _StderrHandler()
STDERR_HANDLER.setFormatter(_Formatter())


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
