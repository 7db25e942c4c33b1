"""Finding a dataset file: a local folder first, then the download cache (pooch, hash-checked)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

from omnicell._core.settings import settings

logger = logging.getLogger("omnicell")

DATA_DIR_ENV = "OMNICELL_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class DataFile:
    """A file the datasets are read from: where it is published and its sha256."""

    name: str
    url: str
    sha256: str


def fetch(file: DataFile, *, folder: str | os.PathLike | None = None) -> Path:
    """Return the path of a local, intact copy of ``file``.

    Looked for, in order: in ``folder`` (when given, only there), in the folder named by the environment
    variable ``OMNICELL_DATA_DIR``, in ``oc.settings.cache_dir / "datasets"``; else downloaded there once.
    """
    if folder is not None:
        path = Path(folder).expanduser() / file.name
        if not path.is_file():
            raise FileNotFoundError(
                f"{file.name} is not in {Path(folder).expanduser()}. Place the file there "
                f"(download it from {file.url}, sha256 {file.sha256}) or call without folder= to download it."
            )
        return _checked(path, file)
    env = os.environ.get(DATA_DIR_ENV)
    if env and (Path(env).expanduser() / file.name).is_file():
        return _checked(Path(env).expanduser() / file.name, file)
    return _download(file, env)


def cache_folder() -> Path:
    """Where downloaded dataset files are kept: ``oc.settings.cache_dir / "datasets"``."""
    return settings.cache_dir / "datasets"


def _checked(path: Path, file: DataFile) -> Path:
    digest = _sha256(path)
    if digest != file.sha256:
        raise OSError(
            f"{path} does not match the sha256 of {file.name} ({digest} instead of {file.sha256}): "
            f"replace it with the file from {file.url}."
        )
    logger.info("Reading %s", path)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(file: DataFile, env: str | None) -> Path:
    import pooch

    target = cache_folder()
    try:
        target.mkdir(parents=True, exist_ok=True)
        path = pooch.retrieve(
            file.url,
            known_hash=f"sha256:{file.sha256}",
            fname=file.name,
            path=target,
            progressbar=settings.progress_bar,
        )
    except ValueError as error:  # pooch's hash mismatch (the partial download is removed by pooch)
        raise OSError(f"Downloaded {file.name} does not match its sha256 ({error}).") from None
    except Exception as error:
        where = f"{DATA_DIR_ENV} is set to {env}, which does not hold it" if env else f"{DATA_DIR_ENV} is not set"
        raise OSError(
            f"Could not download {file.name} from {file.url} ({type(error).__name__}: {error}); {where}. "
            f"Without network access, place {file.name} (sha256 {file.sha256}) in a folder and set "
            f"{DATA_DIR_ENV} to it (or pass folder=), or place it in the cache folder {target}."
        ) from None
    return Path(path)
