"""The record of a tokenisation: what :func:`omnicell.pp.tokenize` chose, as one typed object.

It lives in ``adata.uns['omnicell']['tokenize']`` as a plain dict of h5ad-writable values (the
layout older files already have); :meth:`TokenizeRecord.read` and :meth:`TokenizeRecord.write`
are the only places that know the keys. Adding a field is one line below: give it a default, so
records written before it existed still read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from anndata import AnnData

from omnicell._core import keys
from omnicell._core.provenance import get_record, write_record

__all__ = ["TokenizeRecord"]

FUNCTION = "tokenize"
"""Key of the record in ``uns['omnicell']``."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class TokenizeRecord:
    """What :func:`omnicell.pp.tokenize` chose for an AnnData (``uns['omnicell']['tokenize']``).

    Attributes
    ----------
    strategy
        ``"hvg"`` (one gene list for every cell) or ``"expressed"`` (expressed genes first).
    genes
        Candidate genes (names in ``var``, or ``raw.var`` with ``use_raw``), in record order.
    token_ids
        Vocabulary token of each candidate.
    n_genes
        Genes per cell.
    vocab_sha256
        Hash of the vocabulary the tokens belong to.
    zero_fill
        ``"expressed"``: order (indices into ``genes``) in which unexpressed genes fill a cell.
    spatial, n_neighbors, spatial_key, neighbors_key, library_key, coord_scale
        Spatial mode: neighbours per cell, where coordinates and graph came from, sections, and the
        factor applied to coordinates before the rotary encoding.
    layer, use_raw
        Where the expression values are read.
    hvg_flavor
        How genes were ranked when ``tokenize`` chose them (``seurat_v3``, or a fallback).
    obs_names_sha256
        Spatial mode: fingerprint of the cell order the stored neighbours refer to.
    data_neighbor_distance, model_neighbor_distance, scaled_from_model, from_model, tokenization_source
        What ``tokenize`` took from the model's tokenisation, and how coordinates were scaled.
    model, model_sha256
        Identity of the model whose vocabulary was used.
    extra
        Keys of a stored record that this version does not know (kept when rewritten).
    """

    # Array fields carry their dtype (h5ad gives strings back as objects); ``_convert`` applies it.
    strategy: str
    genes: np.ndarray = dataclasses.field(metadata={"dtype": str})
    token_ids: np.ndarray = dataclasses.field(metadata={"dtype": np.int64})
    n_genes: int
    vocab_sha256: str
    zero_fill: np.ndarray | None = dataclasses.field(default=None, metadata={"dtype": np.int64})
    gene_list_given: bool = False
    layer: str | None = None
    use_raw: bool = False
    spatial: bool = False
    n_neighbors: int | None = None
    spatial_key: str | None = None
    neighbors_key: str | None = None
    library_key: str | None = None
    coord_scale: float = 1.0
    n_vocabulary_genes: int | None = None
    hvg_flavor: str | None = None
    obs_names_sha256: str | None = None
    data_neighbor_distance: float | None = None
    model_neighbor_distance: float | None = None
    scaled_from_model: bool = False
    from_model: np.ndarray | None = dataclasses.field(default=None, metadata={"dtype": str})
    tokenization_source: str | None = None
    model: str = ""
    model_sha256: str = ""
    omnicell_version: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, strict: bool = True) -> TokenizeRecord:
        """A record from a dict; values converted to the fields' types.

        ``strict``: unknown keys are an error (a writer must declare its fields); else they are kept
        in ``extra`` (a record written by a newer version).
        """
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        unknown = {k: v for k, v in values.items() if k not in fields}
        if unknown and strict:
            raise TypeError(
                f"TokenizeRecord has no fields {sorted(unknown)}; declare them in omnicell/_core/tokenize_record.py."
            )
        missing = [
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in values
        ]
        if missing:
            raise ValueError(
                f"adata.uns[{keys.UNS!r}][{FUNCTION!r}] lacks {missing} (written by another program?); "
                "run oc.pp.tokenize(adata, model) again."
            )
        converted = {name: _convert(fields[name], value) for name, value in values.items() if name in fields}
        return cls(**converted, extra=dict(unknown))

    @classmethod
    def read(cls, adata: AnnData) -> TokenizeRecord | None:
        """The record of ``adata``'s tokenisation, or None if it was never tokenised."""
        stored = get_record(adata, FUNCTION)
        return None if stored is None else cls.from_mapping(stored, strict=False)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: field values (None dropped on writing), then the ``extra`` keys."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        values.pop("omnicell_version")  # stamped by write_record
        return {**dict(self.extra), **values}

    def write(self, adata: AnnData) -> None:
        """Store the record as ``adata.uns['omnicell']['tokenize']`` (h5ad-writable)."""
        write_record(adata, FUNCTION, self.to_dict())


def _convert(field: dataclasses.Field, value: Any) -> Any:
    """``value`` (as stored, or read back from h5ad) as the field's type."""
    if value is None:
        return None
    dtype = field.metadata.get("dtype")
    if dtype is not None:
        return np.asarray(value, dtype=dtype)
    kinds = {part.strip() for part in str(field.type).split("|")}
    for kind, convert in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if kind in kinds:
            return convert(value)
    return value
