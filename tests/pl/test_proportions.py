"""pl.proportions: spatial panels through squidpy and stacked bars per group."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import omnicell as oc
from _cell_data import starmap_pca


@pytest.fixture(scope="module")
def deconvolved():
    adata = starmap_pca()
    reference, spots = adata[::2].copy(), adata[1::2].copy()
    oc.tl.deconvolve(spots, reference, "cell_type", use_rep="X_pca", epochs=100)
    return spots


def test_spatial_panels(deconvolved, tmp_path):
    path = tmp_path / "proportions.png"
    axes = oc.pl.proportions(deconvolved, types=["eL4", "Oligo"], show=False, save=str(path))
    assert path.stat().st_size > 0
    proportions = deconvolved.obsm["omnicell_proportions"]
    assert [ax.get_title() for ax in axes] == [f"{t} (max {proportions[t].max():.2g})" for t in ("eL4", "Oligo")]
    collection = axes[1].collections[0]
    np.testing.assert_allclose(np.asarray(collection.get_offsets()), deconvolved.obsm["spatial"][:, :2])
    np.testing.assert_allclose(collection.get_array(), proportions["Oligo"], rtol=1e-6)
    # each panel on its own scale, so small proportions use the whole colour map
    for ax, name in zip(axes, ("eL4", "Oligo"), strict=True):
        norm = ax.collections[0].norm
        assert norm.vmin == 0.0 and norm.vmax == pytest.approx(proportions[name].max())
    plt.close("all")
    shared = oc.pl.proportions(deconvolved, types=["eL4", "Oligo"], vmax=1.0, show=False)
    assert [ax.get_title() for ax in shared] == ["eL4", "Oligo"]
    assert all(ax.collections[0].norm.vmax == 1.0 for ax in shared)
    figure = oc.pl.proportions(deconvolved, types=["eL4"], return_fig=True)
    assert isinstance(figure, plt.Figure) and figure.axes[0].get_title().startswith("eL4")
    plt.close("all")


def test_stacked_bars(deconvolved):
    ax = oc.pl.proportions(deconvolved, groupby="domain", show=False)
    proportions = deconvolved.obsm["omnicell_proportions"]
    domains = list(deconvolved.obs["domain"].cat.categories)
    assert [t.get_text() for t in ax.get_xticklabels()] == domains
    heights = np.array([p.get_height() for p in ax.patches]).reshape(proportions.shape[1], len(domains))
    means = proportions.groupby(deconvolved.obs["domain"].to_numpy()).mean().loc[domains]
    np.testing.assert_allclose(heights.T, means.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(heights.sum(0), 1.0, atol=1e-5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(proportions.columns)
    plt.close(ax.figure)


def test_bad_input(deconvolved):
    with pytest.raises(KeyError, match="Types"):
        oc.pl.proportions(deconvolved, types=["T cell"], show=False)
    with pytest.raises(KeyError, match="deconvolve"):
        oc.pl.proportions(deconvolved, key="missing", show=False)
    with pytest.raises(KeyError, match="groupby"):
        oc.pl.proportions(deconvolved, groupby="region", show=False)
