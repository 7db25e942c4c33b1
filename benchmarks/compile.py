"""Does ``torch.compile`` make the forward pass faster here? Median ms per forward, eager vs compiled.

Usage::

    python benchmarks/compile.py --d-model 128 --layers 2 --batch-size 4 --length 514   # CPU, ~3 min

Prints the one-off compile time too: a run must embed enough batches of one shape to repay it
(packed batches change shape from batch to batch and would recompile).
"""

from __future__ import annotations

import os
import sys

# Keep this folder off the import path (benchmarks/tokenize.py shadows the standard library).
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here]

import argparse
import shlex
import time
from pathlib import Path

import torch

try:
    from omnicell.nn import OmniCell, OmniCellConfig
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from omnicell.nn import OmniCell, OmniCellConfig


def median_ms(function, repeats: int) -> float:
    with torch.inference_mode():
        function()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            function()
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--length", type=int, default=2002)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("command:", shlex.join(["python", *sys.argv]))
    torch.manual_seed(0)
    config = OmniCellConfig(num_gene=2000, d_model=args.d_model, heads=args.heads, dim=args.d_model // args.heads,
                            num_layers=args.layers, hidden_dim=4 * args.d_model, dropout=0.0)  # fmt: skip
    network = OmniCell(config).eval()
    tokens = torch.randint(4, 2000, (args.batch_size, args.length))
    values = torch.rand(args.batch_size, args.length) * 5
    eager = median_ms(lambda: network(tokens, values).hidden, args.repeats)
    compiled = torch.compile(network)
    started = time.perf_counter()
    with torch.inference_mode():
        compiled(tokens, values)
    compile_s = time.perf_counter() - started
    fast = median_ms(lambda: compiled(tokens, values).hidden, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={args.batch_size} T={args.length} "
          f"d={args.d_model} layers={args.layers}: eager {eager:.1f} ms, compiled {fast:.1f} ms "
          f"({eager / fast:.2f}x), compile {compile_s:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
