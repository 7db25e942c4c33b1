"""Each command's output equals the Python call's, on real data (pbmc68k_reduced, STARmap) with small models."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

import omnicell as oc
from conftest import PBMC_GENE_IDS, STARMAP, _pbmc_gene_ids
from omnicell.cli import main

PBMC_TOKENS = ["--use-raw", "--gene-key", PBMC_GENE_IDS, "--n-genes", "120"]


def _cli(*args) -> None:
    assert main([*map(str, args), "--quiet"]) == 0


def _equal(a, b, where: str) -> None:
    """Deep equality of h5ad-read values (arrays exactly, NaN equal to NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            _equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, obj=where)
    elif sp.issparse(a):
        assert sp.issparse(b) and a.shape == b.shape and (a != b).nnz == 0, where
    elif isinstance(a, np.ndarray):
        b = np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        if a.dtype.kind in "fc":
            np.testing.assert_array_equal(a, b, err_msg=where)
        elif a.dtype.names:
            for name in a.dtype.names:
                _equal(a[name], b[name], f"{where}.{name}")
        else:
            assert (a == b).all(), where
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} vs {b!r}"


def assert_same_anndata(cli_path, python_adata, tmp_path) -> None:
    """The CLI's output file holds what the Python call left in ``python_adata`` (compared after an h5ad round trip)."""
    reference = tmp_path / "python.h5ad"
    python_adata.write_h5ad(reference)
    a, b = ad.read_h5ad(cli_path), ad.read_h5ad(reference)
    _equal(a.X, b.X, "X")
    for slot in ("obs", "var"):
        pd.testing.assert_frame_equal(getattr(a, slot), getattr(b, slot), obj=slot)
    for slot in ("obsm", "varm", "obsp", "layers", "uns"):
        _equal(dict(getattr(a, slot)), dict(getattr(b, slot)), slot)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("commands")


@pytest.fixture(scope="module")
def model_dir(pbmc_model, folder):
    path = folder / "pbmc-model"
    pbmc_model.save(path)
    return path


@pytest.fixture(scope="module")
def pbmc_file(folder):
    adata = sc.datasets.pbmc68k_reduced()
    adata.var[PBMC_GENE_IDS] = _pbmc_gene_ids(adata.n_vars)
    adata.raw.var[PBMC_GENE_IDS] = adata.var[PBMC_GENE_IDS].to_numpy()
    adata.obs["batch"] = np.random.default_rng(0).choice(["a", "b"], adata.n_obs)
    path = folder / "pbmc.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def embedded(pbmc_file, model_dir, folder):
    """pbmc68k_reduced embedded by the command (checked against the Python calls in the first test)."""
    path = folder / "embedded.h5ad"
    _cli("embed", pbmc_file, "-o", path, "--model", model_dir, *PBMC_TOKENS, "--batch-size", "128")
    return path


def test_embed(embedded, pbmc_file, model_dir, tmp_path):
    adata = ad.read_h5ad(pbmc_file)
    oc.pp.tokenize(adata, str(model_dir), use_raw=True, gene_key=PBMC_GENE_IDS, n_genes=120)
    oc.tl.embed_cells(adata, str(model_dir), batch_size=128)
    assert_same_anndata(embedded, adata, tmp_path)


