"""Tokenisation throughput and the memory of embedding a backed file.

Usage::

    python benchmarks/tokenize.py                       # 200,000 cells x 30,000 genes, ~2,000 expressed
    python benchmarks/tokenize.py --cells 20000 --memory-sizes 2000,8000   # quicker

Part 1 builds the model inputs of every cell of a synthetic sparse count matrix with omnicell's
batch builder, for the released rule (``strategy="hvg"``: one 2,000-gene list for all cells) and
the paper's rule (``strategy="expressed"``), and beside it a plain per-cell Python implementation
of each rule on a subset of the cells; the ratio of cells/s is the figure. Each time is the best of
``--repeats`` runs, for the builder and the loops alike; the builder first builds one small batch,
which loads (or, on a first run, compiles) its numba kernels.

Part 2 writes backed h5ad files of two sizes and runs ``tokenize`` + ``embed_cells`` on each in a
fresh process (a small random model over the same genes), reporting the peak resident memory:
with chunked reading it should not grow with the number of cells.
"""

from __future__ import annotations

import os
import sys

# This file shares its name with the standard library's ``tokenize`` module, which numpy and
# others import: put this folder last on the import path so they find the real one (and this
# script still finds _synthetic.py beside it).
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here] + [_here]

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from _synthetic import synthetic_counts

N_SPECIAL = ("<RNA_START>", "<RNA_END>", "<ATAC_START>", "<ATAC_END>")


def per_cell_official(matrix: sp.csr_matrix, columns: np.ndarray, gene_tokens: np.ndarray, rows: np.ndarray) -> list:
    """The released rule written one cell at a time (how the official code does it)."""
    sequences = []
    for row in rows:
        values = matrix[row, columns].toarray().ravel()
        levels = sorted(set(values.tolist()) | {0.0})
        level_of = {value: i for i, value in enumerate(levels)}
        top = max(len(levels) - 1, 1)
        soft = [5.0 * level_of[v] / top for v in values]
        tokens = [-1, *gene_tokens.tolist(), -2]
        sequences.append((tokens, [0.0, *soft, 0.0]))
    return sequences


def per_cell_paper(
    matrix: sp.csr_matrix, fill_order: np.ndarray, gene_tokens: np.ndarray, n_genes: int, rows: np.ndarray
) -> list:
    """The paper's rule one cell at a time: expressed genes by descending value, then zero fill genes."""
    sequences = []
    for row in rows:
        values = matrix[row].toarray().ravel()
        expressed = np.flatnonzero(values)
        expressed = expressed[np.argsort(-values[expressed], kind="stable")][:n_genes]
        taken = set(expressed.tolist())
        fill = [g for g in fill_order.tolist() if g not in taken][: n_genes - len(expressed)]
        genes = [*expressed.tolist(), *fill]
        chosen = values[genes]
        levels = sorted(set(chosen.tolist()) | {0.0})
        level_of = {value: i for i, value in enumerate(levels)}
        top = max(len(levels) - 1, 1)
        sequences.append(
            ([-1, *gene_tokens[genes].tolist(), -2], [0.0, *(5.0 * level_of[v] / top for v in chosen), 0.0])
        )
    return sequences


def tokenisation(args: argparse.Namespace) -> dict:
    from omnicell.data import batch_for_cells, seurat_v3_scores, top_variable

    started = time.perf_counter()
    matrix = synthetic_counts(args.cells, args.genes, args.expressed)
    print(
        f"matrix: {matrix.shape[0]:,} cells x {matrix.shape[1]:,} genes, "
        f"{matrix.nnz / matrix.shape[0]:.0f} expressed per cell "
        f"(built in {time.perf_counter() - started:.1f} s)"
    )
    all_columns = np.arange(args.genes)
    gene_tokens = np.arange(args.genes, dtype=np.int64)
    started = time.perf_counter()
    scores = seurat_v3_scores(matrix, all_columns)
    hvg_seconds = time.perf_counter() - started
    ranked = top_variable(scores, args.n_genes)
    print(f"seurat_v3 gene score over all cells (2 chunked passes): {hvg_seconds:.1f} s")

    results = {"cells": args.cells, "genes": args.genes, "hvg_seconds": hvg_seconds}
    setups = {
        "hvg": dict(columns=np.sort(ranked), gene_tokens=gene_tokens[np.sort(ranked)], zero_fill=None, n_genes=None),
        "expressed": dict(columns=all_columns, gene_tokens=gene_tokens, zero_fill=ranked, n_genes=args.n_genes),
    }

    # Each figure is the best of --repeats runs (as timeit does), for the builder and the loop alike:
    # on a shared machine the slowest runs measure the neighbours, not the code.
    def best_seconds(run) -> float:
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    for name, setup in setups.items():

        def build(focal: np.ndarray, setup: dict = setup) -> None:
            batch_for_cells(matrix, focal, setup["columns"], setup["gene_tokens"], rna_start=-1, rna_end=-2,
                            zero_fill=setup["zero_fill"], n_genes=setup["n_genes"])  # fmt: skip

        def build_all(build=build) -> None:
            for start in range(0, args.cells, args.batch_size):
                build(np.arange(start, min(start + args.batch_size, args.cells)))

        build(np.arange(min(8, args.cells)))  # loads (or compiles, on a first run) the numba kernels: once per process
        seconds = best_seconds(build_all)
        results[f"{name}_cells_per_s"] = args.cells / seconds
        print(
            f"omnicell strategy={name:<9}: {args.cells:,} cells in {seconds:.1f} s = "
            f"{args.cells / seconds:,.0f} cells/s"
        )

    rows = np.arange(min(args.loop_cells, args.cells))
    loops = {
        "hvg": lambda: per_cell_official(matrix, np.sort(ranked), gene_tokens[np.sort(ranked)], rows),
        "expressed": lambda: per_cell_paper(matrix, ranked, gene_tokens, args.n_genes, rows),
    }
    for name, loop in loops.items():
        seconds = best_seconds(loop)
        results[f"{name}_loop_cells_per_s"] = len(rows) / seconds
        print(
            f"per-cell loop strategy={name:<9}: {len(rows):,} cells in {seconds:.1f} s = "
            f"{len(rows) / seconds:,.0f} cells/s"
        )
    for name in loops:
        ratio = results[f"{name}_cells_per_s"] / results[f"{name}_loop_cells_per_s"]
        results[f"{name}_speedup"] = ratio
        print(f"speed-up of the vectorised builder over the per-cell loop, strategy={name}: {ratio:.0f}x")
    return results


