"""Memory and time of dataset-level gene embeddings (``oc.tl.embed_genes``) on synthetic cells.

Builds a synthetic AnnData (negative-binomial counts with a few cell programmes; default 20,000
cells x 200 genes), a small random-weight model whose vocabulary covers its genes, then runs
``oc.tl.embed_genes(adata, level="dataset")`` with the released code's settings (k = 15, K = 10,
MLP d -> 128 -> d, 10 epochs, 20-gene batches). It prints, per phase, the wall time and the peak
resident memory above the level before the phase, beside the size a dense cells x cells float32
matrix would take (what the released code's ``torch.cdist`` graph builder allocates).

Phases: ``graph`` (the sparse kNN graph and its GCN normalisation alone, on the cell embeddings
of the first pass) and ``embed_genes`` (the whole call: forward passes, per-cell gene embeddings,
graph, GNN training), then (unless ``--no-spill``) the same call with ``max_memory=0.01`` GB, so
that the per-cell gene embeddings go to a temporary file instead of memory. Both run once
on 300 cells first, so that imports are not counted.
Peak memory is the process high-water mark (``VmHWM``), reset before each phase through
``/proc/self/clear_refs`` (Linux); elsewhere it is cumulative (marked ``*``).

Usage (from the repository root; finds ``src/`` itself when omnicell is not installed)::

    python benchmarks/gene_embeddings.py                        # 20,000 cells x 200 genes
    python benchmarks/gene_embeddings.py --cells 5000 --genes 100 --epochs 2   # quick
    python benchmarks/gene_embeddings.py --json gene_embeddings.json
"""

from __future__ import annotations

import sys
from pathlib import Path

# Scripts in benchmarks/ put this folder first on sys.path, where benchmarks/tokenize.py would
# shadow the standard library's tokenize module (used by inspect, hence torch).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import platform
import resource
import shlex
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
try:
    import omnicell  # noqa: F401
