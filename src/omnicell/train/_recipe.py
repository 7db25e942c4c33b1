"""Recipe files for ``omnicell pretrain``: YAML or TOML, one run with one or more stages.

Example (YAML)::

    name: my-model
    output: runs/my-model          # relative to the working directory (or --output)
    seed: 0
    model:
      init: null                   # registry name or checkpoint folder to continue from, or
      vocabulary: data             # "data" (genes of the training files) or a vocab.json path
      vocabulary_min_cells: 3
      config: {d_model: 64, heads: 4, dim: 16, num_layers: 2, hidden_dim: 128}
    optimizer: {lr: 1.0e-3, min_lr: 1.0e-5, warmup_steps: 20}
    batch: {cells_per_step: 32, micro_batch_size: 8}   # activation_checkpointing: true saves memory
    stages:
      - name: spatial
        kind: spatial                # masking: focal expressed 0.3, neighbours 0.05
        steps: 100
        n_genes: 128
        files: [{path: section.h5ad, coord_scale: 0.01}]
      - name: single_cell
        kind: single_cell            # masking: expressed 0.3, zeros 0.1
        steps: 300
        n_genes: 1024
        files: [atlas_part1.h5ad, atlas_part2.h5ad]

Data paths are relative to the recipe file; ``~`` and ``$VARIABLES`` are expanded. Unknown keys
are errors (a typo would otherwise silently train something else).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from omnicell.train._masking import STAGE_KINDS, MaskingConfig
from omnicell.train._trainer import OptimizerConfig

__all__ = ["DataFileSpec", "ModelSection", "Recipe", "StageSpec", "read_recipe"]


def _expand(path: str | os.PathLike, base: Path | None) -> Path | str:
    if "://" in os.fspath(path):  # census:// or a remote SOMA URI: kept as given
        return os.fspath(path)
    expanded = Path(os.path.expandvars(os.path.expanduser(os.fspath(path))))
    if "$" in str(expanded):
        raise ValueError(f"path {path!s} uses an environment variable that is not set.")
    if base is not None and not expanded.is_absolute():
        expanded = base / expanded
    return expanded


def _number(value: Any, where: str, *, integer: bool = False, minimum: float | None = None, positive: bool = False):
    """A recipe number, checked; strings such as ``"1e-5"`` (YAML 1.1 reads them so) are accepted.

    Errors name the field (``where``) and say what is expected.
    """
    kind = "an integer" if integer else "a number"
    bound = " > 0" if positive else (f" >= {minimum:g}" if minimum is not None else "")
    original = value
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"{where} must be {kind}{bound}, got {original!r}.") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be {kind}{bound}, got {original!r}.")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{where} must be a finite number, got {original!r}.")
    if integer:
        if float(value) != int(value):
            raise ValueError(f"{where} must be {kind}{bound}, got {original!r}.")
        value = int(value)
    else:
        value = float(value)
    if (positive and value <= 0) or (minimum is not None and value < minimum):
        raise ValueError(f"{where} must be {kind}{bound}, got {original!r}.")
    return value


def _numbers(values: dict[str, Any], spec: dict[str, dict], where: str) -> dict[str, Any]:
    """``values`` with the fields named in ``spec`` checked by :func:`_number` (None kept where optional)."""
    result = dict(values)
    for key, options in spec.items():
        if key in result and not (result[key] is None and options.get("optional")):
            options = {k: v for k, v in options.items() if k != "optional"}
            result[key] = _number(result[key], f"{where}.{key}" if where else key, **options)
    return result


_OPTIMIZER_NUMBERS = {
    "lr": {"positive": True},
    "min_lr": {"minimum": 0.0},
    "warmup_steps": {"integer": True, "minimum": 0},
    "weight_decay": {"minimum": 0.0},
    "eps": {"positive": True},
    "clip_norm": {"positive": True, "optional": True},
}
_STAGE_NUMBERS = {
    "steps": {"integer": True, "positive": True},
    "n_genes": {"integer": True, "positive": True},
    "n_neighbors": {"integer": True, "positive": True},
    "cells_per_step": {"integer": True, "positive": True, "optional": True},
    "micro_batch_size": {"integer": True, "positive": True, "optional": True},
}


def _check_keys(values: dict[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}.")
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) in {where}: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")


@dataclasses.dataclass
class DataFileSpec:
    """One training source and how to read it (options of :func:`omnicell.pp.tokenize`).

    ``path`` is an h5ad file or a TileDB-SOMA experiment (a folder, a URI, or
    ``census://[VERSION/]ORGANISM``); for SOMA, ``measurement``, ``x_layer`` and ``obs_filter``
    (a SOMA ``value_filter`` on obs) choose the cells, as in :func:`omnicell.data.read_soma`.
    """

    path: Path | str
    measurement: str = "RNA"
    x_layer: str | None = None
    obs_filter: str | None = None
    layer: str | None = None
    use_raw: bool = False
    gene_key: str | None = None
    species: str = "auto"
    spatial_key: str = "spatial"
    library_key: str | None = None
    coord_scale: float = 1.0

    @classmethod
    def from_value(cls, value: Any, base: Path | None, where: str) -> DataFileSpec:
        if isinstance(value, (str, os.PathLike)):
            return cls(path=_expand(value, base))
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be a path or a mapping with a path, got {value!r}.")
        allowed = {field.name for field in dataclasses.fields(cls)}
        _check_keys(value, allowed, where)
        if "path" not in value:
            raise ValueError(f"{where} needs a path.")
        value = _numbers(value, {"coord_scale": {"positive": True}}, where)
        return cls(**{**value, "path": _expand(value["path"], base)})


@dataclasses.dataclass
class StageSpec:
    """A curriculum stage: data, length, sequence construction and masking."""

    name: str
    kind: str
    files: list[DataFileSpec]
    steps: int
    n_genes: int = 2000
    strategy: str = "expressed"
    n_neighbors: int = 9
    cells_per_step: int | None = None
    micro_batch_size: int | None = None
    masking: MaskingConfig = dataclasses.field(default_factory=MaskingConfig)

    @property
    def spatial(self) -> bool:
        return self.kind == "spatial"


@dataclasses.dataclass
class ModelSection:
    """What to train: a checkpoint to continue from, or a new network and its vocabulary.

    ``init_std``: for a new network, draw every linear, embedding and expert weight from
    ``N(0, init_std)`` (e.g. 0.02, as GPT-style models); None keeps PyTorch's default initialisation.
    The output matrix ``W`` keeps its ``N(0, 1/d)`` initialisation.
    """

    init: str | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    vocabulary: str | Path | None = "data"
    vocabulary_min_cells: int = 1
    species: str = "auto"
    init_std: float | None = None


@dataclasses.dataclass
class Recipe:
    """A parsed recipe; see the module docstring for the file format."""

    name: str
    output: Path
    stages: list[StageSpec]
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    cells_per_step: int = 32
    micro_batch_size: int = 8
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    chunk_size: int = 256
    window_chunks: int = 16
    prefetch: bool = True
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    activation_checkpointing: bool = False
    source: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def stage_at(self, step: int) -> tuple[int, int]:
        """``(stage index, step within the stage)`` of global step ``step``."""
        start = 0
        for index, stage in enumerate(self.stages):
            if step < start + stage.steps:
                return index, step - start
            start += stage.steps
        raise IndexError(f"step {step} is beyond the recipe's {self.total_steps} steps.")

    def batch_shape(self, stage: StageSpec) -> tuple[int, int]:
        """``(cells per step, micro-batch size)`` of a stage."""
        return (stage.cells_per_step or self.cells_per_step, stage.micro_batch_size or self.micro_batch_size)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, base: Path | None = None) -> Recipe:
        """Build a recipe from the parsed file content; data paths are relative to ``base``."""
        top = {
            "name", "output", "seed", "device", "precision", "model", "optimizer", "batch", "data", "checkpoint",
            "stages",
        }  # fmt: skip
        _check_keys(values, top, "the recipe")
        for required in ("name", "stages"):
            if required not in values:
                raise ValueError(f"the recipe needs {required!r}.")
        model_values = dict(values.get("model") or {})
        _check_keys(model_values, {f.name for f in dataclasses.fields(ModelSection)}, "model")
        model_values = _numbers(
            model_values,
            {"vocabulary_min_cells": {"integer": True, "minimum": 0}, "init_std": {"positive": True, "optional": True}},
            "model",
        )
        model = ModelSection(**model_values)
        if model.init is None and model.vocabulary not in (None, "data"):
            model.vocabulary = _expand(model.vocabulary, base)
        if model.init is not None:
            # a folder relative to the recipe; otherwise a registry name or a path as given
            candidate = _expand(model.init, base)
            model.init = str(candidate) if candidate.exists() else str(model.init)
        optimizer_values = dict(values.get("optimizer") or {})
        _check_keys(optimizer_values, {f.name for f in dataclasses.fields(OptimizerConfig)}, "optimizer")
        optimizer_values = _numbers(optimizer_values, _OPTIMIZER_NUMBERS, "optimizer")
        if "betas" in optimizer_values:
            betas = optimizer_values["betas"]
            if not isinstance(betas, list | tuple) or len(betas) != 2:
                raise ValueError(f"optimizer.betas must be two numbers in [0, 1), e.g. [0.9, 0.99], got {betas!r}.")
            optimizer_values["betas"] = [_number(b, f"optimizer.betas[{i}]", minimum=0.0) for i, b in enumerate(betas)]
            if any(b >= 1 for b in optimizer_values["betas"]):
                raise ValueError(f"optimizer.betas must be two numbers in [0, 1), got {betas!r}.")
        if optimizer_values.get("min_lr", 0.0) > optimizer_values.get("lr", OptimizerConfig.lr):
            raise ValueError(
                f"optimizer.min_lr ({optimizer_values['min_lr']:g}) is larger than optimizer.lr "
                f"({optimizer_values.get('lr', OptimizerConfig.lr):g}); the schedule decays from lr to min_lr."
            )
        optimizer = OptimizerConfig(**{k: (tuple(v) if k == "betas" else v) for k, v in optimizer_values.items()})
        batch = dict(values.get("batch") or {})
        _check_keys(batch, {"cells_per_step", "micro_batch_size", "activation_checkpointing"}, "batch")
        positive_int = {"integer": True, "positive": True}
        batch = _numbers(batch, {"cells_per_step": positive_int, "micro_batch_size": positive_int}, "batch")
        data = dict(values.get("data") or {})
        _check_keys(data, {"chunk_size", "window_chunks", "prefetch"}, "data")
        data = _numbers(data, {"chunk_size": positive_int, "window_chunks": positive_int}, "data")
        checkpoint = dict(values.get("checkpoint") or {})
        _check_keys(checkpoint, {"every", "keep"}, "checkpoint")
        checkpoint = _numbers(
            checkpoint,
            {"every": {"integer": True, "minimum": 0}, "keep": {"integer": True, "minimum": 1}},
            "checkpoint",
        )
        if "seed" in values:
            values = {**values, "seed": _number(values["seed"], "seed", integer=True, minimum=0)}
        stages_values = values["stages"]
        if not isinstance(stages_values, list) or not stages_values:
            raise ValueError("stages must be a non-empty list.")
        stages = []
        stage_keys = {f.name for f in dataclasses.fields(StageSpec)}
        for number, stage_values in enumerate(stages_values):
            where = f"stages[{number}]"
            if not isinstance(stage_values, dict):
                raise ValueError(f"{where} must be a mapping (name, kind, files, steps, ...), got {stage_values!r}.")
            _check_keys(stage_values, stage_keys, where)
            stage_values = _numbers(stage_values, _STAGE_NUMBERS, where)
            for required in ("kind", "files", "steps"):
                if required not in stage_values:
                    raise ValueError(f"{where} needs {required!r}.")
            kind = stage_values["kind"]
            if kind not in STAGE_KINDS:
                raise ValueError(f"{where}.kind must be one of {', '.join(STAGE_KINDS)}, got {kind!r}.")
            files = stage_values["files"]
            if isinstance(files, (str, dict)):
                files = [files]
            specs = [DataFileSpec.from_value(f, base, f"{where}.files[{i}]") for i, f in enumerate(files)]
            if not specs:
                raise ValueError(f"{where} lists no files.")
            masking_values = stage_values.get("masking") or {}
            if not isinstance(masking_values, dict):
                raise ValueError(f"{where}.masking must be a mapping of rates, got {masking_values!r}.")
            masking_values = {
                key: _number(value, f"{where}.masking.{key}", minimum=None if key == "mask_value" else 0.0)
                for key, value in masking_values.items()
            }
            for key, value in masking_values.items():
                if key != "mask_value" and value > 1:
                    raise ValueError(f"{where}.masking.{key} is a rate in [0, 1], got {value!r}.")
            masking = MaskingConfig.for_stage(kind, **masking_values)
            stage = StageSpec(
                **{
                    **{k: v for k, v in stage_values.items() if k not in ("files", "masking")},
                    "name": str(stage_values.get("name", f"stage{number}")),
                    "files": specs,
                    "masking": masking,
                }
            )
            if int(stage.steps) < 1:
                raise ValueError(f"{where}.steps must be a positive integer, got {stage.steps!r}.")
            if stage.strategy not in ("hvg", "expressed"):
                raise ValueError(f"{where}.strategy must be 'hvg' or 'expressed', got {stage.strategy!r}.")
            stages.append(stage)
        recipe = cls(
            name=str(values["name"]),
            output=_expand(values.get("output", Path("runs") / str(values["name"])), None),
            stages=stages,
            model=model,
            optimizer=optimizer,
            cells_per_step=int(batch.get("cells_per_step", 32)),
            micro_batch_size=int(batch.get("micro_batch_size", 8)),
            seed=int(values.get("seed", 0)),
            device=str(values.get("device", "auto")),
            precision=str(values.get("precision", "auto")),
            chunk_size=int(data.get("chunk_size", 256)),
            window_chunks=int(data.get("window_chunks", 16)),
            prefetch=bool(data.get("prefetch", True)),
            checkpoint_every=int(checkpoint.get("every", 0)),
            keep_checkpoints=int(checkpoint.get("keep", 2)),
            activation_checkpointing=bool(batch.get("activation_checkpointing", False)),
            source=values,
        )
        for stage in recipe.stages:
            cells, micro = recipe.batch_shape(stage)
            if cells < 1 or micro < 1 or cells % micro:
                raise ValueError(
                    f"stage {stage.name!r}: cells_per_step ({cells}) must be a positive multiple of "
                    f"micro_batch_size ({micro})."
                )
        return recipe


def read_recipe(path: str | os.PathLike) -> Recipe:
    """Read a recipe from a ``.yaml``/``.yml`` or ``.toml`` file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"recipe {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path} is not valid TOML: {error}") from None
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML: {error}") from None
    else:
        raise ValueError(f"recipe {path} must be a .yaml, .yml or .toml file.")
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping at the top level.")
    return Recipe.from_dict(values, base=path.resolve().parent)
