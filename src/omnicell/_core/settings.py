"""Package-wide settings, ``oc.settings``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omnicell._core.log import get_logger

__all__ = ["ATTENTION_BACKENDS", "OmnicellSettings", "settings"]

_DEVICES = ("auto", "cpu", "cuda", "mps")

#: Attention kernels the network can use (:mod:`omnicell.nn`); here so the setting can be checked without torch.
ATTENTION_BACKENDS = ("auto", "sdpa", "flash_attn", "eager", "triton")


class OmnicellSettings:
    """Settings shared by all omnicell functions.

    Attributes
    ----------
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) or ``"mps"``.
    batch_size
        Cells per forward pass when a function is not given one. Until it is set, CUDA runs choose
        the batch size from the free device memory instead (CPU runs use 32).
    attention_backend
        Attention kernel: ``"auto"``, ``"sdpa"``, ``"flash_attn"``, ``"eager"`` or ``"triton"``
        (see :mod:`omnicell.nn._attention`; ``"auto"`` is triton on CUDA when installed, else SDPA).
    num_workers
        DataLoader worker processes that tokenise batches while the model runs (0: in the main
        process, the default; results are the same for any number).
    cache_dir
        Where downloaded checkpoints are kept; the environment variable ``OMNICELL_CACHE_DIR``
        sets the default (else ``~/.cache/omnicell``, following pooch's OS cache).
    default_model
        Registry name or path of the model used when a function is given ``model=None``:
        ``"omnicell-tiny"`` (shipped with the package, no download) unless the environment
        variable ``OMNICELL_DEFAULT_MODEL`` names another (e.g. ``"omnicell-v1"``).
    seed
        Random seed of stochastic steps.
    progress_bar
        Show progress bars on long work (only on an interactive terminal or in Jupyter; elsewhere
        progress goes to the log, a line every tenth of the work or 30 s).
    verbosity
        Level of the ``omnicell`` logger (a :mod:`logging` level name or number). None (default,
        unless the environment variable ``OMNICELL_VERBOSITY`` names a level) follows scanpy's
        ``sc.settings.verbosity`` when scanpy is imported, else WARNING. At ``"info"`` long steps
        (``embed_cells``, ``embed_genes``, training) log progress lines where no bar is drawn (a script,
        a pipe, a workflow's log): written to stderr unless the application configured :mod:`logging`.
    """

    def __init__(self) -> None:
        self._device = "auto"
        self._batch_size = 32
        self._batch_size_set = False  # on CUDA an unset batch size is chosen from free memory
        self._attention_backend = "auto"
        self._num_workers = 0
        self._cache_dir: Path | None = None
        self.default_model = os.environ.get("OMNICELL_DEFAULT_MODEL", "omnicell-tiny")
        self.seed = 0
        self.progress_bar = True
        self.verbosity = os.environ.get("OMNICELL_VERBOSITY") or None

    @property
    def device(self) -> str:
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        if value.split(":")[0] not in _DEVICES:
            raise ValueError(f"device must be one of {', '.join(_DEVICES)} (or 'cuda:N'), got {value!r}.")
        self._device = value

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {value!r}.")
        self._batch_size = int(value)
        self._batch_size_set = True

    @property
    def attention_backend(self) -> str:
        return self._attention_backend

    @attention_backend.setter
    def attention_backend(self, value: str) -> None:
        if value not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {', '.join(ATTENTION_BACKENDS)}, got {value!r}.")
        self._attention_backend = value

    @property
    def num_workers(self) -> int:
        return self._num_workers

    @num_workers.setter
    def num_workers(self, value: int) -> None:
        if int(value) < 0:
            raise ValueError(f"num_workers must be 0 or more, got {value!r}.")
        self._num_workers = int(value)

    @property
    def cache_dir(self) -> Path:
        if self._cache_dir is not None:
            return self._cache_dir
        env = os.environ.get("OMNICELL_CACHE_DIR")
        if env:
            return Path(env).expanduser()
        import pooch

        return Path(pooch.os_cache("omnicell"))

    @cache_dir.setter
    def cache_dir(self, value: str | os.PathLike | None) -> None:
        self._cache_dir = None if value is None else Path(value).expanduser()

    @property
    def verbosity(self) -> int:
        """The effective level of the ``omnicell`` logger."""
        return get_logger().getEffectiveLevel()

    @verbosity.setter
    def verbosity(self, value: int | str | None) -> None:
        if value is None:  # follow scanpy again
            get_logger().setLevel(logging.NOTSET)
            return
        level = logging.getLevelName(value.upper()) if isinstance(value, str) else int(value)
        if not isinstance(level, int):
            raise ValueError(f"Unknown verbosity {value!r}; use a logging level such as 'INFO'.")
        get_logger().setLevel(level)

    def __repr__(self) -> str:
        fields = ("device", "batch_size", "attention_backend", "cache_dir", "default_model", "seed", "progress_bar")
        return "OmnicellSettings(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"


settings = OmnicellSettings()
