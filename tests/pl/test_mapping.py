"""pl.mapping: confidence and unknown calls of map_query on an embedding, set sizes and confidence panels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

import omnicell as oc


@pytest.fixture
def mapped():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 6)) * 3

    def cells(n, seed, types):
        draw = np.random.default_rng(seed)
        codes = draw.choice(types, n)
        obs = pd.DataFrame({"t": pd.Categorical([f"t{c}" for c in codes])}, index=[f"{seed}_{i}" for i in range(n)])
        adata = ad.AnnData(obs=obs)
        adata.obsm["X_omnicell"] = (centres[codes] + draw.normal(size=(n, 6))).astype(np.float32)
        return adata

    reference, query = cells(300, 1, [0, 1]), cells(120, 2, [0, 1, 2])  # type t2 is new to the reference
    oc.tl.map_query(query, reference, "t", query_label_key="t")
    query.obsm["X_umap"] = query.obsm["X_omnicell"][:, :2]
    return query


def test_panels_show_the_calls(mapped, tmp_path):
    path = tmp_path / "mapping.png"
    axes = oc.pl.mapping(mapped, show=False, save=str(path))
    assert path.stat().st_size > 0
    assert set(axes) == {"confidence", "label", "set_size", "confidence_histogram"}
    # The confidence panel colours each cell by its calibrated confidence, on a 0-1 scale.
    points = axes["confidence"].collections[0]
    np.testing.assert_allclose(np.sort(points.get_array()), np.sort(mapped.obs["omnicell_confidence"]), rtol=1e-6)
    assert points.get_clim() == (0.0, 1.0)
    # Unknown cells are grey on the label panel.
    unknown = mapped.obs["omnicell_unknown"].to_numpy()
    colours = [to_hex(c) for c in axes["label"].collections[0].get_facecolors()]
    assert colours.count("#c8c8c8") == unknown.sum() > 0
    # One bar per set size (0: empty) with the number of cells.
    sizes = mapped.obs["omnicell_label_set"].map(lambda s: 0 if not s else s.count("|") + 1).to_numpy()
    heights = [patch.get_height() for patch in axes["set_size"].patches]
    assert heights == list(np.bincount(sizes, minlength=2))
    record = mapped.uns["omnicell"]["map_query"]
    title = axes["set_size"].get_title()
    assert f"coverage {record['coverage']:.3f}" in title and f"{record['query_coverage']:.3f} (query)" in title
    # The histogram stacks the confidence of the cells called and of those called unknown.
    called, flagged = axes["confidence_histogram"].containers
    assert sum(p.get_height() for p in called) == (~unknown).sum()
    assert sum(p.get_height() for p in flagged) == unknown.sum()
    plt.close("all")


def test_summary_only_and_errors(mapped):
    del mapped.obsm["X_umap"]
    axes = oc.pl.mapping(mapped, show=False)
    assert set(axes) == {"set_size", "confidence_histogram"}
    with pytest.raises(KeyError, match="basis=None"):
        oc.pl.mapping(mapped, basis="tsne", show=False)
    with pytest.raises(KeyError, match=r"run oc\.tl\.map_query"):
        oc.pl.mapping(mapped, key="other", show=False)
    plt.close("all")
