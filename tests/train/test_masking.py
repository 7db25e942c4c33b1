"""Masking rates and presentation, on the conformance cells tokenised as for inference."""

from __future__ import annotations

import numpy as np
import pytest

import omnicell as oc
from omnicell.train import MaskingConfig, concat_batches, mask_batch


def _batch(adata, model, *, spatial):
    oc.pp.tokenize(adata, model, spatial=spatial, n_neighbors=3)
    return oc.get.token_batch(adata, None, model)


def _empirical(batch, config, draws=400):
    """Masking frequency of every position over many draws."""
    rng = np.random.default_rng(0)
    total = np.zeros(batch.values.shape)
    for _ in range(draws):
        total += mask_batch(batch, config, rng).mask
    return total / draws


def _check_rate(frequency, where, rate, draws=400):
    observed = frequency[where].mean()
    spread = 5 * np.sqrt(max(rate * (1 - rate), 1e-12) / (draws * where.sum()))
    assert abs(observed - rate) <= spread + 1e-12, (observed, rate)


def test_spatial_stage_rates(tiny_adata, tiny_model):
    batch = _batch(tiny_adata, tiny_model, spatial=True)
    assert batch.n_blocks == 4
    config = MaskingConfig.for_stage("spatial")
    frequency = _empirical(batch, config)
    gene = batch.cell_index >= 0
    expressed = batch.values > 0
    focal, neighbour = gene & (batch.cell_index == 0), gene & (batch.cell_index > 0)
    _check_rate(frequency, focal & expressed, 0.3)
    _check_rate(frequency, neighbour & expressed, 0.05)
    assert frequency[gene & ~expressed].max() == 0  # zeros are kept in the spatial stage
    assert frequency[~gene].max() == 0  # never a marker


def test_single_cell_stage_rates(tiny_adata, tiny_model):
    batch = _batch(tiny_adata, tiny_model, spatial=False)
    config = MaskingConfig.for_stage("single_cell")
    frequency = _empirical(batch, config)
    gene = batch.cell_index >= 0
    expressed = batch.values > 0
    _check_rate(frequency, gene & expressed, 0.3)
    _check_rate(frequency, gene & ~expressed, 0.1)
    assert frequency[~gene].max() == 0


def test_masked_values_hidden_targets_kept(tiny_adata, tiny_model):
    batch = _batch(tiny_adata, tiny_model, spatial=False)
    config = MaskingConfig.for_stage("single_cell", nonzero=0.5, zero=0.5, mask_value=-2.5)
    masked = mask_batch(batch, config, np.random.default_rng(1))
    assert masked.n_masked > 0
    np.testing.assert_array_equal(masked.target, batch.values)
    assert (masked.batch.values[masked.mask] == -2.5).all()
    np.testing.assert_array_equal(masked.batch.values[~masked.mask], batch.values[~masked.mask])
    np.testing.assert_array_equal(masked.batch.tokens, batch.tokens)  # the gene identity stays
    # the input batch is untouched, and the same seed gives the same mask
    assert (batch.values >= 0).all()
    again = mask_batch(batch, config, np.random.default_rng(1))
    np.testing.assert_array_equal(again.mask, masked.mask)


@pytest.mark.filterwarnings("ignore:.*requested genes")
def test_padding_is_never_masked(tiny_adata, tiny_model):
    short = _batch(tiny_adata, tiny_model, spatial=False)
    oc.pp.tokenize(tiny_adata, tiny_model, genes=tiny_adata.var_names[:8])
    longer = oc.get.token_batch(tiny_adata, None, tiny_model)
    batch = concat_batches([longer, short])  # padded to the longer sequences
    assert batch.padding_mask is not None and not batch.padding_mask.all()
    masked = mask_batch(batch, MaskingConfig(nonzero=1.0, zero=1.0), np.random.default_rng(0))
    assert not masked.mask[~batch.padding_mask].any()
    assert masked.mask[batch.cell_index >= 0].all()
    assert not masked.mask[batch.cell_index < 0].any()


def test_bad_masking_options():
    with pytest.raises(ValueError, match="rate"):
        MaskingConfig(nonzero=1.5)
    with pytest.raises(ValueError, match="kind"):
        MaskingConfig.for_stage("bulk")
    with pytest.raises(ValueError, match="unknown masking"):
        MaskingConfig.for_stage("spatial", zeros=0.1)
