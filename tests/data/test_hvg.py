"""Highly variable genes never crash the interpreter and never switch method silently."""

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp

from conftest import STARMAP
from omnicell.data import highly_variable_scores, top_variable
from omnicell.data._hvg import MIN_LOESS_GENES

SRC = Path(__file__).resolve().parents[2] / "src"


def _counts(n_cells, n_genes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(rng.gamma(0.5, 2.0, size=n_genes), size=(n_cells, n_genes)).astype(np.float32)


def test_all_zero_matrix_is_a_clear_error():
    with pytest.raises(ValueError, match=r"No gene varies.*adata.X.*genes="):
        highly_variable_scores(np.zeros((20, 30), dtype=np.float32), np.arange(30), where="adata.X")


@pytest.mark.parametrize("n_varying", [1, 2, 3, 4, MIN_LOESS_GENES - 1])
def test_few_varying_genes_rank_by_variance_with_a_warning(n_varying):
    matrix = np.zeros((8, 40), dtype=np.float32)
    matrix[:, :n_varying] = _counts(8, n_varying)
    matrix[0, :n_varying] += np.arange(1, n_varying + 1)  # make sure each varies
    with pytest.warns(UserWarning, match=f"Only {n_varying} of the 40 candidate genes vary.*ranked by variance"):
        scores, method = highly_variable_scores(matrix, np.arange(40))
    assert method == "variance"
    np.testing.assert_allclose(scores, matrix.var(0, ddof=1), rtol=1e-6)
    assert set(top_variable(scores, n_varying)) == set(range(n_varying))


def test_log_normalised_input_is_scored_on_its_recovered_counts():
    counts = _counts(50, 60)
    totals = counts.sum(1)
    logged = np.log1p(counts / totals[:, None].clip(1) * 1e4)
    expected, _ = highly_variable_scores(counts, np.arange(60))
    for hints in ({"cell_totals": totals}, {}):  # from the totals, or from each cell's smallest value
        with pytest.warns(UserWarning, match="log-normalised values: the counts were recovered"):
            scores, method = highly_variable_scores(sp.csr_matrix(logged), np.arange(60), where="adata.X", **hints)
        assert method == "seurat_v3_recovered_counts"
        np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_unrecoverable_log_values_use_scanpys_seurat_flavour():
    import scanpy as sc

    counts = _counts(80, 60)
    logged = np.log1p(counts / counts.sum(1, keepdims=True).clip(1) * 1e4) * 1.013  # no longer expm1 of integers
    with pytest.warns(UserWarning, match="no counts could be recovered.*'seurat' flavour.*genes chosen differ"):
        scores, method = highly_variable_scores(sp.csr_matrix(logged), np.arange(60), log1p={"base": None})
    assert method == "seurat"
    scanpy = sc.pp.highly_variable_genes(sc.AnnData(logged), flavor="seurat", inplace=False)["dispersions_norm"]
    np.testing.assert_allclose(scores, np.nan_to_num(scanpy.to_numpy(dtype=float), nan=-np.inf), rtol=1e-5)
    assert np.isfinite(scores).sum() > 40  # most genes vary: the comparison is not between two constant vectors


def test_other_non_integer_values_rank_by_variance():
    counts = _counts(50, 60)
    normalised = counts / counts.sum(1, keepdims=True).clip(1) * 1e4  # not logged: values far above LOG_MAX
    with pytest.warns(UserWarning, match="non-integer values that are not log-normalised.*expect counts.*layer="):
        scores, method = highly_variable_scores(sp.csr_matrix(normalised), np.arange(60), where="adata.X")
    assert method == "variance"
    np.testing.assert_allclose(scores, normalised.var(0, ddof=1), rtol=1e-5)


def test_counts_use_seurat_v3_without_warning():
    counts = _counts(60, 200)
    assert (counts.var(0) == 0).sum() > 0  # some constant genes: they score 0, as in scanpy
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores, method = highly_variable_scores(counts, np.arange(200), chunk_rows=7)
    assert method == "seurat_v3"
    # the same normalised variances as scanpy's seurat_v3, computed in one piece
    reference = sc.pp.highly_variable_genes(ad.AnnData(counts), flavor="seurat_v3", n_top_genes=20, inplace=False)
    np.testing.assert_allclose(scores, reference["variances_norm"].to_numpy(), rtol=1e-6, atol=1e-12)
    # a subset of the columns scores as that subset alone would
    columns = np.arange(0, 200, 3)
    subset, _ = highly_variable_scores(sp.csr_matrix(counts), columns)
    np.testing.assert_allclose(subset, highly_variable_scores(counts[:, columns], np.arange(len(columns)))[0])


def test_float16_matrix_is_read():
    counts = _counts(40, 100).astype(np.float16)
    scores, _ = highly_variable_scores(counts, np.arange(100))
    expected, _ = highly_variable_scores(counts.astype(np.float32), np.arange(100))
    np.testing.assert_array_equal(scores, expected)


def test_one_cell_is_a_clear_error():
    with pytest.raises(ValueError, match=r"at least 2 cells.*genes="):
        highly_variable_scores(_counts(1, 30), np.arange(30))


def test_real_small_panels_never_kill_the_interpreter():
    """Real STARmap counts: a handful of cells, a few genes, all-zero: the process survives, errors are clear."""
    script = textwrap.dedent(
        f"""
        import warnings, numpy as np, anndata as ad
        from omnicell.data import highly_variable_scores
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad({str(STARMAP)!r})
        X = adata.X[:200].toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X[:200])
        n = X.shape[1]
        results = []
        for cells, genes in [(3, n), (5, 8), (2, 4), (4, 20), (10, 50), (200, 30), (200, n)]:
            scores, method = highly_variable_scores(X[:cells, :genes], np.arange(min(genes, X.shape[1])))
            results.append(method)
        try:
            highly_variable_scores(np.zeros((5, 6)), np.arange(6))
        except ValueError as error:
            results.append("error")
        print(",".join(results))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    methods = result.stdout.strip().split(",")
    assert methods[-1] == "error" and methods[-2] == "seurat_v3"
    assert "near singularities" not in result.stderr
