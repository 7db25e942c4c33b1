"""The one progress helper of every long loop: a bar for people, a few log lines for workflow engines.

On an interactive terminal or in Jupyter (and with ``oc.settings.progress_bar``) it draws a tqdm bar.
Elsewhere (a Galaxy or Nextflow job, a pipe, a file) it writes an INFO line through the ``omnicell``
logger when another tenth of the work is done or 30 seconds have passed, and one when the work ends,
so a log holds a dozen lines rather than one per update: units done of the total, time and rate. The lines
show at ``oc.settings.verbosity = "info"`` (or ``OMNICELL_VERBOSITY=INFO``), on stderr unless the
application configured logging (see :mod:`omnicell._core.log`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from omnicell._core.log import get_logger
from omnicell._core.settings import settings

__all__ = ["Progress", "interactive", "progress"]

#: A log line at most every this share of the work ...
LOG_STEP = 0.1
#: ... or every this many seconds.
LOG_SECONDS = 30.0


def _in_jupyter() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except AttributeError:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def interactive() -> bool:
    """Whether a person watches: Jupyter, or standard error is a terminal."""
    if _in_jupyter():
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def _bar(total: int | None, initial: int, desc: str, unit: str) -> Any:
    """A tqdm bar: a widget in Jupyter when ipywidgets is installed, text otherwise (never a warning)."""
    if _in_jupyter():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm
        except ImportError:
            from tqdm.std import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)


class Progress:
    """Progress over ``total`` units, tqdm-like.

    It has :meth:`update`, :meth:`set_postfix` and :meth:`close`, is a context manager, and is
    iterable when made over an iterable.
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "omnicell",
        unit: str = "it",
        initial: int = 0,
        disable: bool = False,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self._logged_n = self._initial = int(initial)
        self._started = self._logged_at = time.monotonic()
        self._postfix = ""
        self._closed = False
        self._silent = disable
        self._bar = (
            _bar(total, int(initial), desc, unit) if not disable and settings.progress_bar and interactive() else None
        )
        self._logger = get_logger()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("Progress was made without an iterable; call update() instead.")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def set_postfix(self, *, refresh: bool = True, **values: Any) -> None:
        """Extra fields (a loss, a rate) shown on the bar and in the log lines."""
        self._postfix = ", ".join(f"{key}={value}" for key, value in values.items())
        if self._bar is not None:
            self._bar.set_postfix(refresh=refresh, **values)

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if self._bar is not None:
            self._bar.update(n)
            return
        if self._silent:
            return
        now = time.monotonic()
        step = LOG_STEP * self.total if self.total else float("inf")
        if self.n - self._logged_n >= step or now - self._logged_at >= LOG_SECONDS:
            self._log(now)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif not self._silent and self.n != self._logged_n:
            self._log(time.monotonic())

    def _log(self, now: float) -> None:
        self._logged_n, self._logged_at = self.n, now
        elapsed = now - self._started
        if self.total:
            share = f"{self.n:,}/{self.total:,} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            share = f"{self.n:,} {self.unit}"
        done = self.n - self._initial
        rate = f", {done / elapsed:,.1f} {self.unit}/s" if elapsed > 0 and done > 0 else ""
        postfix = f", {self._postfix}" if self._postfix else ""
        self._logger.info("%s: %s in %.1f s%s%s", self.desc, share, elapsed, rate, postfix)


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "omnicell",
    unit: str = "it",
    initial: int = 0,
    disable: bool = False,
) -> Progress:
    """Progress over ``iterable`` or ``total`` units (see :class:`Progress`); ``disable`` silences it."""
    return Progress(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable)
