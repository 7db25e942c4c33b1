"""Streaming from backed h5ad files: tokenisation as for inference, shuffling across files, bounded memory."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import omnicell as oc
from omnicell.train import CellStream, StreamSource, concat_batches, open_h5ad_source, step_batches
from omnicell.train._masking import MaskingConfig


@pytest.fixture
def sources(tiny_files, tiny_model):
    opened = [open_h5ad_source(path, tiny_model, spatial=False, strategy="hvg") for path in tiny_files]
    yield opened
    for source in opened:
        source.close()


def test_sources_are_backed_and_tokenised_like_inference(sources, tiny_files, tiny_model):
    assert all(source.handle.isbacked for source in sources)
    for source, path in zip(sources, tiny_files, strict=True):
        memory = ad.read_h5ad(path)
        oc.pp.tokenize(memory, tiny_model, strategy="hvg")
        rows = np.array([4, 0, 7])
        expected = oc.get.token_batch(memory, rows, tiny_model)
        got = source.plan.token_batch(rows)
        np.testing.assert_array_equal(got.tokens, expected.tokens)
        np.testing.assert_array_equal(got.values, expected.values)
        np.testing.assert_array_equal(got.cell_index, expected.cell_index)


def test_each_epoch_is_a_permutation_mixing_files(sources):
    stream = CellStream(sources, seed=7, chunk_size=4, window_chunks=2)
    n = stream.n_cells
    assert n == 24
    first, second = stream.take(0, n), stream.take(n, n)
    every = {(s, r) for s in (0, 1) for r in range(sources[s].n_cells)}
    assert set(map(tuple, first)) == every and len(first) == n
    assert set(map(tuple, second)) == every
    assert not np.array_equal(first, second)
    switches = int((np.diff(first[:, 0]) != 0).sum())
    assert switches >= 2  # files are interleaved, not read one after the other
    # positions are a pure function of the seed: any slice, from a fresh stream, agrees
    again = CellStream(sources, seed=7, chunk_size=4, window_chunks=2)
    np.testing.assert_array_equal(again.take(n - 5, 10), np.concatenate([first[-5:], second[:5]]))
    assert not np.array_equal(CellStream(sources, seed=8, chunk_size=4, window_chunks=2).take(0, n), first)
    # bounded memory: at most two windows of chunk_size * window_chunks cells are held
    assert len(stream._window_cache) <= 2
    assert all(len(pairs) <= 8 for pairs in stream._window_cache.values())


def test_stream_batch_keeps_order_and_content(sources, tiny_model):
    stream = CellStream(sources, seed=1, chunk_size=4, window_chunks=2)
    pairs = stream.take(0, 6)
    batch = stream.batch(pairs)
    for i, (source, row) in enumerate(pairs):
        single = sources[source].plan.token_batch(np.array([row]))
        np.testing.assert_array_equal(batch.tokens[i, : single.tokens.shape[1]], single.tokens[0])
        np.testing.assert_array_equal(batch.values[i, : single.values.shape[1]], single.values[0])


def test_spatial_source_gives_windows(tiny_files, tiny_model):
    source = open_h5ad_source(tiny_files[0], tiny_model, spatial=True, n_neighbors=3, strategy="hvg")
    stream = CellStream([source], seed=0, chunk_size=4, window_chunks=2)
    batches, ids, n_micro = step_batches(
        stream, MaskingConfig.for_stage("spatial"), seed=0, stage_index=0, stage_step=0,
        cells_per_step=8, micro_batch_size=4,
    )  # fmt: skip
    assert n_micro == 2 and ids == [0, 1]
    batch = batches[0].batch
    assert batch.n_blocks == 4 and batch.positions is not None
    assert set(np.unique(batch.cell_index)) == {-1, 0, 1, 2, 3}
    # each rank of two takes every other micro-batch, with the same masks as the single process
    rank1, ids1, _ = step_batches(
        stream, MaskingConfig.for_stage("spatial"), seed=0, stage_index=0, stage_step=0,
        cells_per_step=8, micro_batch_size=4, rank=1, world_size=2,
    )  # fmt: skip
    assert ids1 == [1]
    np.testing.assert_array_equal(rank1[0].mask, batches[1].mask)
    source.close()


@pytest.mark.filterwarnings("ignore:.*requested genes")
def test_concat_pads_at_the_end(tiny_adata, tiny_model):
    oc.pp.tokenize(tiny_adata, tiny_model, spatial=True, n_neighbors=2)
    spatial = oc.get.token_batch(tiny_adata, [0, 1], tiny_model)
    oc.pp.tokenize(tiny_adata, tiny_model, genes=tiny_adata.var_names[:6], spatial=True, n_neighbors=2)
    short = oc.get.token_batch(tiny_adata, [2], tiny_model)
    both = concat_batches([spatial, short])
    length = spatial.tokens.shape[1]
    assert both.tokens.shape == (3, length)
    t = short.tokens.shape[1]
    assert (both.cell_index[2, t:] == -1).all() and not both.padding_mask[2, t:].any()
    assert both.padding_mask[:2].all() and both.padding_mask[2, :t].all()
    np.testing.assert_array_equal(both.positions[2, :t], short.positions[0])


def test_empty_source_is_an_error(tiny_model, tiny_files):
    source = open_h5ad_source(tiny_files[0], tiny_model, spatial=False, strategy="hvg")
    with pytest.raises(ValueError, match="no cells"):
        StreamSource(source.plan, rows=np.array([], dtype=int), name="empty")
    with pytest.raises(ValueError, match="at least one"):
        CellStream([], seed=0)
    with pytest.raises(FileNotFoundError):
        open_h5ad_source(tiny_files[0].parent / "missing.h5ad", tiny_model, spatial=False)
    source.close()