def _tsv(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


PERTURBED_CELLS = list(sc.datasets.pbmc68k_reduced().obs_names[::70])  # 10 cells of several types

# (command, its options, the Python call on the input AnnData, the --table it writes or None)
PBMC_TOOLS = {
    "perturb-genes": (
        [
            "--genes",
            "LYZ,CD79A",
            "--cells",
            ",".join(PERTURBED_CELLS),
            "--groupby",
            "bulk_labels",
            "--n-null",
            "3",
            "--batch-size",
            "16",
        ],
        lambda a, m: oc.tl.perturb_genes(
            a, ["LYZ", "CD79A"], cells=PERTURBED_CELLS, groupby="bulk_labels", n_null=3, batch_size=16, model=m
        ),
        lambda a: oc.get.perturbation_df(a),
    ),
    "marker-genes": (
        ["--groupby", "bulk_labels", "--n-genes", "5", "--batch-size", "128", "--pts"],
        lambda a, m: oc.tl.marker_genes(a, "bulk_labels", m, n_genes=5, batch_size=128, pts=True),
        lambda a: sc.get.rank_genes_groups_df(a, None, key="rank_genes_omnicell"),
    ),
    "expert-usage": (
        ["--groupby", "bulk_labels", "--weights", "topk"],
        lambda a, m: oc.tl.expert_usage(a, "bulk_labels", m, weights="topk"),
        None,
    ),
    "gene-importance": (
        ["--groupby", "bulk_labels", "--layers", "1", "--batch-size", "128"],
        lambda a, m: oc.tl.gene_importance(a, m, groupby="bulk_labels", layers=[1], batch_size=128),
        lambda a: oc.tl.importance_roc(a, "bulk_labels"),
    ),
    "embed-genes": (
        ["--n-epochs", "2", "--hidden-dim", "16", "--seed", "3"],
        lambda a, m: oc.tl.embed_genes(a, m, n_epochs=2, hidden_dim=16, random_state=3),
        None,
    ),
    "evaluate-clustering": (
        ["--label-key", "bulk_labels", "--resolutions", "0.3,0.8", "--select", "ari"],
        lambda a, m: oc.tl.evaluate_clustering(a, "bulk_labels", resolutions=[0.3, 0.8], select="ari"),
        lambda a: pd.DataFrame(a.uns["omnicell"]["evaluate_clustering"]["table"]),
    ),
    "cross-validate": (
        ["--label-key", "bulk_labels", "--folds", "2", "--epochs", "2", "--hidden-sizes", "16,8", "--key-added", "cv"],
        lambda a, m: oc.tl.cross_validate_annotation(
            a, "bulk_labels", folds=2, epochs=2, hidden_sizes=[16, 8], key_added="cv"
        ),
        "returned",
    ),
    "dropout-robustness": (
        ["--label-key", "bulk_labels", "--rates", "0.5", "--batch-size", "128"],
        lambda a, m: oc.tl.dropout_robustness(a, m, label_key="bulk_labels", rates=[0.5], batch_size=128),
        lambda a: pd.DataFrame(a.uns["omnicell"]["dropout_robustness"]["table"]),
    ),
}


@pytest.mark.parametrize("command", list(PBMC_TOOLS))
def test_pbmc_tools(command, embedded, model_dir, folder, tmp_path):
    options, call, table = PBMC_TOOLS[command]
    output, table_path = folder / f"{command}.h5ad", folder / f"{command}.tsv"
    extra = ["--table", table_path] if table is not None else []
    _cli(command, embedded, "-o", output, "--model", model_dir, *options, *extra)
    adata = ad.read_h5ad(embedded)
    returned = call(adata, str(model_dir))
    assert_same_anndata(output, adata, tmp_path)
    if table is not None:
        expected = returned if table == "returned" else table(adata)
        written = _tsv(table_path)
        assert len(written) == len(expected) > 0
        numeric = expected.select_dtypes("number").columns
        np.testing.assert_allclose(written[numeric].to_numpy(float), expected[numeric].to_numpy(float), rtol=1e-6)


def test_annotate_with_a_reference_file(embedded, folder, tmp_path):
    reference = ad.read_h5ad(embedded)
    query_path = folder / "query.h5ad"
    reference[::2].copy().write_h5ad(query_path)
    reference_path = folder / "reference.h5ad"
    reference[1::2].copy().write_h5ad(reference_path)
    output = folder / "annotated.h5ad"
    _cli("annotate", query_path, "-o", output, "--reference", reference_path, "--label-key", "bulk_labels",
         "--epochs", "3", "--hidden-sizes", "32,16", "--seed", "5")  # fmt: skip
    query = ad.read_h5ad(query_path)
    oc.tl.annotate(query, ad.read_h5ad(reference_path), "bulk_labels", epochs=3, hidden_sizes=[32, 16], random_state=5)
    assert_same_anndata(output, query, tmp_path)


GENE_MODULES = ["--resolution", "0.5", "--min-size", "3", "--ctrl-size", "20"]


def _written(name: str, folder, request):
    """``folder / name`` as the command of another test writes it; written here when that test has not run
    in this process (pytest-xdist spreads a module's tests over workers, each with its own ``folder``)."""
    output = folder / name
    if output.exists():
        return output
    command = name.removesuffix(".h5ad")
    if command in PBMC_TOOLS:
        embedded, model_dir = request.getfixturevalue("embedded"), request.getfixturevalue("model_dir")
        _cli(command, embedded, "-o", output, "--model", model_dir, *PBMC_TOOLS[command][0])
    elif command == "gene-modules":
        _cli(command, _written("embed-genes.h5ad", folder, request), "-o", output, *GENE_MODULES)
    else:
        starmap_embedded = request.getfixturevalue("starmap_embedded")
        extra = ["--reference", starmap_embedded] if command == "deconvolve" else []
        _cli(command, starmap_embedded, "-o", output, *SPATIAL_TOOLS[command][0], *extra)
    return output


def test_gene_modules_after_embed_genes(folder, tmp_path, request):
    source = _written("embed-genes.h5ad", folder, request)
    output = folder / "gene-modules.h5ad"
    _cli("gene-modules", source, "-o", output, *GENE_MODULES)
    adata = ad.read_h5ad(source)
    oc.tl.gene_modules(adata, resolution=0.5, min_size=3, ctrl_size=20)
    assert_same_anndata(output, adata, tmp_path)


def test_fine_tune_writes_the_same_checkpoint(embedded, model_dir, folder):
    source, output = folder / "few.h5ad", folder / "tuned"
    ad.read_h5ad(embedded)[:120].copy().write_h5ad(source)
    _cli(
        "fine-tune", source, "-o", output, "--model", model_dir, "--batch-size", "32", "--seed", "1", "--device", "cpu"
    )
    model = oc.tl.fine_tune(ad.read_h5ad(source), str(model_dir), batch_size=32, random_state=1, device="cpu")
    tuned = oc.models.load(output, device="cpu")
    expected, written = model.network.state_dict(), tuned.network.state_dict()
    assert expected.keys() == written.keys()
    for key in expected:
        assert (expected[key].cpu() == written[key]).all(), key
    assert not any(path.name.startswith(".") for path in folder.iterdir())  # no temporary left


@pytest.fixture(scope="module")
def starmap_embedded(folder):
    source = folder / "starmap.h5ad"
    ad.read_h5ad(STARMAP)[:160].copy().write_h5ad(source)
    path = folder / "starmap_embedded.h5ad"
    _cli("embed", source, "-o", path, "--spatial", "--n-neighbors", "4", "--n-genes", "48", "--batch-size", "64")
    return path


NICHE_CELLS = list(ad.read_h5ad(STARMAP).obs_names[:160:20])

SPATIAL_TOOLS = {
    "perturb-niche": (
        ["--replace-with", "L4", "--groupby", "domain", "--cells", ",".join(NICHE_CELLS), "--n-null", "2"],
        lambda a, r: oc.tl.perturb_niche(a, cells=NICHE_CELLS, replace_with="L4", groupby="domain", n_null=2),
    ),
    "spatial-domains": (
        ["--n-domains", "3", "--max-steps", "10"],
        lambda a, r: oc.tl.spatial_domains(a, n_domains=3, max_steps=10),
    ),
    "neighborhood-average": (
        ["--use-rep", "X_omnicell", "--n-neighbors", "5"],
        lambda a, r: oc.tl.neighborhood_average(a, use_rep="X_omnicell", n_neighbors=5),
    ),
    "deconvolve": (
        ["--label-key", "cell_type", "--epochs", "20", "--seed", "2"],
        lambda a, r: oc.tl.deconvolve(a, r, "cell_type", epochs=20, random_state=2),
    ),
}


@pytest.mark.parametrize("command", list(SPATIAL_TOOLS))
def test_spatial_tools(command, starmap_embedded, folder, tmp_path):
    options, call = SPATIAL_TOOLS[command]
    output = folder / f"{command}.h5ad"
    extra = ["--reference", starmap_embedded, "--table", folder / "proportions.tsv"] if command == "deconvolve" else []
    _cli(command, starmap_embedded, "-o", output, *options, *extra)
    adata = ad.read_h5ad(starmap_embedded)
    call(adata, ad.read_h5ad(starmap_embedded))
    assert_same_anndata(output, adata, tmp_path)
    if command == "deconvolve":
        table = pd.read_csv(folder / "proportions.tsv", sep="\t", index_col=0)
        np.testing.assert_allclose(table.to_numpy(), adata.obsm["omnicell_proportions"].to_numpy(), rtol=1e-6)
        assert list(table.index) == list(adata.obs_names)


@pytest.mark.slow  # scib-metrics compiles its metrics on first use
def test_benchmark(embedded, folder, tmp_path):
    output, table = folder / "benchmark.h5ad", folder / "benchmark.tsv"
    # only the cheapest metrics: the benchmark itself is tested in tests/tl/test_benchmark.py
    off_bio = ["isolated_labels", "nmi_ari_cluster_labels_leiden", "nmi_ari_cluster_labels_kmeans", "clisi_knn"]
    off_batch = ["bras", "ilisi_knn", "kbet_per_label", "pcr_comparison"]
    bio, batch = {name: False for name in off_bio}, {name: False for name in off_batch}
    _cli("benchmark", embedded, "-o", output, "--label-key", "bulk_labels", "--batch-key", "batch",
         "--embeddings", "X_pca,X_omnicell", "--bio-conservation", json.dumps(bio),
         "--batch-correction", json.dumps(batch), "--table", table)  # fmt: skip
    adata = ad.read_h5ad(embedded)
    oc.tl.benchmark(adata, label_key="bulk_labels", batch_key="batch", embeddings=["X_pca", "X_omnicell"],
                    bio_conservation=bio, batch_correction=batch)  # fmt: skip
    assert_same_anndata(output, adata, tmp_path)
    written = pd.read_csv(table, sep="\t", index_col=0)
    np.testing.assert_allclose(written.to_numpy(float), adata.uns["omnicell"]["benchmark"]["results"].to_numpy(float))
    _cli("plot", "benchmark", output, "-o", folder / "benchmark.png")
    assert (folder / "benchmark.png").read_bytes()[:4] == b"\x89PNG"


MAGIC = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}


