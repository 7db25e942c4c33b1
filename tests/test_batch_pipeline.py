"""Token batches built in DataLoader workers give the same results as in-process ones."""

from __future__ import annotations

import numpy as np
import pytest

import omnicell as oc
from omnicell._engine.pipeline import auto_batch_size


@pytest.mark.parametrize("spatial", [False, True])
def test_worker_processes_give_identical_embeddings(tiny_adata, tiny_model, expected, spatial):
    results = []
    for workers in (0, 2):
        adata = tiny_adata.copy()
        oc.pp.tokenize(adata, tiny_model, genes=expected["selected_genes"], spatial=spatial, n_neighbors=3)
        oc.settings.num_workers = workers
        try:
            with pytest.warns(UserWarning, match="express none"):
                oc.tl.embed_cells(adata, tiny_model, batch_size=5)
        finally:
            oc.settings.num_workers = 0
        results.append(adata.obsm["X_omnicell"])
    np.testing.assert_array_equal(results[1], results[0])
    with pytest.raises(ValueError, match="num_workers"):
        oc.settings.num_workers = -1


def test_auto_batch_size_fills_half_the_free_memory():
    # 2,002 tokens, d 512, h 2048, bf16: 2002 * (4096 + 6144) * 2 bytes = 41 MB per sequence
    per_sequence = 2002 * (8 * 512 + 3 * 2048) * 2
    assert auto_batch_size(80 * 2**30, tokens_per_sequence=2002, d_model=512, hidden_dim=2048, bytes_per_value=2) == (
        40 * 2**30 // per_sequence
    )
    assert auto_batch_size(10, tokens_per_sequence=2002, d_model=512, hidden_dim=2048, bytes_per_value=2) == 1
