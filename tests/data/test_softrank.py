"""Soft rank: the official rule, vectorised."""

from __future__ import annotations

import numpy as np
import pytest

from omnicell.data import soft_rank


def _per_cell(row: np.ndarray) -> np.ndarray:
    """The rule written plainly, one cell at a time."""
    levels = np.unique(np.concatenate([[0.0], row]))
    if len(levels) == 1:
        return np.zeros_like(row, dtype=np.float32)
    return (5.0 * np.searchsorted(levels, row) / (len(levels) - 1)).astype(np.float32)


def test_matches_the_plain_rule_on_random_counts():
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.gamma(0.5, 2, size=(300, 1)), size=(300, 50)).astype(float)
    counts[:5] = 0
    expected = np.stack([_per_cell(row) for row in counts])
    np.testing.assert_array_equal(soft_rank(counts), expected)


def test_examples():
    values = np.array([[0, 3, 7, 3], [2, 2, 2, 2], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=float)
    np.testing.assert_allclose(
        soft_rank(values),
        [[0, 2.5, 5, 2.5], [5, 5, 5, 5], [0, 0, 0, 0], [5, 0, 0, 0]],
    )


def test_invariant_to_per_cell_monotone_transforms():
    rng = np.random.default_rng(1)
    counts = rng.poisson(3, size=(20, 30)).astype(float)
    scaled = counts / counts.sum(1, keepdims=True) * 1e4
    np.testing.assert_array_equal(soft_rank(counts), soft_rank(np.log1p(scaled)))


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_dtypes(dtype):
    assert soft_rank(np.array([[0, 1, 2]], dtype=dtype)).dtype == np.float32


def test_sparse_input_equals_dense():
    import scipy.sparse as sp

    rng = np.random.default_rng(2)
    counts = rng.poisson(0.4, size=(40, 60)).astype(float)
    matrix = sp.csr_matrix(counts)
    matrix.data[::7] = 0  # explicit zeros are still zeros
    np.testing.assert_array_equal(soft_rank(matrix), soft_rank(matrix.toarray()))


@pytest.mark.parametrize("values", ["counts", "large counts", "normalised"])
def test_selected_columns_match_the_plain_rule(values):
    """soft_rank_selected (the batch builder's path) equals the plain rule on the selected columns."""
    import scipy.sparse as sp

    from omnicell.data._softrank import soft_rank_selected

    rng = np.random.default_rng(1)
    counts = rng.poisson(rng.gamma(0.5, 2, size=(60, 1)), size=(60, 90)).astype(np.float32)
    columns = rng.permutation(90)[:40]  # in an order of their own
    counts[:3] = 0
    counts[3] = 0
    counts[3, np.setdiff1d(np.arange(90), columns)] = 7  # a cell whose only values sit outside the selection
    if values == "large counts":  # integers beyond 16 bits: the general path
        counts[5:, columns[0]] += 70_000
    elif values == "normalised":
        counts = np.log1p(counts / counts.sum(1, keepdims=True).clip(1) * 1e4)
    lookup = np.full(90, -1, dtype=np.int32)
    lookup[columns] = np.arange(40)
    expected = np.stack([_per_cell(row) for row in counts[:, columns]])
    np.testing.assert_array_equal(soft_rank_selected(sp.csr_matrix(counts), lookup, 40), expected)