# The child resets its peak-RSS counter first: Linux keeps ru_maxrss across fork and exec, so the
# parent's (large) footprint would otherwise show up as the child's peak.
MEMORY_CHILD = """
import sys, time
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
import anndata as ad, omnicell as oc
oc.settings.progress_bar = False
model = oc.models.load(sys.argv[2], device="cpu")
adata = ad.read_h5ad(sys.argv[1], backed="r")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
baseline = peak_mib()
started = time.perf_counter()
oc.pp.tokenize(adata, model, n_genes=int(sys.argv[3]))
oc.tl.embed_cells(adata, model, batch_size=64)
print(adata.n_obs, time.perf_counter() - started, peak_mib(), baseline)
"""


def backed_memory(args: argparse.Namespace) -> list[dict]:
    import anndata as ad
    import torch

    from omnicell.data import Vocabulary
    from omnicell.models import OmniCellModel
    from omnicell.nn import OmniCell, OmniCellConfig

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        genes = [f"ENSG{i:011d}" for i in range(args.genes)]
        vocab = Vocabulary(
            {**{g: i for i, g in enumerate(genes)}, **{t: args.genes + i for i, t in enumerate(N_SPECIAL)}}
        )
        torch.manual_seed(0)
        config = OmniCellConfig(num_gene=args.genes + 4, d_model=32, heads=4, dim=8, num_layers=2, hidden_dim=64,
                                num_shared=2, num_routing=4, topk=2, token_per_cell=args.memory_genes)  # fmt: skip
        OmniCellModel(OmniCell(config), vocab, name="bench", sha256="-").save(folder / "model")
        for size in args.memory_sizes:
            matrix = synthetic_counts(size, args.genes, args.expressed, seed=size)
            adata = ad.AnnData(X=matrix)
            adata.var_names = genes
            path = folder / f"cells_{size}.h5ad"
            adata.write_h5ad(path)
            del adata, matrix
            output = subprocess.run(
                [sys.executable, "-c", MEMORY_CHILD, str(path), str(folder / "model"), str(args.memory_genes)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            n_obs, seconds, peak_mib, baseline_mib = output.stdout.split()
            rows.append({"cells": int(n_obs), "seconds": float(seconds), "peak_rss_mib": float(peak_mib),
                         "rss_before_mib": float(baseline_mib), "file_mib": path.stat().st_size / 2**20})  # fmt: skip
            print(
                f"backed {int(n_obs):>8,} cells ({rows[-1]['file_mib']:.0f} MiB on disk): tokenize + embed_cells "
                f"{float(seconds):.1f} s, peak RSS {float(peak_mib):.0f} MiB "
                f"(process at start: {float(baseline_mib):.0f} MiB)"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--genes", type=int, default=30_000)
    parser.add_argument("--expressed", type=int, default=2_000, help="draws per cell (about this many expressed genes)")
    parser.add_argument("--n-genes", type=int, default=2_000, help="genes per cell sequence")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--loop-cells", type=int, default=2_000, help="cells run through the per-cell loop")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best is reported")
    parser.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[5_000, 20_000])
    parser.add_argument("--memory-genes", type=int, default=500, help="genes per cell in the memory runs")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-tokenisation", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print("command:", " ".join(["python", *sys.argv]))
    results = {}
    if not args.skip_memory:  # first, while this process is still small
        results["backed_memory"] = backed_memory(args)
    if not args.skip_tokenisation:
        results["tokenisation"] = tokenisation(args)
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
