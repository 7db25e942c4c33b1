"""End-to-end embedding benchmark: an h5ad file in, ``obsm`` out, tokenisation included.

For each mode and attention backend the script reads a synthetic backed h5ad, runs
``oc.pp.tokenize`` and ``oc.tl.embed_cells`` and prints: cells/s, real tokens/s, achieved TFLOP/s
and MFU (with ``--peak-tflops``), peak memory, and the share of the time spent in tokenisation.
The model has random weights at the official shape unless reduced with the options.

Modes
-----
``single``
    single-cell mode, ``--genes-per-cell`` genes (released size 2,000: 2,002 tokens per cell).
``spatial``
    spatial windows of 1 + ``--neighbors`` cells (released size 10 x 2,002 tokens), one section.
``spatial-ragged``
    spatial windows cut by small sections of ``--section-size`` cells, so windows miss neighbours
    (padding), run twice: ``packed`` (padding removed, cu_seqlens) and ``padded`` (masking).

Usage (from the repository root)::

    # CPU, reduced model and sizes (a few minutes on 2 busy cores)
    python benchmarks/embed.py --device cpu --cells 48 --genes 3000 --genes-per-cell 128 \\
        --layers 2 --d-model 128 --heads 2 --neighbors 4 --section-size 3 --batch-size 8

    # H100/H200, released size, bf16 autocast
    python benchmarks/embed.py --device cuda --cells 4096 --batch-size 64 --peak-tflops 989 \\
        --backends sdpa,triton,flash_attn

FLOPs are counted as in ``benchmarks/forward.py`` (matrix multiplies only) over the *real* tokens
of every sequence, so a padded run is charged no extra FLOPs for its padding: its lower TFLOP/s is
the waste packing removes.
"""

from __future__ import annotations

import os
import sys

# This folder goes last on the import path (benchmarks/tokenize.py shadows the standard library).
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here] + [_here]

import argparse
import importlib.util
import resource
import shlex
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from _synthetic import synthetic_counts

try:
    import omnicell as oc
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import omnicell as oc

SPECIAL = ("<RNA_START>", "<RNA_END>", "<ATAC_START>", "<ATAC_END>")


def synthetic_h5ad(path: Path, n_cells: int, n_genes: int, expressed: int, section_size: int, seed: int) -> None:
    import anndata as ad

    adata = ad.AnnData(X=synthetic_counts(n_cells, n_genes, expressed, seed=seed, chunk=max(n_cells, 1)))
    rng = np.random.default_rng(seed + 1)  # the coordinates
    adata.var_names = [f"ENSG{i:011d}" for i in range(n_genes)]
    adata.obs_names = [f"cell{i}" for i in range(n_cells)]
    adata.obsm["spatial"] = rng.uniform(0, 1000, size=(n_cells, 2))
    adata.obs["section"] = [f"s{i // section_size}" for i in range(n_cells)]
    adata.write_h5ad(path)


def model_flops(config: oc.nn.OmniCellConfig, lengths: np.ndarray) -> float:
    """Matmul FLOPs of one forward over sequences of the given real lengths (as forward.py)."""
    d, h, r = config.d_model, int(config.hidden_dim), config.num_routing
    per_token = config.num_layers * (8 * d * d + 6 * d * h) + 2 * d * d + 4 * d * r
    attention = config.num_layers * 4 * d * np.square(lengths.astype(np.float64)).sum()
    return float(per_token * lengths.sum() + attention)


