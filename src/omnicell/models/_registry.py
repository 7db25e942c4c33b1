"""The registry of named models: those shipped with the package and those downloaded once (pooch, hash-checked, cached).

It knows names, files and where they live; `_model.py` reads and writes the folders.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from omnicell._core.settings import settings

__all__ = ["ModelSpec", "available", "bundled_folder", "download", "register"]

OFFICIAL_CONFIG, OFFICIAL_WEIGHTS = "LMConfig.json", "backbone.pth"
OFFICIAL_VOCABS = ("Vocabulary.json", "vocab.json")
OWN_CONFIG, OWN_WEIGHTS, OWN_VOCAB, OWN_CARD = "config.json", "model.safetensors", "vocab.json", "MODEL_CARD.md"
FORMAT_VERSION = "1"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A downloadable checkpoint.

    Attributes
    ----------
    name
        Registry name, also the cache sub-folder.
    description
        One line shown by :func:`available`.
    files
        ``{file name: (url, sha256)}``; the folder they form is loaded like a local folder.
    """

    name: str
    description: str
    files: dict[str, tuple[str, str]]


_OFFICIAL_CODE = (
    "https://raw.githubusercontent.com/BGIResearch/omnicell/fc2d818d1d78345f0c7ccf686f34caff5bbd846a/OmniCell/vocab"
)
_OFFICIAL_WEIGHTS = "https://modelscope.cn/api/v1/models/PJSucas/OmniCell-v1/repo?Revision=9a33a49daa919237189909e4d9ba48117f3ca12f&FilePath="

_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> None:
    """Add a downloadable checkpoint (e.g. an institutional mirror) to the registry."""
    _REGISTRY[spec.name] = spec


#: Models shipped inside the package (``omnicell/models/bundled/NAME/``, omnicell's format): no download.
_BUNDLED: dict[str, str] = {
    "omnicell-tiny": "Small default model shipped with omnicell (4 layers, d=64, ~1.1M parameters, ~13.3k human "
    "genes; PBMC + STARmap, CPU-trained); see its MODEL_CARD.md",
}


def bundled_folder(name: str) -> Path:
    """Folder of a model shipped inside the package."""
    import importlib.resources

    if name not in _BUNDLED:
        raise KeyError(f"No bundled model {name!r}; bundled: {', '.join(_BUNDLED)}.")
    return Path(str(importlib.resources.files("omnicell").joinpath("models", "bundled", name)))


register(
    ModelSpec(
        name="omnicell-v1",
        description=(
            "Released OmniCell (BGI Research, MIT): 10 layers, d=512, 73.5M parameters, human Ensembl vocabulary"
        ),
        files={
            "LMConfig.json": (
                _OFFICIAL_WEIGHTS + "LMConfig.json",
                "bb4fd00c29d8764058d986dbe3d2c2b036f1c3d0df91d661c63de71c2ea49322",
            ),
            "backbone.pth": (
                _OFFICIAL_WEIGHTS + "backbone.pth",
                "12497eb1dc76985ca3bcd88845a6b6edb7fcfdbb6c6df43d3da56645d922c0c7",
            ),
            "Vocabulary.json": (
                f"{_OFFICIAL_CODE}/Vocabulary.json",
                "9a2f2077702302eeaccf4ce348bb731ee9064ce29e6b50315c7f4f88f1374cd9",
            ),
            "new_genes_homo_sapiens.csv": (
                f"{_OFFICIAL_CODE}/new_genes_homo_sapiens.csv",
                "72e8b5e72544308611ef306c43e7afa2e31c4af170b24262ed7c8bb0a65616ea",
            ),
        },
    )
)


def available() -> pd.DataFrame:
    """Registered checkpoints with a description and whether they are in the local cache."""
    rows = []
    for name, description in _BUNDLED.items():
        folder = bundled_folder(name)
        cached = (folder / OWN_WEIGHTS).exists()
        rows.append({"name": name, "description": description, "cached": cached, "folder": str(folder)})
    for spec in _REGISTRY.values():
        folder = settings.cache_dir / spec.name
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "cached": all((folder / name).exists() for name in spec.files),
                "folder": str(folder),
            }
        )
    return pd.DataFrame(rows).set_index("name")


def download(name: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch a registered checkpoint into the cache (no-op when present and intact); return its folder.

    Every file is checked against its sha256. Offline, the error lists which files to place where.
    """
    import pooch

    from omnicell._core.progress import interactive

    if name in _BUNDLED:
        return bundled_folder(name)  # shipped inside the package: nothing to fetch
    spec = _spec(name)
    folder = Path(cache_dir) if cache_dir is not None else settings.cache_dir / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, (url, sha256) in spec.files.items():
        try:
            pooch.retrieve(
                url,
                known_hash=f"sha256:{sha256}",
                fname=filename,
                path=folder,
                progressbar=settings.progress_bar and interactive(),  # no bar lines in an engine's log
            )
        except ValueError as error:  # pooch's hash mismatch
            raise OSError(f"Downloaded {filename} for {name!r} does not match its sha256 ({error}).") from None
        except Exception as error:
            listing = "\n".join(f"  {f}  (sha256 {h})  from {u}" for f, (u, h) in spec.files.items())
            raise OSError(
                f"Could not download {filename} for model {name!r} ({type(error).__name__}: {error}). "
                f"Without network access, place these files in {folder} (or set OMNICELL_CACHE_DIR):\n{listing}"
            ) from None
    return folder


def _spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise KeyError(f"Unknown model {name!r}; registered: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]
