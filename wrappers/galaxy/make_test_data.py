"""Write the Galaxy tools' test data (``test-data/``) from public data, with the bundled model.

Run from the repository root: ``python wrappers/galaxy/make_test_data.py``. Sources, all available
without download: scanpy's ``pbmc68k_reduced`` (PBMCs, cell types in ``obs['bulk_labels']``, counts
recovered from ``.raw``) and the STARmap section in ``../shared/data/starmap_by3.h5ad`` (spatial,
``obs['cell_type']``). The files are tiny (tens of cells, a few hundred genes) so that every
tool test runs in seconds on a CPU and the folder stays under 1 MB. The "embedded" and
"analysed" files carry the results the downstream tools read (``obsm['X_omnicell']``, gene
embeddings, expert usage...), computed here through the Python API with the same model and seed
as the tools would use.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODEL = "omnicell-tiny"
SEED = 0
FAST_BENCHMARK = {
    "bio_conservation": {"isolated_labels": False, "nmi_ari_cluster_labels_kmeans": False},
    "batch_correction": {"bras": False, "pcr_comparison": False},
}


def _pbmc(n_cells: int, offset: int, n_genes: int | None = 300):
    """``n_cells`` PBMCs (every 7th cell from ``offset``, so all cell types appear) with integer counts.

    They keep their ``n_genes`` genes with most counts (None: all genes).
    """
    import scanpy as sc

    from omnicell.cli._demo import pbmc68k_counts

    counts = pbmc68k_counts()
    reduced = sc.datasets.pbmc68k_reduced()
    index = np.arange(offset, counts.n_obs, 7)[:n_cells]
    adata = counts[index].copy()
    # The genes with most counts keep the file small; the tiny model still sees >100 per cell.
    adata = adata[:, np.sort(np.argsort(-np.asarray(adata.X.sum(axis=0)).ravel(), kind="stable")[:n_genes])].copy()
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2 == 0, "a", "b")
    adata.obs["batch"] = adata.obs["batch"].astype("category")
    adata.obsm["X_pca"] = np.asarray(reduced.obsm["X_pca"][index, :10], dtype=np.float32)
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    return adata


def _starmap(n_cells: int):
    """The ``n_cells`` STARmap cells nearest the section's centre (a contiguous patch), its 300 commonest genes."""
    import anndata as ad

    full = ad.read_h5ad(REPO.parent / "shared" / "data" / "starmap_by3.h5ad")
    coordinates = np.asarray(full.obsm["spatial"], dtype=np.float64)
    centre = np.median(coordinates, axis=0)
    index = np.sort(np.argsort(np.linalg.norm(coordinates - centre, axis=1))[:n_cells])
    adata = full[index].copy()
    adata = adata[:, np.sort(np.argsort(-np.asarray(adata.X.sum(axis=0)).ravel(), kind="stable")[:300])].copy()
    adata.obs = adata.obs[["cell_type", "domain"]].copy()
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obsm = {"spatial": coordinates[index].astype(np.float32)}
    adata.var = adata.var[[]]
    adata.uns = {}
    return adata


def _embedded(adata, *, spatial: bool = False):
    import omnicell as oc

    out = adata.copy()
    oc.pp.tokenize(out, MODEL, spatial=spatial)
    oc.tl.embed_cells(out, MODEL, device="cpu")
    return out


def _slim(adata, *, n_genes: int = 30, keep: tuple[str, ...] = ()):
    """The first genes only, and only the provenance records in ``keep``, for files read for their obsm."""
    out = adata[:, :n_genes].copy()
    records = out.uns.get("omnicell", {})
    out.uns = {"omnicell": {key: records[key] for key in keep if key in records}} if keep else {}
    return out


def _analysed():
    """Every result the plot tool draws, and gene embeddings for gene-modules (150 genes)."""
    import omnicell as oc

    analysed = _embedded(_pbmc(32, 0, n_genes=150))
    oc.tl.embed_genes(analysed, MODEL, device="cpu", random_state=SEED)
    oc.tl.gene_modules(analysed, min_size=3, random_state=SEED)
    oc.tl.expert_usage(analysed, "bulk_labels", MODEL)
    oc.tl.marker_genes(analysed, "bulk_labels", MODEL, n_genes=10, device="cpu")
    # Two tokenised genes (the plot tool's test looks for them), one group and no per-cell layer: the effects table
    # of 150 genes, not one per cell type and gene.
    oc.tl.perturb_genes(analysed, ["PARK7", "C1QA"], model=MODEL, n_null=4, store_cells=False, device="cpu",
                        random_state=SEED)  # fmt: skip
    # A reference of other cells read with the same genes (else map_query warns that the genes read differ).
    reference = _embedded(_pbmc(64, 3, n_genes=None)[:, analysed.var_names].copy())
    oc.tl.map_query(analysed, reference, "bulk_labels", k=5, random_state=SEED)
    # Each HDF5 object costs about 1 KiB in a file this small: of these two results only what their plots read
    # (the effects table; the obs columns and the record of the mapping), to stay under the folder's 1 MiB.
    analysed.uns["omnicell_perturb"] = {"effects": analysed.uns["omnicell_perturb"]["effects"]}
    del analysed.obsm["omnicell_perturb"], analysed.obsm["omnicell_probabilities"]
    records = analysed.uns["omnicell"]
    del records["perturb_genes"], records["by_key"]["perturb_genes"], records["by_key"]["map_query"]
    return analysed


