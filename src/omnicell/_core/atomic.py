"""Atomic output files and folders: written beside their target under a hidden name, then renamed.

A failure, Ctrl-C (SIGINT) or a ``kill`` (SIGTERM) while writing leaves neither a partial output
nor the hidden temporary behind. Used by the CLI and by every function that saves to disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_output"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_lock = threading.Lock()
_pending: dict[int, Path] = {}  # id of the open atomic_output -> its temporary path
_previous: dict[int, object] = {}  # signal number -> the handler ours replaced
_counter = 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _on_signal(signum: int, frame) -> None:
    """Remove every pending temporary, then behave as the handler we replaced would have."""
    for path in list(_pending.values()):
        _remove(path)
    _pending.clear()
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # e.g. Python's default SIGINT handler: KeyboardInterrupt
    elif previous != signal.SIG_IGN:
        # The default action (terminate): restore it and deliver the signal again, so the exit
        # status still says "killed by SIGTERM".
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install() -> None:
    # Signal handlers can only be set from the main thread; elsewhere the try/except below still
    # cleans up on exceptions (KeyboardInterrupt is raised in the main thread anyway).
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _SIGNALS:
        current = signal.getsignal(signum)
        if current is not _on_signal:
            _previous[signum] = current
            signal.signal(signum, _on_signal)


def _uninstall() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _SIGNALS:
        if signal.getsignal(signum) is _on_signal and signum in _previous:
            signal.signal(signum, _previous.pop(signum))


def _chmod_default(path: Path, *, directory: bool) -> None:
    umask = os.umask(0)
    os.umask(umask)
    if path.exists():
        path.chmod((0o777 if directory else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; on success rename it to ``path``.

    Write the output to the yielded path inside the ``with`` block. When the block completes, the
    temporary replaces ``path`` (an existing file or folder there is replaced). When the block
    raises, or the process receives SIGTERM or SIGINT, the temporary is removed and ``path`` is left
    as it was. The temporary keeps ``path``'s suffix, so writers that choose a format from the
    suffix (matplotlib, anndata) behave as for ``path``.

    Parameters
    ----------
    path
        The final output file (or folder with ``directory=True``). Its parent is created.
    directory
        Yield an empty temporary folder instead of a file path.
    """
    global _counter
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
        os.close(handle)
        temporary = Path(name)
    with _lock:
        _counter += 1
        token = _counter
        if not _pending:
            _install()
        _pending[token] = temporary
    try:
        yield temporary
        # mkstemp/mkdtemp create owner-only entries; give the output the permissions a plain open() would
        _chmod_default(temporary, directory=directory)
        if directory and path.exists():
            # Move the old folder aside first, so there is never a moment without a complete output.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(temporary, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
    finally:
        with _lock:
            _pending.pop(token, None)
            if not _pending:
                _uninstall()
