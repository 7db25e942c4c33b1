"""A loaded model (network, vocabulary, identity) and the folders it is read from and written to.

``oc.models.load`` accepts

- a registry name (``oc.models.available()``), downloaded once into ``oc.settings.cache_dir``, or
  the name of a model shipped inside the package (``omnicell-tiny``), which needs no download;
- a folder in the official format: ``LMConfig.json``, ``backbone.pth`` and ``Vocabulary.json``
  or ``vocab.json``;
- a folder in omnicell's format (written by :func:`convert` or :meth:`OmniCellModel.save`):
  ``config.json``, ``model.safetensors``, ``vocab.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import shutil
import tempfile
from pathlib import Path

import torch

from omnicell._core.settings import settings
from omnicell.data import RELEASED_TOKENIZATION, TOKENIZATION_FILE, ModelTokenization, Vocabulary
from omnicell.models._device import resolve_device
from omnicell.models._registry import (
    _BUNDLED,
    _REGISTRY,
    FORMAT_VERSION,
    OFFICIAL_CONFIG,
    OFFICIAL_VOCABS,
    OFFICIAL_WEIGHTS,
    OWN_CARD,
    OWN_CONFIG,
    OWN_VOCAB,
    OWN_WEIGHTS,
    bundled_folder,
    download,
)
from omnicell.nn import (
    OmniCell,
    OmniCellConfig,
    file_sha256,
    load_state_dict,
    read_official,
    read_safetensors,
    spectral_basis,
    write_safetensors,
)

__all__ = ["OmniCellModel", "convert", "load", "resolve_model"]


class OmniCellModel:
    """A loaded checkpoint: the network, its vocabulary and where it came from.

    Attributes
    ----------
    network
        The :class:`omnicell.nn.OmniCell` module (in eval mode after loading).
    config
        Its :class:`omnicell.nn.OmniCellConfig`.
    vocab
        The token :class:`omnicell.data.Vocabulary`.
    name
        Registry name, or the folder name for local checkpoints.
    sha256
        Hash of the weight file it was loaded from (recorded with every result).
    tokenization
        How the model was trained to read cells (:class:`omnicell.data.ModelTokenization`): the
        defaults of :func:`omnicell.pp.tokenize`. From the folder's ``tokenization.json``, else the
        released code's rule.
    """

    def __init__(
        self,
        network: OmniCell,
        vocab: Vocabulary,
        *,
        name: str,
        sha256: str,
        source: str = "",
        tokenization: ModelTokenization | None = None,
    ) -> None:
        if vocab.max_token_id >= network.config.num_gene:
            raise ValueError(
                f"The vocabulary has token ids up to {vocab.max_token_id} but the model embeds only "
                f"num_gene={network.config.num_gene} tokens: the vocabulary does not belong to this checkpoint."
            )
        self.network = network
        self.vocab = vocab
        self.name = name
        self.sha256 = sha256
        self.source = source
        self.tokenization = tokenization if tokenization is not None else RELEASED_TOKENIZATION
        self._bases: dict[float, torch.Tensor] = {}

    @property
    def config(self) -> OmniCellConfig:
        """The network's configuration."""
        return self.network.config

    @property
    def device(self) -> torch.device:
        """Device holding the weights."""
        return next(self.network.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the weights."""
        return next(self.network.parameters()).dtype

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.network.parameters())

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> OmniCellModel:
        """Move the network in place; returns self."""
        self.network.to(device=device, dtype=dtype)
        return self

    def spectral_basis(self, tau: float) -> torch.Tensor:
        """Projection basis (d, m) keeping a share ``tau`` of the output matrix's spectrum (cached)."""
        if tau not in self._bases:
            self._bases[tau] = spectral_basis(self.network.output.W.detach().float().cpu(), tau)[0]
        return self._bases[tau]

    def identity(self) -> dict[str, str]:
        """Name and checkpoint hash, as recorded in ``uns``."""
        return {"model": self.name, "model_sha256": self.sha256}

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, card: str = "") -> Path:
        """Write the model in omnicell's format (config, safetensors weights, vocabulary, card)."""
        return _write_own(self, Path(path), overwrite=overwrite, extra_card=card)

    def __repr__(self) -> str:
        return (
            f"OmniCellModel(name={self.name!r}, layers={self.config.num_layers}, d_model={self.config.d_model}, "
            f"parameters={self.n_parameters:,}, genes={len(self.vocab.genes):,}, device={self.device})"
        )


