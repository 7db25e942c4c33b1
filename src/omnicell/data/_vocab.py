"""The model's token vocabulary: gene ids and the special marker tokens."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

__all__ = ["SPECIAL_TOKENS", "Vocabulary"]

RNA_START, RNA_END = "<RNA_START>", "<RNA_END>"
SPECIAL_TOKENS = (RNA_START, RNA_END, "<ATAC_START>", "<ATAC_END>")


class Vocabulary:
    """Mapping from gene ids (human Ensembl ids for the released model) to token ids.

    Parameters
    ----------
    token_ids
        ``{gene_id: token_id}`` including the special tokens ``<RNA_START>`` and ``<RNA_END>``.
    """

    def __init__(self, token_ids: Mapping[str, int]) -> None:
        missing = [token for token in (RNA_START, RNA_END) if token not in token_ids]
        if missing:
            raise ValueError(f"The vocabulary lacks the special tokens {', '.join(missing)}.")
        ids = np.fromiter(token_ids.values(), dtype=np.int64, count=len(token_ids))
        if len(np.unique(ids)) != len(ids) or ids.min() < 0:
            raise ValueError("Vocabulary token ids must be distinct non-negative integers.")
        self._token_ids = {str(key): int(value) for key, value in token_ids.items()}
        self.rna_start = self._token_ids[RNA_START]
        self.rna_end = self._token_ids[RNA_END]

    @classmethod
    def from_json(cls, path: str | Path) -> Vocabulary:
        """Read ``Vocabulary.json`` / ``vocab.json`` (a ``{gene_id: token_id}`` object)."""
        with open(path, encoding="utf-8") as handle:
            try:
                content = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(content, dict):
            raise ValueError(f"{path} must hold a JSON object mapping gene ids to token ids.")
        return cls(content)

    def to_json(self, path: str | Path) -> None:
        """Write the vocabulary as a ``{gene_id: token_id}`` JSON object."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self._token_ids, handle, indent=0)

    def __len__(self) -> int:
        return len(self._token_ids)

    def __contains__(self, gene: object) -> bool:
        return gene in self._token_ids and gene not in SPECIAL_TOKENS

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._token_ids == other._token_ids

    __hash__ = None  # type: ignore[assignment]

    @property
    def max_token_id(self) -> int:
        """The largest token id (the embedding table needs ``max_token_id + 1`` rows)."""
        return max(self._token_ids.values())

    @property
    def genes(self) -> list[str]:
        """Gene ids (special tokens excluded) in token order."""
        return [
            gene for gene, _ in sorted(self._token_ids.items(), key=lambda item: item[1]) if gene not in SPECIAL_TOKENS
        ]

    def token_ids(self, genes: Iterable[str]) -> np.ndarray:
        """Token id of each gene, -1 for genes outside the vocabulary."""
        lookup = self._token_ids
        return np.array([lookup[g] if g in lookup and g not in SPECIAL_TOKENS else -1 for g in genes], dtype=np.int64)

    def sha256(self) -> str:
        """Content hash, used to check that data were tokenised for the same vocabulary."""
        canonical = json.dumps(sorted(self._token_ids.items()), separators=(",", ":")).encode()
        return hashlib.sha256(canonical).hexdigest()

    def __repr__(self) -> str:
        return f"Vocabulary({len(self) - len([t for t in SPECIAL_TOKENS if t in self._token_ids])} genes)"