def _write(adata, name: str) -> None:
    path = HERE / "test-data" / name
    # gzip pays for the counts but its chunk indexes cost more than they save on small slots: keep the smaller.
    adata.write_h5ad(path, compression="gzip")
    plain = path.with_suffix(".plain")
    adata.write_h5ad(plain)
    if plain.stat().st_size < path.stat().st_size:
        plain.replace(path)
    plain.unlink(missing_ok=True)
    print(f"{path.relative_to(REPO)}: {adata.n_obs} x {adata.n_vars}, {path.stat().st_size / 1024:.0f} KiB")


def _shards(name: str, count: int) -> None:
    """Shards of ``name`` written by the command line itself (``omnicell embed --shard``), for the merge tool."""
    source = HERE / "test-data" / name
    for index in range(count):
        target = HERE / "test-data" / f"{source.stem}_shard{index}of{count}.h5ad"
        command = [sys.executable, "-m", "omnicell", "embed", str(source), "-o", str(target), "--model", MODEL,
                   "--device", "cpu", "--seed", str(SEED), "--shard", f"{index}/{count}", "--quiet"]  # fmt: skip
        subprocess.run(command, check=True)
        print(f"{target.relative_to(REPO)}: {target.stat().st_size / 1024:.0f} KiB")


def _index(name: str, label_key: str) -> None:
    """A reference index of ``name`` as a tar, written by the command line itself (``omnicell index``), for map."""
    source = HERE / "test-data" / name
    target = HERE / "test-data" / f"{source.stem}_index.tar"
    command = [sys.executable, "-m", "omnicell", "index", str(source), "-o", str(target), "--obs-keys", label_key,
               "--quiet"]  # fmt: skip
    subprocess.run(command, check=True)
    print(f"{target.relative_to(REPO)}: {target.stat().st_size / 1024:.0f} KiB")


def main() -> None:
    """Write every test file (see the module docstring)."""
    import omnicell as oc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-shards", action="store_true", help="skip the shards (they need `omnicell embed --shard`)")
    args = parser.parse_args()
    (HERE / "test-data").mkdir(exist_ok=True)

    oc.settings.progress_bar = False
    pbmc = _pbmc(32, 0)
    _write(pbmc, "pbmc_small.h5ad")
    # genes for embed-genes: 40 that the model's own tokenisation selects (embed_genes reads only those)
    selected = oc.pp.tokenize(pbmc, MODEL, copy=True).var["omnicell_selected"].to_numpy(bool)
    (HERE / "test-data" / "genes.txt").write_text("\n".join(pbmc.var_names[selected][:40]) + "\n", encoding="utf-8")
    embedded = _embedded(pbmc)
    # The tools reading these two use obsm only: 30 genes and no provenance keep the files small.
    _write(_slim(embedded), "pbmc_embedded.h5ad")
    _write(_slim(_embedded(_pbmc(32, 3))), "pbmc_reference.h5ad")
    _index("pbmc_reference.h5ad", "bulk_labels")

    _write(_analysed(), "pbmc_analysed.h5ad")

    # scib-metrics needs more than 90 cells: 100 cells with their embeddings (5 genes), and their scores
    # (the metrics that take long to compile left out, as in tests/tl/test_benchmark.py).
    many = _slim(_embedded(_pbmc(100, 1)), n_genes=5)
    oc.tl.benchmark(many, label_key="bulk_labels", batch_key="batch", exact=False, **FAST_BENCHMARK)
    _write(many, "pbmc_benchmark.h5ad")

    starmap = _starmap(64)
    _write(starmap, "starmap_small.h5ad")
    spatial = _embedded(starmap, spatial=True)
    oc.tl.deconvolve(spatial, spatial.copy(), "cell_type", epochs=50, random_state=SEED, device="cpu")
    _write(_slim(spatial, keep=("deconvolve",)), "starmap_embedded.h5ad")

    if not args.no_shards:
        _shards("pbmc_small.h5ad", 2)
    total = sum(path.stat().st_size for path in (HERE / "test-data").iterdir())
    print(f"test-data: {total / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
