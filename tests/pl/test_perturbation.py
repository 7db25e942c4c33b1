"""pl.perturbation draws the top raised and lowered genes per group with their q-values, and the shift in space."""

from __future__ import annotations

import anndata as ad
import matplotlib
import numpy as np
import pytest

import omnicell as oc
from conftest import STARMAP

matplotlib.use("Agg")

MODEL = "omnicell-tiny"


@pytest.fixture(scope="module")
def perturbed() -> ad.AnnData:
    adata = oc.datasets.pbmc68k_reduced()
    cells = np.concatenate(
        [np.flatnonzero((adata.obs["cell_type"] == t).to_numpy())[:4] for t in ("CD19+ B", "CD56+ NK")]
    )
    oc.tl.perturb_genes(adata, ["CD79A", "MS4A1"], cells=adata.obs_names[cells], groupby="cell_type", n_null=3,
                        model=MODEL, device="cpu")  # fmt: skip
    return adata


def test_effects_panels_show_the_top_genes_with_their_qvalues(perturbed):
    axes = oc.pl.perturbation(perturbed, n_genes=4, show=False)
    table = oc.get.perturbation_df(perturbed, include_perturbed=False)
    assert [panel.get_title() for panel in axes] == ["CD19+ B", "CD56+ NK"]
    for panel in axes:
        part = table[table["group"] == panel.get_title()]
        excess = (part["effect"] - part["null_mean"]).to_numpy()
        raised = part["gene"].to_numpy()[np.argsort(-excess)[:4]]
        lowered = part["gene"].to_numpy()[np.argsort(excess)[:4]]
        labels = [label.get_text() for label in panel.get_yticklabels()]
        assert len(labels) == 8 and len(panel.patches) == 8  # one bar per gene
        genes = [label.split(" (")[0] for label in labels]
        assert genes[:4] == list(raised) and genes[4:] == list(lowered[::-1])
        q = part.set_index("gene")["qval"]
        assert all(label == f"{gene} (q={q[gene]:.2g})" for gene, label in zip(genes, labels, strict=True))
        widths = [bar.get_width() for bar in panel.patches]
        np.testing.assert_allclose(widths, part.set_index("gene").loc[genes, "effect"], rtol=1e-6)
        assert "CD79A" not in genes and "MS4A1" not in genes  # the intervention is not ranked by default
    matplotlib.pyplot.close("all")


def test_one_group_into_given_axes_and_bad_arguments(perturbed):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    returned = oc.pl.perturbation(perturbed, groups=["CD56+ NK"], n_genes=2, include_perturbed=True, ax=ax, show=False)
    assert returned is ax and ax.get_title() == "CD56+ NK" and len(ax.patches) == 4
    with pytest.raises(ValueError, match="one group"):
        oc.pl.perturbation(perturbed, ax=ax, show=False)
    with pytest.raises(ValueError, match="kind"):
        oc.pl.perturbation(perturbed, kind="violin", show=False)
    with pytest.raises(KeyError, match="perturb"):
        oc.pl.perturbation(perturbed, key="nothing", show=False)
    with pytest.raises(KeyError, match="spatial"):
        oc.pl.perturbation(perturbed, kind="spatial", show=False)
    plt.close("all")


def test_spatial_panels_show_the_shift_and_domain_changes():
    full = ad.read_h5ad(STARMAP)
    coordinates = full.obsm["spatial"]
    patch = np.argsort(np.linalg.norm(coordinates - np.median(coordinates, axis=0), axis=1))[:80]
    adata = full[np.sort(patch)].copy()
    oc.pp.tokenize(adata, MODEL, spatial=True)
    oc.tl.embed_cells(adata, MODEL, device="cpu")
    source, target = adata.obs["domain"].value_counts().index[:2]
    cells = np.flatnonzero((adata.obs["domain"] == source).to_numpy())[:4]
    oc.tl.perturb_niche(adata, cells=adata.obs_names[cells], replace_with=target, groupby="domain", domain_key="domain",
                        n_null=2, model=MODEL, device="cpu")  # fmt: skip
    axes = oc.pl.perturbation(adata, key="omnicell_niche_perturb", kind="spatial", show=False)
    assert [panel.get_title() for panel in axes] == ["shift", "domain change"]
    before = adata.obs["omnicell_niche_perturb_domain_before"].astype(str).to_numpy()[cells]
    after = adata.obs["omnicell_niche_perturb_domain_after"].astype(str).to_numpy()[cells]
    expected = {"unchanged" if b == a else f"{b} -> {a}" for b, a in zip(before, after, strict=True)}
    legend = {text.get_text() for text in axes[1].get_legend().get_texts()}
    assert expected <= legend
    collection = axes[0].collections[0]
    np.testing.assert_allclose(np.sort(collection.get_array().compressed()),
                               np.sort(adata.obs["omnicell_niche_perturb_shift"].dropna()), rtol=1e-6)  # fmt: skip
    matplotlib.pyplot.close("all")
