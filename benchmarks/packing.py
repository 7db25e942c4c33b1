"""Packed vs padded forward passes at several padding fractions (same weights, same real tokens).

Usage::

    python benchmarks/packing.py                      # CPU, reduced model, about a minute
    python benchmarks/packing.py --device cuda --d-model 512 --layers 10 --heads 8 --length 2002 --batch-size 32

Prints the best-of-3 ms per forward for ``pack_threshold=None`` (padded, masked attention) and
``0.0`` (packed, cu_seqlens), and the largest difference of the real tokens' states.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=1026)
    parser.add_argument("--backend", default="sdpa")
    parser.add_argument("--fractions", default="0.06,0.2,0.5", help="target padding fractions")
    args = parser.parse_args()
    print("command:", shlex.join(["python", *sys.argv]))
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = OmniCellConfig(num_gene=2000, d_model=args.d_model, heads=args.heads, dim=args.d_model // args.heads,
                            num_layers=args.layers, hidden_dim=4 * args.d_model, dropout=0.0)  # fmt: skip
    network = OmniCell(config, attention_backend=args.backend).to(device).eval()
    batch, length = args.batch_size, args.length
    tokens = torch.randint(4, 2000, (batch, length), device=device)
    values = torch.rand(batch, length, device=device) * 5
    positions = torch.rand(batch, length, 2, device=device) * 100
    print(f"torch {torch.__version__}, {device}, backend {args.backend}, B={batch} T={length} d={args.d_model}")
    for fraction in (float(f) for f in args.fractions.split(",")):
        lengths = (length * (1 - 2 * fraction * torch.rand(batch))).long().clamp(1, length)
        lengths[0] = length
        mask = (torch.arange(length)[None] < lengths[:, None]).to(device)
        results = {}
        for name, threshold in (("padded", None), ("packed", 0.0)):
            network.pack_threshold = threshold
            times = []
            with torch.inference_mode():
                network(tokens, values, positions, mask)
                for _ in range(3):
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    started = time.perf_counter()
                    hidden = network(tokens, values, positions, mask).hidden
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - started)
            results[name] = (min(times) * 1000, hidden)
        difference = (results["packed"][1][mask] - results["padded"][1][mask]).abs().max().item()
        padding = 1 - mask.float().mean().item()
        print(f"padding {padding:5.1%}: padded {results['padded'][0]:8.1f} ms, packed {results['packed'][0]:8.1f} ms "
              f"({results['padded'][0] / results['packed'][0]:.2f}x), max |diff| {difference:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
