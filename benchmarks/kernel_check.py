"""Correctness of the fused rotary attention kernel against SDPA, at realistic shapes.

Prints the max |difference| per dtype between ``attention_backend="triton"`` and ``"sdpa"``
(the kernel alone on packed ragged sequences, then the whole network, single-cell and spatial) and
exits 1 if any exceeds its bound. On CUDA it runs the compiled kernel; with ``--device cpu`` it
runs Triton's interpreter on small shapes (a smoke test of this script).

Usage::

    python benchmarks/kernel_check.py --device cuda          # released sizes (2,002 / 20,020 tokens)
    python benchmarks/kernel_check.py --device cpu           # interpreter, small shapes
"""

from __future__ import annotations

import os
import sys

if "--device" in sys.argv and sys.argv[sys.argv.index("--device") + 1] == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here]

import argparse
import shlex
import time
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    from omnicell.nn import OmniCell, OmniCellConfig, RotaryEmbedding2D
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from omnicell.nn import OmniCell, OmniCellConfig, RotaryEmbedding2D
from omnicell.nn._triton_attention import rotary_attention

BOUNDS = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def kernel_case(device, dtype, lengths, heads, head_dim) -> float:
    generator = torch.Generator().manual_seed(0)
    n = sum(lengths)
    q, k, v = (torch.randn(n, heads, head_dim, generator=generator).to(device, dtype) for _ in range(3))
    positions = (torch.rand(n, 2, generator=generator) * 2000).to(device)
    rotary = RotaryEmbedding2D(head_dim, 10000.0)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)
    out = rotary_attention(q, k, v, cu, max(lengths), positions, rotary.inv_freq)
    worst, start = 0.0, 0
    for length in lengths:
        part = [t[start : start + length].transpose(0, 1)[None] for t in (q, k, v)]
        cos, sin = rotary.angles(positions[None, start : start + length])
        part[0], part[1] = (RotaryEmbedding2D.rotate(t, cos, sin) for t in part[:2])
        reference = F.scaled_dot_product_attention(*(t.float() for t in part))[0].transpose(0, 1)
        worst = max(worst, float((out[start : start + length].float() - reference).abs().max()))
        start += length
    return worst


def network_case(device, dtype, config, batch, cells, genes) -> float:
    torch.manual_seed(0)
    network = OmniCell(config).to(device).eval()
    length = cells * (genes + 2)
    tokens = torch.randint(4, config.num_gene, (batch, length), device=device)
    values = torch.rand(batch, length, device=device) * 5
    positions = None
    if cells > 1:
        positions = (
            (torch.rand(batch, cells, 1, 2, device=device) * 2000)
            .expand(-1, -1, genes + 2, -1)
            .reshape(batch, length, 2)
        )
    mask = torch.ones(batch, length, dtype=torch.bool, device=device)
    mask[0, length // 2 :] = False  # one ragged sequence
    outputs = {}
    for backend in ("triton", "sdpa"):
        network.set_attention_backend(backend)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            outputs[backend] = network(tokens, values, positions, mask).hidden.float()
    return float((outputs["triton"][mask] - outputs["sdpa"][mask]).abs().max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = parser.parse_args()
    print("command:", shlex.join(["python", *sys.argv]))
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtypes = [torch.float32, torch.float16] + ([torch.bfloat16] if cuda else [])
    lengths = [2002, 1500, 20020, 37] if cuda else [40, 17, 3]
    failed = False
    for dtype in dtypes:
        started = time.perf_counter()
        worst = kernel_case(device, dtype, lengths, heads=8 if cuda else 2, head_dim=64 if cuda else 16)
        ok = worst <= BOUNDS[dtype]
        failed |= not ok
        print(f"kernel  {dtype!s:<15} lengths {lengths}: max |triton - sdpa| = {worst:.2e} "
              f"(bound {BOUNDS[dtype]:.0e}) {'ok' if ok else 'FAIL'} "
              f"[{time.perf_counter() - started:.1f} s]")  # fmt: skip
    if cuda:
        config = OmniCellConfig(num_gene=2000, dropout=0.0)
        shapes = [("single-cell", 8, 1, 2000), ("spatial", 1, 10, 2000)]
    else:
        config = OmniCellConfig(num_gene=100, d_model=32, heads=2, dim=16, num_layers=2, hidden_dim=64, dropout=0.0)
        shapes = [("single-cell", 3, 1, 20), ("spatial", 2, 3, 10)]
    for dtype in [torch.float32, torch.bfloat16] if cuda else [torch.float32]:
        for name, batch, cells, genes in shapes:
            worst = network_case(device, dtype, config, batch, cells, genes)
            bound = 1e-3 if dtype == torch.float32 else 0.25  # 10 layers of bf16 rounding
            ok = worst <= bound
            failed |= not ok
            print(f"network {dtype!s:<15} {name:<12} B={batch} T={cells * (genes + 2)}: max |triton - sdpa| of "
                  f"hidden = {worst:.2e} (bound {bound:.0e}) {'ok' if ok else 'FAIL'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