def load(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    vocab: str | os.PathLike | Vocabulary | None = None,
    attention_backend: str | None = None,
) -> OmniCellModel:
    """Load a checkpoint by registry name or from a folder.

    Parameters
    ----------
    name_or_path
        A name from :func:`available` or a folder in the official or omnicell format.
    device
        Where to put the weights; None uses ``oc.settings.device`` (``"auto"``: CUDA if present).
    dtype
        Weight dtype; None keeps float32 (inference on CUDA still runs in bf16 autocast).
    vocab
        Vocabulary file or object, overriding the one in the folder.
    attention_backend
        Attention kernel; None uses ``oc.settings.attention_backend``.

    Returns
    -------
    The loaded model in eval mode.
    """
    path = Path(name_or_path).expanduser()
    if str(name_or_path) in _BUNDLED and not path.exists():
        path = bundled_folder(str(name_or_path))
        name = str(name_or_path)
    elif str(name_or_path) in _REGISTRY and not path.exists():
        path = download(str(name_or_path))
        name = str(name_or_path)
    elif path.is_dir():
        name = path.name
    else:
        known = ", ".join([*_BUNDLED, *_REGISTRY]) or "none"
        raise FileNotFoundError(
            f"{name_or_path!s} is neither a checkpoint folder nor a registered model name (known: {known})."
        )
    backend = attention_backend or settings.attention_backend
    if (path / OWN_WEIGHTS).exists():
        model = _read_own(path, backend)
    elif (path / OFFICIAL_WEIGHTS).exists():
        model = _read_official_folder(path, name, backend, vocab)
    else:
        raise FileNotFoundError(
            f"{path} holds no checkpoint: expected {OFFICIAL_CONFIG} + {OFFICIAL_WEIGHTS} + "
            f"{' or '.join(OFFICIAL_VOCABS)} (official format) or "
            f"{OWN_CONFIG} + {OWN_WEIGHTS} + {OWN_VOCAB} (omnicell format)."
        )
    if vocab is not None and (path / OWN_WEIGHTS).exists():
        model = OmniCellModel(
            model.network,
            _as_vocab(vocab),
            name=model.name,
            sha256=model.sha256,
            source=model.source,
            tokenization=model.tokenization,
        )
    model.network.eval()
    return model.to(resolve_device(device), dtype)


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a checkpoint (name or folder, e.g. an official one) in omnicell's own format."""
    model = load(src, device="cpu")
    return _write_own(model, Path(dst), overwrite=overwrite)


@functools.lru_cache(maxsize=2)
def _load_cached(key: str, mtime: float) -> OmniCellModel:
    return load(key)


def resolve_model(model: OmniCellModel | str | os.PathLike | None) -> OmniCellModel:
    """The model object for a ``model=`` argument (None: ``oc.settings.default_model``).

    Names and paths are loaded once and reused while the folder is unchanged.
    """
    if isinstance(model, OmniCellModel):
        return model
    key = str(model if model is not None else settings.default_model)
    path = Path(key).expanduser()
    mtime = path.stat().st_mtime if path.exists() else 0.0
    return _load_cached(key, mtime)


def _as_vocab(vocab: str | os.PathLike | Vocabulary) -> Vocabulary:
    return vocab if isinstance(vocab, Vocabulary) else Vocabulary.from_json(vocab)