@pytest.mark.parametrize(
    ("figure", "source", "options", "suffix"),
    [
        ("markers", "marker-genes.h5ad", ["--groupby", "bulk_labels", "--n-genes", "3"], ".png"),
        ("expert-heatmap", "expert-usage.h5ad", ["--groupby", "bulk_labels", "--no-zscore"], ".pdf"),
        ("gene-modules", "gene-modules.h5ad", ["--groupby", "bulk_labels", "--basis", "umap"], ".svg"),
        ("proportions", "deconvolve.h5ad", ["--ncols", "3", "--types", "@types.txt"], ".png"),
        ("perturbation", "perturb-genes.h5ad", ["--n-genes", "3", "--groups", "CD14+ Monocyte"], ".png"),
    ],
)
def test_plot_writes_the_figure_by_suffix(figure, source, options, suffix, folder, request):
    _written(source, folder, request)
    if figure == "proportions":
        types = list(ad.read_h5ad(folder / source).obsm["omnicell_proportions"].columns[:2])
        (folder / "types.txt").write_text("\n".join(types) + "\n")
        options = [option.replace("@types.txt", f"@{folder / 'types.txt'}") for option in options]
    output = folder / f"{figure}{suffix}"
    _cli("plot", figure, folder / source, "-o", output, *options)
    assert output.read_bytes()[: len(MAGIC[suffix])] == MAGIC[suffix]
    assert output.stat().st_size > 1000
