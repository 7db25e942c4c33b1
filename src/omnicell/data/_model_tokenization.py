"""How a model was trained to read cells: the defaults ``oc.pp.tokenize`` takes from the model.

A model folder may hold ``tokenization.json``::

    {
      "single_cell": {"strategy": "hvg", "n_genes": 1024},
      "spatial": {"strategy": "expressed", "n_genes": 64, "n_neighbors": 9, "neighbor_distance": 1.53}
    }

``neighbor_distance`` is the median, over the training cells, of the Euclidean distance from a cell
to its nearest other cell, in the coordinate units the model saw (after the recipe's ``coord_scale``);
``spatial`` is null for a model never trained on spatial windows. A folder without the file (the
official checkpoints) reads cells with the released code's rule: :data:`RELEASED_TOKENIZATION`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RELEASED_TOKENIZATION",
    "TOKENIZATION_FILE",
    "ModelTokenization",
    "SingleCellTokenization",
    "SpatialTokenization",
    "median_neighbor_distance",
]

TOKENIZATION_FILE = "tokenization.json"
_STRATEGIES = ("hvg", "expressed")


def _field(section: str, values: dict, name: str, kind: str, *, where: str, optional: bool = False):
    """Read and check one field, naming the file, section and field in errors."""
    label = f"{where}: {section}.{name}"
    if name not in values or values[name] is None:
        if optional:
            return None
        raise ValueError(f"{label} is missing.")
    value = values[name]
    if kind == "strategy":
        if value not in _STRATEGIES:
            raise ValueError(f"{label} must be 'hvg' or 'expressed', got {value!r}.")
        return value
    if kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}.")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{label} must be a positive number, got {value!r}.")
    return float(value)


@dataclasses.dataclass(frozen=True)
class SingleCellTokenization:
    """How the model read single cells: ``strategy`` and ``n_genes`` as in :func:`omnicell.pp.tokenize`."""

    strategy: str
    n_genes: int


@dataclasses.dataclass(frozen=True)
class SpatialTokenization:
    """How the model read spatial windows; ``neighbor_distance`` None means "no rescaling"."""

    strategy: str
    n_genes: int
    n_neighbors: int
    neighbor_distance: float | None = None


@dataclasses.dataclass(frozen=True)
class ModelTokenization:
    """A model's tokenisation defaults (``model.tokenization``).

    Attributes
    ----------
    single_cell
        Defaults of ``tokenize(spatial=False)``.
    spatial
        Defaults of ``tokenize(spatial=True)``; None when the model never saw spatial windows.
    source
        ``"tokenization.json"`` or ``"released code"`` (the rule for folders without the file).
    """

    single_cell: SingleCellTokenization
    spatial: SpatialTokenization | None
    source: str = TOKENIZATION_FILE

    def to_dict(self) -> dict[str, Any]:
        return {
            "single_cell": dataclasses.asdict(self.single_cell),
            "spatial": None if self.spatial is None else dataclasses.asdict(self.spatial),
        }

    def to_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = TOKENIZATION_FILE) -> ModelTokenization:
        """Build from the JSON structure, checking every field (errors name the file and field)."""
        if not isinstance(values, dict) or not isinstance(values.get("single_cell"), dict):
            raise ValueError(f"{where} must be an object with a 'single_cell' section (and 'spatial', or null).")
        single = values["single_cell"]
        single_cell = SingleCellTokenization(
            strategy=_field("single_cell", single, "strategy", "strategy", where=where),
            n_genes=_field("single_cell", single, "n_genes", "count", where=where),
        )
        spatial_values = values.get("spatial")
        spatial = None
        if spatial_values is not None:
            if not isinstance(spatial_values, dict):
                raise ValueError(f"{where}: 'spatial' must be an object or null, got {spatial_values!r}.")
            spatial = SpatialTokenization(
                strategy=_field("spatial", spatial_values, "strategy", "strategy", where=where),
                n_genes=_field("spatial", spatial_values, "n_genes", "count", where=where),
                n_neighbors=_field("spatial", spatial_values, "n_neighbors", "count", where=where),
                neighbor_distance=_field(
                    "spatial", spatial_values, "neighbor_distance", "distance", where=where, optional=True
                ),
            )
        return cls(single_cell=single_cell, spatial=spatial)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ModelTokenization:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); fix or delete it.") from None
        return cls.from_dict(values, where=str(path))


RELEASED_TOKENIZATION = ModelTokenization(
    single_cell=SingleCellTokenization(strategy="hvg", n_genes=2000),
    spatial=SpatialTokenization(strategy="hvg", n_genes=2000, n_neighbors=9, neighbor_distance=None),
    source="released code",
)
"""The released code's rule: the 2,000 most highly variable genes for every cell, 9 neighbours, raw
coordinates (see ``shared/reference/OFFICIAL.md``)."""


def median_neighbor_distance(coordinates: np.ndarray, *, libraries: np.ndarray | None = None) -> float | None:
    """Median over the cells of the distance to the nearest other cell (within its library).

    Cells alone in their library are left out; None when no cell has a neighbour. Cells sharing
    their coordinates with another count with distance 0.
    """
    from scipy.spatial import cKDTree

    coordinates = np.asarray(coordinates, dtype=np.float64)
    groups = [np.arange(len(coordinates))] if libraries is None else [
        np.flatnonzero(libraries == value) for value in np.unique(libraries)
    ]  # fmt: skip
    nearest = []
    for members in groups:
        if len(members) < 2:
            continue
        distances, _ = cKDTree(coordinates[members]).query(coordinates[members], k=2)
        nearest.append(distances[:, 1])
    if not nearest:
        return None
    return float(np.median(np.concatenate(nearest)))