def _read_official_folder(
    path: Path, name: str, backend: str, vocab: str | os.PathLike | Vocabulary | None
) -> OmniCellModel:
    if not (path / OFFICIAL_CONFIG).exists():
        raise FileNotFoundError(f"{path} has {OFFICIAL_WEIGHTS} but no {OFFICIAL_CONFIG}.")
    if vocab is None:
        candidates = [path / f for f in OFFICIAL_VOCABS if (path / f).exists()]
        if not candidates:
            raise FileNotFoundError(f"{path} has no vocabulary file ({' or '.join(OFFICIAL_VOCABS)}); pass vocab=PATH.")
        vocab = candidates[0]
    config = OmniCellConfig.from_json(path / OFFICIAL_CONFIG)
    network = OmniCell(config, attention_backend=backend)
    load_state_dict(network, read_official(path / OFFICIAL_WEIGHTS), source=str(path / OFFICIAL_WEIGHTS))
    return OmniCellModel(
        network, _as_vocab(vocab), name=name, sha256=file_sha256(path / OFFICIAL_WEIGHTS), source=str(path)
    )


def _read_own(path: Path, backend: str) -> OmniCellModel:
    from safetensors import safe_open

    for required in (OWN_CONFIG, OWN_VOCAB):
        if not (path / required).exists():
            raise FileNotFoundError(f"{path} has {OWN_WEIGHTS} but no {required}.")
    config = OmniCellConfig.from_json(path / OWN_CONFIG)
    network = OmniCell(config, attention_backend=backend)
    weights = path / OWN_WEIGHTS
    try:
        state = read_safetensors(weights)
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own SafetensorError (header, truncation)
        raise OSError(
            f"{weights} could not be read ({type(error).__name__}: {error}); the file is truncated or corrupt. "
            "Download or convert the model again (oc.models.download / oc.models.convert), or copy the folder anew."
        ) from None
    load_state_dict(network, state, source=str(weights))
    tokenization_file = path / TOKENIZATION_FILE
    return OmniCellModel(
        network,
        Vocabulary.from_json(path / OWN_VOCAB),
        name=metadata.get("name", path.name),
        sha256=file_sha256(path / OWN_WEIGHTS),
        source=str(path),
        tokenization=ModelTokenization.from_json(tokenization_file) if tokenization_file.exists() else None,
    )


def _write_own(model: OmniCellModel, dst: Path, *, overwrite: bool, extra_card: str = "") -> Path:
    from omnicell._version import __version__

    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"{dst} exists and is not empty; pass overwrite=True to replace it.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    # Write into a sibling temporary folder and move it in place, so a failure leaves no half model.
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        metadata = {
            "name": model.name,
            "format_version": FORMAT_VERSION,
            "source": model.source,
            "source_sha256": model.sha256,
            "omnicell_version": __version__,
        }
        model.config.to_json(staging / OWN_CONFIG)
        model.vocab.to_json(staging / OWN_VOCAB)
        model.tokenization.to_json(staging / TOKENIZATION_FILE)
        write_safetensors(model.network, staging / OWN_WEIGHTS, metadata=metadata)
        card = [
            f"# {model.name}",
            "",
            "OmniCell checkpoint in omnicell's format (load with `omnicell.models.load(PATH)`).",
            "",
            f"- created: {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}",
            f"- omnicell version: {__version__}",
            f"- converted from: {model.source or 'memory'} (weights sha256 {model.sha256})",
            f"- parameters: {model.n_parameters:,}; layers {model.config.num_layers}, d_model {model.config.d_model}",
            f"- vocabulary: {len(model.vocab.genes):,} genes",
        ]
        if extra_card:
            card += ["", extra_card]
        (staging / OWN_CARD).write_text("\n".join(card) + "\n", encoding="utf-8")
        if dst.exists():
            shutil.rmtree(dst)
        staging.rename(dst)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dst
