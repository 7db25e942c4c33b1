"""oc.tl.fine_tune: continued pretraining on one AnnData."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import omnicell as oc


@pytest.mark.filterwarnings("ignore:1 cells express none")
def test_fine_tune_lowers_the_heldout_loss(tiny_adata, tiny_model, tmp_path):
    before = {k: v.clone() for k, v in tiny_model.network.state_dict().items()}
    log = tmp_path / "fine_tune.csv"
    tuned = oc.tl.fine_tune(
        tiny_adata, tiny_model, epochs=4, batch_size=4, lr=3e-3, validation_fraction=0.25, random_state=1, log=log
    )
    record = tiny_adata.uns["omnicell"]["fine_tune"]
    heldout = record["heldout_loss"]
    assert len(heldout) == 5 and heldout[-1] < heldout[0]
    assert record["n_validation"] == 6 and record["n_train"] == 18 and record["kind"] == "single_cell"
    assert record["model_sha256"] == tuned.sha256 and record["base_model_sha256"] == tiny_model.sha256
    rows = pd.read_csv(log)
    assert len(rows) == record["steps"] == 4 * 5
    assert rows["heldout_mlm"].notna().sum() == 4
    np.testing.assert_allclose(rows["heldout_mlm"].dropna(), heldout[1:], rtol=1e-5)
    # the base model is untouched; the result is a new, saveable model
    for key, value in tiny_model.network.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(tuned.network.output.W, tiny_model.network.output.W)
    assert tuned.name == "official_tiny-finetuned" and not tuned.network.training
    reloaded = oc.models.load(tuned.save(tmp_path / "tuned"))
    for key, value in tuned.network.state_dict().items():
        assert torch.equal(value, reloaded.network.state_dict()[key])
    oc.tl.embed_cells(tiny_adata, reloaded)
    assert np.isfinite(tiny_adata.obsm["X_omnicell"]).all()


def test_fine_tune_is_deterministic_and_spatial(tiny_adata, tiny_model):
    oc.pp.tokenize(tiny_adata, tiny_model, spatial=True, n_neighbors=3)
    first = oc.tl.fine_tune(tiny_adata, tiny_model, epochs=1, batch_size=4, micro_batch_size=2, random_state=5)
    assert tiny_adata.uns["omnicell"]["fine_tune"]["kind"] == "spatial"
    assert tiny_adata.uns["omnicell"]["fine_tune"]["masking"]["neighbor_nonzero"] == 0.05
    second = oc.tl.fine_tune(
        tiny_adata, tiny_model, spatial=True, epochs=1, batch_size=4, micro_batch_size=2, random_state=5
    )
    for key, value in first.network.state_dict().items():
        assert torch.equal(value, second.network.state_dict()[key])


def test_fine_tune_bad_input_writes_nothing(tiny_adata, tiny_model):
    oc.pp.tokenize(tiny_adata, tiny_model)
    with pytest.raises(ValueError, match="spatial"):
        oc.tl.fine_tune(tiny_adata, tiny_model, spatial=True)
    with pytest.raises(ValueError, match="epochs"):
        oc.tl.fine_tune(tiny_adata, tiny_model, epochs=0)
    with pytest.raises(ValueError, match="divisor"):
        oc.tl.fine_tune(tiny_adata, tiny_model, batch_size=6, micro_batch_size=4)
    with pytest.raises(ValueError, match="validation_fraction"):
        oc.tl.fine_tune(tiny_adata, tiny_model, validation_fraction=1.0)
    assert "fine_tune" not in tiny_adata.uns["omnicell"]