except ImportError:  # pragma: no cover - running from a checkout
    sys.path.insert(0, str(ROOT / "src"))


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _rss_mib(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` in MiB (Linux), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024**2


class Phase:
    """Wall time and peak RSS above the starting level of a block of code."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Phase:
        self.exact = _reset_peak()
        self.start_rss = _rss_mib("VmRSS")
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.peak_rss = _rss_mib("VmHWM")
        self.peak_above_start = self.peak_rss - self.start_rss


def synthetic(n_cells: int, n_genes: int, seed: int):
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n_programmes = 8
    programme = rng.integers(0, n_programmes, n_cells)
    base = rng.gamma(0.6, 1.0, n_genes)
    loadings = rng.gamma(0.5, 2.0, (n_programmes, n_genes)) * (rng.random((n_programmes, n_genes)) < 0.15)
    mean = (base + loadings[programme]) * rng.lognormal(0, 0.3, n_cells)[:, None]
    counts = rng.negative_binomial(2, 2 / (2 + mean)).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts))
    adata.var_names = [f"ENSG{i:011d}" for i in range(1, n_genes + 1)]
    adata.obs_names = [f"cell{i}" for i in range(n_cells)]
    adata.obs["programme"] = programme.astype(str)
    return adata


def random_model(genes: list[str], path: Path, *, d_model: int, layers: int, seed: int):
    import torch

    import omnicell as oc
    from omnicell.data import Vocabulary
    from omnicell.nn import OmniCell, OmniCellConfig

    tokens = {"<RNA_START>": 0, "<RNA_END>": 1, "<ATAC_START>": 2, "<ATAC_END>": 3}
    tokens.update({gene: i + 4 for i, gene in enumerate(genes)})
    config = OmniCellConfig(
        num_gene=len(tokens), d_model=d_model, heads=4, num_layers=layers, hidden_dim=2 * d_model,
        num_shared=2, num_routing=6, topk=2, dim=d_model // 4, token_per_cell=len(genes),
    )  # fmt: skip
    torch.manual_seed(seed)
    network = OmniCell(config)
    for parameter in network.parameters():
        if parameter.dim() > 1:
            torch.nn.init.normal_(parameter, std=0.2)
    model = oc.models.OmniCellModel(network.eval(), Vocabulary(tokens), name="synthetic-random", sha256="0" * 64)
    model.save(path, overwrite=True)
    return oc.models.load(path, device="cpu")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--genes", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256, help="cells per forward pass")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on a shared CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-spill", action="store_true", help="skip the run with cell-level embeddings spilled to a temporary file"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import omnicell as oc
    from omnicell._engine.plan import plan_inference
    from omnicell.tl._gene_states import collect_cell_gene_embeddings, gene_index
    from omnicell.tl._gpr_gnn import gcn_propagation, knn_kernel_graph

    oc.settings.progress_bar = False
    print(f"omnicell {oc.__version__}, torch {torch.__version__}, {platform.platform()}, {args.threads} thread(s)")
    print("command:", shlex.join([sys.executable, *sys.argv]))
    adata = synthetic(args.cells, args.genes, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        model = random_model(list(adata.var_names), Path(folder) / "model", d_model=args.d_model, layers=args.layers,
                             seed=args.seed)  # fmt: skip
        oc.pp.tokenize(adata, model, genes=list(adata.var_names))
        plan = plan_inference(adata, model, batch_size=args.batch_size, device="cpu", precision="float32")
        basis = model.spectral_basis(0.9)
        m = basis.shape[1]
        # The cell embeddings the graph is built on (one pass; not part of the measured phases).
        source, cells = collect_cell_gene_embeddings(plan, gene_index(adata, plan), basis, genes=np.arange(0),
                                                     cell_embeddings=True)  # fmt: skip
        source.close()
        # Warm-up on a few cells, so that imports and one-off allocations (sklearn, torch's
        # optimiser machinery) are not counted in the phases.
        gcn_propagation(knn_kernel_graph(cells[:300], 15))
        oc.tl.embed_genes(adata[:300].copy(), model, n_epochs=1, device="cpu", precision="float32")
        phases = []
        with Phase("graph") as phase:
            graph = knn_kernel_graph(cells, 15)
            propagation = gcn_propagation(graph)
        phases.append(phase)
        n_edges = int(propagation._nnz())
        del graph, propagation
        with Phase("embed_genes") as phase:
            oc.tl.embed_genes(adata, model, batch_size=args.batch_size, n_epochs=args.epochs, device="cpu",
                              precision="float32", random_state=args.seed)  # fmt: skip
        phases.append(phase)
        if not args.no_spill:
            first = adata.varm["omnicell"].copy()
            with Phase("embed_genes, spilled to disk") as phase:
                oc.tl.embed_genes(adata, model, batch_size=args.batch_size, n_epochs=args.epochs, device="cpu",
                                  precision="float32", random_state=args.seed, max_memory=0.01)  # fmt: skip
            phases.append(phase)
            same = bool(np.allclose(first, adata.varm["omnicell"], rtol=1e-5, atol=1e-6, equal_nan=True))

    dense = args.cells**2 * 4 / 1024**2
    per_cell_genes = args.cells * args.genes * m * 4 / 1024**2
    losses = np.asarray(adata.uns["omnicell"]["embed_genes"]["loss"])
    print(f"\n{args.cells:,} cells x {args.genes} genes, {m} embedding dimensions, k = 15 ({n_edges:,} propagation "
          f"entries incl. self-loops), {args.epochs} epochs")  # fmt: skip
    print(f"dense cells x cells float32 matrix: {dense:,.0f} MiB")
    print(f"cell-level gene embeddings (cells x genes x dims float32, held while training): {per_cell_genes:,.0f} MiB")
    print(f"{'phase':<30} {'seconds':>9} {'peak RSS above start (MiB)':>28} {'peak / dense':>13}")
    for phase in phases:
        mark = "" if phase.exact else "*"
        print(f"{phase.name:<30} {phase.seconds:9.1f} {phase.peak_above_start:27.0f}{mark} "
              f"{phase.peak_above_start / dense:13.3f}")  # fmt: skip
    if not args.no_spill:
        print(f"spilled run gives the same embeddings as the in-memory run: {same}")
    print(f"training loss per epoch: {np.array2string(losses, precision=4)}")
    result = {
        "cells": args.cells, "genes": args.genes, "dims": m, "epochs": args.epochs, "threads": args.threads,
        "dense_cells_x_cells_mib": dense, "cell_level_gene_embeddings_mib": per_cell_genes,
        "propagation_entries": n_edges, "loss": losses.tolist(),
        "phases": {p.name: {"seconds": p.seconds, "peak_rss_above_start_mib": p.peak_above_start,
                            "peak_rss_mib": p.peak_rss, "exact": p.exact} for p in phases},
        "torch": torch.__version__, "command": shlex.join([sys.executable, *sys.argv]),
    }  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    if sys.platform.startswith("linux") and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # glibc raises its mmap threshold as large blocks are freed and then keeps later blocks in
        # the heap, so the resident size would overstate live memory; a fixed threshold returns
        # freed blocks to the system. The variable is read at start-up: run again with it set.
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    main()
