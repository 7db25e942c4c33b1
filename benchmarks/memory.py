"""Peak memory of ``omnicell embed`` (tokenise + embed, streamed to the output file) against the number of cells.

Usage::

    python benchmarks/memory.py                          # 10,000 and 100,000 cells, backed h5ad and SOMA
    python benchmarks/memory.py --sizes 2000,20000 --no-soma   # quicker

For each size a synthetic count matrix (``--genes`` Ensembl-like genes, about ``--expressed``
expressed per cell) is written as an h5ad and, unless ``--no-soma``, as a TileDB-SOMA experiment
(``tiledbsoma.io.from_anndata``). A fresh process then runs ``omnicell embed INPUT -o OUT`` (the
highly-variable-gene pass over all cells, tokenisation and a small random model) and reports its
peak resident memory (VmHWM) from after its imports to the end, so the figure is what the run
itself adds. The ratio largest/smallest size is the figure of merit: with streaming it stays
close to 1 (the target is below 1.10 from 10,000 to 100,000 cells).
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the standard library's tokenize module: this folder goes last on the path.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here] + [_here]

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from _synthetic import synthetic_counts

N_SPECIAL = ("<RNA_START>", "<RNA_END>", "<ATAC_START>", "<ATAC_END>")

# The child resets its peak-RSS counter after the imports (Linux keeps the high-water mark across
# exec, and imports are the same for every size), runs the command line, and prints its peak.
CHILD = """
import sys, time
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
import anndata, torch, omnicell, omnicell.cli, omnicell.pp, omnicell.tl, omnicell.cli._embed_file
try:
    import tiledbsoma, dask.array
except ImportError:
    pass
torch.set_num_threads(1)
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
baseline = peak_mib()
started = time.perf_counter()
status = omnicell.cli.main(sys.argv[1:])
print("RESULT", status, time.perf_counter() - started, peak_mib(), baseline)
"""


def write_model(folder: Path, genes: list[str], n_genes: int) -> Path:
    import torch

    from omnicell.data import Vocabulary
    from omnicell.models import OmniCellModel
    from omnicell.nn import OmniCell, OmniCellConfig

    vocab = Vocabulary({**{g: i for i, g in enumerate(genes)}, **{t: len(genes) + i for i, t in enumerate(N_SPECIAL)}})
    torch.manual_seed(0)
    config = OmniCellConfig(num_gene=len(genes) + 4, d_model=32, heads=4, dim=8, num_layers=2, hidden_dim=64,
                            num_shared=2, num_routing=4, topk=2, token_per_cell=n_genes)  # fmt: skip
    OmniCellModel(OmniCell(config), vocab, name="bench", sha256="-").save(folder / "model")
    return folder / "model"


def measure(source: str, output: Path, model: Path, args: argparse.Namespace) -> dict:
    command = ["embed", source, "-o", str(output), "--model", str(model), "--n-genes", str(args.n_genes),
               "--batch-size", str(args.batch_size), "--device", "cpu", "--quiet"]  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, *command], capture_output=True, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
    if completed.returncode != 0 or not lines or lines[0].split()[1] != "0":
        raise RuntimeError(f"omnicell {' '.join(command)} failed:\n{completed.stderr[-3000:]}")
    _, _, seconds, peak, baseline = lines[0].split()
    output.unlink()
    return {"seconds": float(seconds), "peak_mib": float(peak), "after_imports_mib": float(baseline)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000])
    parser.add_argument("--genes", type=int, default=3_000)
    parser.add_argument("--expressed", type=int, default=300, help="draws per cell (about this many expressed genes)")
    parser.add_argument("--n-genes", type=int, default=64, help="genes per cell sequence")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--no-soma", action="store_true", help="measure the backed h5ad input only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print("command:", " ".join(["python", *sys.argv]))
    import anndata as ad

    kinds = ["h5ad"] if args.no_soma else ["h5ad", "soma"]
    if "soma" in kinds:
        import tiledbsoma.io
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        genes = [f"ENSG{i:011d}" for i in range(args.genes)]
        model = write_model(folder, genes, args.n_genes)
        for size in args.sizes:
            started = time.perf_counter()
            adata = ad.AnnData(X=synthetic_counts(size, args.genes, args.expressed, seed=size))
            adata.var_names = genes
            adata.obs_names = [f"cell{i}" for i in range(size)]
            sources = {"h5ad": str(folder / f"cells_{size}.h5ad")}
            adata.write_h5ad(sources["h5ad"])
            if "soma" in kinds:
                sources["soma"] = tiledbsoma.io.from_anndata(
                    str(folder / f"soma_{size}"), adata, measurement_name="RNA"
                )
            del adata
            print(f"{size:,} cells written in {time.perf_counter() - started:.0f} s")
            for kind in kinds:
                row = {"cells": size, **measure(sources[kind], folder / "out.h5ad", model, args)}
                results[kind].append(row)
                print(
                    f"  {kind:<4} {size:>9,} cells: omnicell embed {row['seconds']:.1f} s, "
                    f"peak RSS {row['peak_mib']:.0f} MiB (after imports {row['after_imports_mib']:.0f} MiB)"
                )
    for kind, rows in results.items():
        ratio = rows[-1]["peak_mib"] / rows[0]["peak_mib"]
        print(f"{kind}: peak RSS ratio {rows[-1]['cells']:,} / {rows[0]['cells']:,} cells = {ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
