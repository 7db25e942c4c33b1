"""The paper's expressed-first gene choice, against a plain per-cell implementation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from omnicell.data import build_batch, expressed_first, soft_rank


def _per_cell(row: np.ndarray, priority: np.ndarray, zero_fill: np.ndarray, n_genes: int) -> list[int]:
    expressed = [j for j in np.flatnonzero(row > 0)]
    expressed.sort(key=lambda j: (-row[j], priority[j]))
    chosen = expressed[:n_genes]
    chosen += [j for j in zero_fill if row[j] == 0][: n_genes - len(chosen)]
    return chosen


@pytest.mark.parametrize("values", ["counts", "large counts", "float32", "float64"])
def test_matches_plain_rule(values):
    """Each way of coding values into sort keys gives the plain rule's genes, order and soft ranks."""
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(0.3, 1, size=(50, 1)) * rng.gamma(0.5, 1, size=(1, 80))).astype(float)
    if values == "large counts":  # integers beyond 16 bits: read as float32 bit patterns
        counts[2:, :5] *= 100_000
    elif values == "float32":  # normalised values that float32 holds exactly: their bit patterns
        counts = np.where(counts > 0, np.log1p(counts).astype(np.float32), 0.0).astype(np.float32)
    elif values == "float64":  # not representable in float32: ranks of the distinct values (ties kept exact)
        counts = np.where(counts > 0, counts + 1 / 3, 0.0)
    counts[0] = 0
    counts[1] = 1  # every gene expressed, all tied
    priority = np.arange(80)  # candidates come in priority order, the first 30 fill
    zero_fill = np.arange(30)
    columns, ranks = expressed_first(sp.csr_matrix(counts), 30, 40)
    assert columns.shape == (50, 40)
    for i, row in enumerate(counts):
        chosen = _per_cell(row, priority, zero_fill, 40)
        got = [c for c in columns[i] if c >= 0]
        assert got == chosen, i
        assert (columns[i, len(chosen) :] == -1).all()  # padding only at the end
        np.testing.assert_array_equal(ranks[i, : len(chosen)], soft_rank(row[chosen][None])[0])
        assert (ranks[i, len(chosen) :] == 0).all()


def test_priority_lookup_equals_reordered_columns():
    """Reading the matrix's own columns through a priority lookup gives the reordered-columns result."""
    rng = np.random.default_rng(1)
    matrix = sp.random(40, 120, density=0.2, random_state=rng, format="csr", dtype=np.float32) * 10
    matrix.data = np.ceil(matrix.data)
    candidates = rng.permutation(120)[:90]  # 30 matrix columns are not candidates
    lookup = np.full(120, -1)
    lookup[candidates] = np.arange(90)
    reordered = expressed_first(matrix[:, candidates], 25, 50)
    looked_up = expressed_first(matrix, 25, 50, priority=lookup)
    np.testing.assert_array_equal(looked_up[0], reordered[0])
    np.testing.assert_array_equal(looked_up[1], reordered[1])
    # labels= returns each chosen candidate's label (here a token id) instead of its index
    tokens = rng.permutation(1000)[:90] + 7
    labelled = expressed_first(matrix, 25, 50, priority=lookup, labels=tokens)
    np.testing.assert_array_equal(labelled[0], np.where(reordered[0] >= 0, tokens[reordered[0]], -1))


def test_padding_blocks_and_missing_neighbours():
    soft = np.array([[5.0, 2.5, 0.0], [5.0, 0.0, 0.0]], dtype=np.float32)
    tokens = np.array([[7, 8, 9], [7, -1, -1]])
    batch = build_batch(soft, tokens, np.array([[0, 1], [1, -1]]), rna_start=100, rna_end=101,
                        coordinates=np.array([[1.0, 2.0], [3.0, 4.0]]))  # fmt: skip
    np.testing.assert_array_equal(batch.tokens[0], [100, 7, 8, 9, 101, 100, 7, 0, 0, 101])
    np.testing.assert_array_equal(batch.padding_mask[0], [1, 1, 1, 1, 1, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(batch.padding_mask[1], [1, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.cell_index[0], [-1, 0, 0, 0, -1, -1, 1, -1, -1, -1])
    np.testing.assert_array_equal(batch.cell_index[1], [-1, 0, -1, -1, -1, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(batch.positions[0, :, 0], [1] * 5 + [3] * 5)
