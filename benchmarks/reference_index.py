"""Build time, query speed, query memory and recall@10 of :class:`omnicell.data.ReferenceIndex`.

Usage::

    python benchmarks/reference_index.py                              # 1e4, 1e5, 1e6 cells, 64 dimensions
    python benchmarks/reference_index.py --sizes 10000,100000 --dim 256 --json out.json

For each reference size, synthetic clustered embeddings (``--clusters`` Gaussian clusters of
unequal spread in ``--dim`` dimensions, float32, made in chunks) are indexed twice, exactly and
with pynndescent, each index saved to a temporary folder and loaded back memory-mapped (as a user
would query it), and ``--queries`` cells drawn from the same distribution are searched for their
``k`` nearest reference cells. Per method it prints:

- ``build s``: :meth:`ReferenceIndex.build` (for pynndescent, the graph and its search trees;
  the first build in the process also compiles numba code: the script builds a small index first
  so that compilation is not counted);
- ``query cells/s``: query cells per second of wall time (default ``batch_size``);
- ``query peak MiB (numpy)``: peak of the memory numpy allocates during the query (tracemalloc,
  a second run of the same query);
- ``query peak MiB (anon RSS)``: peak anonymous resident memory during the query above the level
  before it (``RssAnon`` sampled every 5 ms); file pages of the memory-mapped embeddings are not
  counted, as the operating system can drop them;
- ``recall@10``: the fraction of the exact 10 nearest neighbours (exact search over the same index)
  that the method returns, averaged over the query cells.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Scripts in benchmarks/ put this folder first on sys.path, where benchmarks/tokenize.py would
# shadow the standard library's tokenize module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import platform
import shlex
import tempfile
import threading
import time
import tracemalloc

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
try:
    import omnicell  # noqa: F401
except ImportError:  # pragma: no cover - running from a checkout
    sys.path.insert(0, str(ROOT / "src"))

from omnicell.data import ReferenceIndex


def clustered_embeddings(n: int, dim: int, n_clusters: int, *, seed: int, chunk: int = 100_000) -> np.ndarray:
    """Gaussian clusters (fixed centres, spreads 0.5-2) sampled ``chunk`` rows at a time."""
    layout = np.random.default_rng(12345)
    centres = layout.normal(size=(n_clusters, dim)).astype(np.float32) * 4
    spreads = layout.uniform(0.5, 2.0, size=n_clusters).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        labels = rng.integers(0, n_clusters, rows)
        noise = rng.standard_normal((rows, dim), dtype=np.float32)
        out[start : start + rows] = centres[labels] + spreads[labels, None] * noise
    return out


def _rss_anon_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _timed_query(index: ReferenceIndex, queries: np.ndarray, k: int):
    """(result, seconds, peak anonymous RSS above the start in MiB)."""
    baseline = _rss_anon_mib()
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss_anon_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = index.query(queries, k)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_anon_mib())
    return result, seconds, peak[0] - baseline


def _numpy_peak(index: ReferenceIndex, queries: np.ndarray, k: int) -> float:
    tracemalloc.start()
    index.query(queries, k)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="reference cells, comma-separated")
    parser.add_argument("--dim", type=int, default=64, help="embedding width")
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--queries", type=int, default=2000, help="query cells")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--methods", default="exact,pynndescent")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    methods = args.methods.split(",")

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}")
    print(f"synthetic: {args.clusters} clusters in {args.dim} dimensions; {args.queries} queries; k = {args.k}")
    if "pynndescent" in methods:
        started = time.perf_counter()
        warm = clustered_embeddings(2000, args.dim, args.clusters, seed=7)
        ReferenceIndex.build(warm, method="pynndescent").query(warm[:5], args.k)
        print(f"numba compilation (not counted below): {time.perf_counter() - started:.1f} s")

    queries = clustered_embeddings(args.queries, args.dim, args.clusters, seed=1)
    rows = []
    header = f"{'cells':>9} {'method':>11} {'build s':>8} {'query cells/s':>14} {'peak MiB (numpy)':>17} "
    header += f"{'peak MiB (anon RSS)':>20} {'recall@10':>9}"
    print(header)
    for n in sizes:
        reference = clustered_embeddings(n, args.dim, args.clusters, seed=0)
        exact_indices = None
        with tempfile.TemporaryDirectory() as folder:
            for method in methods:
                started = time.perf_counter()
                built = ReferenceIndex.build(reference, method=method)
                build_s = time.perf_counter() - started
                built.save(Path(folder) / method)
                del built
                index = ReferenceIndex.load(Path(folder) / method)
                (indices, _), seconds, anon = _timed_query(index, queries, args.k)
                numpy_peak = _numpy_peak(index, queries, args.k)
                if method == "exact":
                    exact_indices = indices
                if exact_indices is None:
                    exact_indices = ReferenceIndex.build(reference, method="exact").query(queries, args.k)[0]
                recall = np.mean([len(set(a) & set(b)) for a, b in zip(indices, exact_indices, strict=True)]) / args.k
                row = {
                    "cells": n,
                    "method": method,
                    "build_s": build_s,
                    "query_cells_per_s": args.queries / seconds,
                    "query_peak_numpy_mib": numpy_peak,
                    "query_peak_anon_rss_mib": anon,
                    "recall_at_10": recall,
                }
                rows.append(row)
                print(
                    f"{n:>9} {method:>11} {build_s:>8.1f} {row['query_cells_per_s']:>14.0f} {numpy_peak:>17.1f} "
                    f"{anon:>20.1f} {recall:>9.4f}",
                    flush=True,
                )
                del index
        del reference
    if args.json:
        args.json.write_text(json.dumps({"dim": args.dim, "queries": args.queries, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