class PeakMemory:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif os.path.exists("/proc/self/clear_refs"):
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")

    def read_mib(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if os.path.exists("/proc/self/status"):
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(args, model, path: Path, mode: str, backend: str, packed: bool, device: torch.device) -> dict:
    import anndata as ad

    adata = ad.read_h5ad(path, backed="r")
    spatial = mode != "single"
    model.network.set_attention_backend(backend)
    model.network.pack_threshold = 0.05 if packed else None
    memory = PeakMemory(device)
    memory.reset()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    oc.pp.tokenize(
        adata, model, n_genes=args.genes_per_cell, strategy=args.strategy, spatial=spatial,
        n_neighbors=args.neighbors, library_key="section" if mode == "spatial-ragged" else None,
    )  # fmt: skip
    tokenized = time.perf_counter()
    oc.tl.embed_cells(adata, model, batch_size=args.batch_size, device=str(device), precision=args.precision)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    # real tokens per sequence: (genes + 2) per present cell block
    n_blocks = 1 + (adata.obsm["omnicell_neighbors"] >= 0).sum(1) if spatial else np.ones(adata.n_obs, dtype=int)
    genes = min(args.genes_per_cell, adata.n_vars)
    lengths = n_blocks * (genes + 2)
    flops = model_flops(model.config, lengths)
    padded_tokens = (1 + args.neighbors if spatial else 1) * (genes + 2) * adata.n_obs  # the padded layout
    row = {
        "mode": mode,
        "backend": backend,
        "layout": "packed" if packed else "padded",
        "cells_per_s": adata.n_obs / seconds,
        "tokens_per_s": lengths.sum() / seconds,
        "tflops": flops / seconds / 1e12,
        "peak_mib": memory.read_mib(),
        "tokenize_share": (tokenized - started) / seconds,
        "padding": 1 - lengths.sum() / padded_tokens,
        "seconds": seconds,
    }
    if args.peak_tflops:
        row["mfu"] = row["tflops"] / args.peak_tflops
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--cells", type=int, default=2048)
    parser.add_argument("--genes", type=int, default=20_000, help="genes in the file (and the vocabulary)")
    parser.add_argument("--expressed", type=int, default=3_000, help="draws per cell (about this many expressed)")
    parser.add_argument("--genes-per-cell", type=int, default=2_000)
    parser.add_argument("--strategy", default="hvg", choices=("hvg", "expressed"))
    parser.add_argument("--neighbors", type=int, default=9)
    parser.add_argument("--section-size", type=int, default=6, help="cells per section in spatial-ragged mode")
    parser.add_argument("--modes", default="single,spatial,spatial-ragged")
    parser.add_argument("--backends", default="sdpa", help="comma-separated; unavailable ones are skipped")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (e.g. 989 bf16 H100)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else args.device)
    if device.type == "auto":
        device = torch.device("cpu")
    print("command:", shlex.join(["python", *sys.argv]))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, device {device} ({where})")
    oc.settings.progress_bar = False
    warnings.filterwarnings("ignore", category=UserWarning)  # missing neighbours, empty cells: expected here

    head_dim = args.d_model // args.heads
    config = oc.nn.OmniCellConfig(
        num_gene=args.genes + len(SPECIAL), d_model=args.d_model, heads=args.heads, dim=head_dim,
        num_layers=args.layers, hidden_dim=4 * args.d_model, dropout=0.0, token_per_cell=args.genes_per_cell,
    )  # fmt: skip
    genes = [f"ENSG{i:011d}" for i in range(args.genes)]
    vocab = oc.data.Vocabulary(
        {**{g: i for i, g in enumerate(genes)}, **{t: args.genes + i for i, t in enumerate(SPECIAL)}}
    )
    torch.manual_seed(0)
    model = oc.models.OmniCellModel(oc.nn.OmniCell(config), vocab, name="bench", sha256="-")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cells.h5ad"
        synthetic_h5ad(path, args.cells, args.genes, args.expressed, args.section_size, seed=0)
        for mode in args.modes.split(","):
            for backend in args.backends.split(","):
                if backend == "triton" and (device.type != "cuda" or importlib.util.find_spec("triton") is None):
                    print(f"skip {backend}: needs CUDA and triton")
                    continue
                if backend == "flash_attn" and (device.type != "cuda" or not oc.nn.flash_attn_available()):
                    print(f"skip {backend}: needs CUDA and flash-attn")
                    continue
                for packed in (True, False) if mode == "spatial-ragged" else (True,):
                    rows.append(run_case(args, model, path, mode, backend, packed, device))
                    r = rows[-1]
                    print(
                        f"{r['mode']:<15} {r['backend']:<10} {r['layout']:<7} padding {r['padding']:5.1%}  "
                        f"{r['cells_per_s']:9.1f} cells/s {r['tokens_per_s']:11,.0f} tokens/s "
                        f"{r['tflops']:8.3f} TFLOP/s" + (f" MFU {r['mfu']:.1%}" if "mfu" in r else "") +
                        f"  peak {r['peak_mib']:8.0f} MiB  tokenize {r['tokenize_share']:.0%} of {r['seconds']:.1f} s"
                    )  # fmt: skip


if __name__ == "__main__":
    main()
