"""Forward-pass benchmark of the OmniCell network at the official configuration (random weights).

Times ``OmniCell.forward`` under ``torch.inference_mode`` for every requested attention backend and
dtype on the same weights and inputs, and prints one table row per combination: median time per
batch, tokens/s, cells/s, peak memory, analytical model FLOPs per forward, achieved TFLOP/s and
model FLOP utilisation (MFU, when ``--peak-tflops`` is given). It then reports how far each
backend's ``.hidden`` lies from the eager backend at the same dtype. The torch version, device and
exact command line are printed first so that the figures can be quoted.

Usage (from the repository root; the script finds ``src/`` itself when omnicell is not installed)::

    # quick CPU smoke run
    python benchmarks/forward.py --device cpu --layers 2 --batch-size 2 --genes-per-cell 512

    # H100, single-cell mode (sequence = 2000 genes + 2 markers), all backends, bf16 and fp32
    python benchmarks/forward.py --device cuda --batch-size 32 --peak-tflops bfloat16=989,float32=67 \\
        --json forward_h100.json

    # H100, spatial mode: 1 focal cell + 9 neighbours per sequence (T = 10 * 2002)
    python benchmarks/forward.py --device cuda --cells-per-sequence 10 --batch-size 2 \\
        --backends sdpa,flash_attn --dtypes bfloat16 --peak-tflops 989

Definitions
-----------
sequence length
    ``T = cells_per_sequence * (genes_per_cell + 2)``: every cell block is ``<RNA_START>``, its
    genes, ``<RNA_END>`` (see :func:`omnicell.data.build_batch`).
cells/s
    Focal cells embedded per second, i.e. sequences per second (in spatial mode the 9 neighbours
    of a sequence are context, not extra embedded cells).
model FLOPs
    Matrix-multiply FLOPs counted analytically (2 per multiply-add), per forward of the batch:
    per layer ``4 * 2*T*d^2`` (Q, K, V, out projections) + ``2 * 2*T^2*d`` (``QK^T`` and ``AV``,
    full non-causal attention) + ``3 * 2*T*d*h`` (SwiGLU), plus the value-embedding router
    ``2*T*d^2 + 2*T*d*R`` and expert mixing ``2*T*R*d`` once. Element-wise work (norms, rotary,
    softmax) is not counted. The same count is used for every backend, so TFLOP/s compare directly.
peak memory
    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak before each run (weights
    of the model at that dtype included). CPU: the process resident-set high-water mark from
    ``resource.getrusage``; on Linux it is reset before each run through ``/proc/self/clear_refs``,
    elsewhere it is cumulative over the process (marked with ``*``).
bfloat16
    ``--bf16-mode autocast`` (default) keeps float32 weights and runs under ``torch.autocast``, as
    ``oc.tl.embed_cells`` does on CUDA; ``cast`` converts the whole network to bfloat16 (as
    ``OmniCellModel.to(dtype=torch.bfloat16)`` does). On CPU only float32 runs unless ``--dtypes``
    asks for bfloat16.
"""

from __future__ import annotations

import os
import sys

# Keep this folder off the import path: benchmarks/tokenize.py would shadow the standard library's
# tokenize module, which inspect (and so torch) imports.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here]

import argparse
import copy
import dataclasses
import datetime
import json
import math
import platform
import resource
import shlex
import statistics
import subprocess
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch

try:
    from omnicell.nn import OmniCell, OmniCellConfig, flash_attn_available
except ImportError:  # not installed: use the checkout this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from omnicell.nn import OmniCell, OmniCellConfig, flash_attn_available

BACKENDS = ("sdpa", "eager", "flash_attn", "triton")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
REFERENCE_BACKEND = "eager"
MARKER_TOKENS = (0, 1)  # stand-ins for <RNA_START>, <RNA_END>; ids do not change the cost


# --------------------------------------------------------------------------------------- options


def _csv(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (comma-separated), got {text!r}")
        return list(dict.fromkeys(items))

    return parse


def _peak(text: str) -> dict[str, float]:
    """``989`` (all dtypes) or ``bfloat16=989,float32=67``."""
    try:
        if "=" not in text:
            return dict.fromkeys(DTYPES, float(text))
        peaks = {}
        for item in text.split(","):
            name, value = item.split("=")
            if name.strip() not in DTYPES:
                raise ValueError(name)
            peaks[name.strip()] = float(value)
        return peaks
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or dtype=number pairs (e.g. bfloat16=989,float32=67), got {text!r}"
        ) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the OmniCell forward pass (official configuration, random weights).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto = cuda if available")
    parser.add_argument(
        "--backends",
        type=_csv(BACKENDS),
        default=",".join(BACKENDS),
        help="attention backends, comma-separated; unavailable ones are skipped with a note",
    )
    parser.add_argument(
        "--dtypes",
        type=_csv(tuple(DTYPES)),
        default=None,
        help="comma-separated; default float32,bfloat16 on CUDA and float32 on CPU",
    )
    parser.add_argument(
        "--bf16-mode", choices=("autocast", "cast"), default="autocast", help="how bfloat16 runs (see module docstring)"
    )
    parser.add_argument("--batch-size", type=_positive, default=8, help="sequences (focal cells) per forward")
    parser.add_argument("--genes-per-cell", type=_positive, default=2000, help="gene tokens per cell block")
    parser.add_argument(
        "--cells-per-sequence", type=_positive, default=1, help="1 = single-cell mode; 10 = spatial mode (1 + 9)"
    )
    parser.add_argument("--warmup", type=_non_negative, default=3, help="untimed forwards per case")
    parser.add_argument("--repeats", type=_positive, default=10, help="timed forwards per case")
    parser.add_argument(
        "--peak-tflops",
        type=_peak,
        default=None,
        help="device peak TFLOP/s for MFU: one number for all dtypes, or e.g. bfloat16=989,float32=67",
    )
    parser.add_argument("--threads", type=_positive, default=None, help="torch CPU threads (torch.set_num_threads)")
    parser.add_argument("--layers", type=_positive, default=None, help="override num_layers (official: 10)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 for float32 matmuls on CUDA")
    parser.add_argument("--no-check", action="store_true", help="skip the agreement check against eager")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also save the results here")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------- inputs


@dataclasses.dataclass
class Inputs:
    """Forward arguments of one batch, laid out as :func:`omnicell.data.build_batch` does."""

    tokens: torch.Tensor
    values: torch.Tensor
    positions: torch.Tensor | None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.tokens.shape[0]), int(self.tokens.shape[1]))


def make_inputs(config: OmniCellConfig, batch: int, genes: int, cells: int, seed: int, device: torch.device) -> Inputs:
    """Random batch: one gene panel shared by all cells, soft ranks with ~half the genes unexpressed.

    In spatial mode (``cells > 1``) every cell block gets its own random coordinates (in µm);
    in single-cell mode positions are None, as in the package's single-cell path.
    """
    generator = torch.Generator().manual_seed(seed)
    n_special = len(MARKER_TOKENS) + 2
    if genes > config.num_gene - n_special:
        raise SystemExit(f"--genes-per-cell {genes} exceeds the vocabulary ({config.num_gene - n_special} genes)")
    panel = torch.randperm(config.num_gene - n_special, generator=generator)[:genes] + n_special
    block = torch.cat([torch.tensor(MARKER_TOKENS[:1]), panel, torch.tensor(MARKER_TOKENS[1:])])
    tokens = block.repeat(batch, cells)
    ranks = torch.rand(batch, cells, genes, generator=generator)
    ranks = torch.where(torch.rand(batch, cells, genes, generator=generator) < 0.5, 0.0, ranks)
    values = torch.nn.functional.pad(ranks, (1, 1)).reshape(batch, -1)
    positions = None
    if cells > 1:
        coordinates = torch.rand(batch, cells, 2, generator=generator) * 1000.0
        positions = coordinates.repeat_interleave(genes + 2, dim=1)
    return Inputs(
        tokens=tokens.to(device),
        values=values.to(device),
        positions=None if positions is None else positions.to(device),
    )


# ----------------------------------------------------------------------------------------- FLOPs


def forward_flops(config: OmniCellConfig, batch: int, length: int) -> dict[str, int]:
    """Analytical matmul FLOPs of one forward of ``batch`` sequences of ``length`` tokens."""
    d, hidden, layers, t = config.d_model, int(config.hidden_dim or 0), config.num_layers, length
    routed = config.num_routing
    parts = {
        "attention_projections": layers * 4 * 2 * t * d * d,
        "attention_scores": layers * 2 * 2 * t * t * d,
        "swiglu": layers * 3 * 2 * t * d * hidden,
        "embedding_router": 2 * t * d * d + 2 * t * d * routed + 2 * t * routed * d,
    }
    parts = {name: batch * value for name, value in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


# ---------------------------------------------------------------------------------------- memory


class PeakMemory:
    """Peak memory of one run: CUDA allocator peak, or the CPU process RSS high-water mark."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cumulative = False

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # Linux >= 4.0: "5" resets the resident-set high-water mark of the process
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            self.cumulative = True

    def read_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # bytes on macOS, KiB elsewhere


# ------------------------------------------------------------------------------------------ runs


@dataclasses.dataclass
class Result:
    """Figures of one backend x dtype case."""

    backend: str
    dtype: str
    status: str = "ok"
    note: str = ""
    times_ms: list[float] = dataclasses.field(default_factory=list)
    median_ms: float = math.nan
    tokens_per_s: float = math.nan
    cells_per_s: float = math.nan
    peak_memory_bytes: int | None = None
    gflop_per_forward: float = math.nan
    achieved_tflops: float = math.nan
    mfu: float | None = None
    max_abs_diff_vs_eager: float | None = None
    max_abs_diff_vs_eager_float32: float | None = None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision(device: torch.device, dtype: torch.dtype, bf16_mode: str) -> AbstractContextManager[Any]:
    """Autocast when bfloat16 runs in autocast mode, nothing otherwise."""
    if dtype == torch.bfloat16 and bf16_mode == "autocast":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def forward(model: OmniCell, inputs: Inputs) -> torch.Tensor:
    return model(inputs.tokens, inputs.values, inputs.positions).hidden


def time_forward(
    model: OmniCell, inputs: Inputs, device: torch.device, warmup: int, repeats: int
) -> tuple[list[float], torch.Tensor]:
    """Milliseconds of each timed forward, and the last output."""
    hidden = None
    for _ in range(warmup):
        hidden = forward(model, inputs)
    synchronize(device)
    times: list[float] = []
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            start.record()
            hidden = forward(model, inputs)
            end.record()
        synchronize(device)
        times = [start.elapsed_time(end) for start, end in events]
    else:
        for _ in range(repeats):
            start_s = time.perf_counter()
            hidden = forward(model, inputs)
            times.append((time.perf_counter() - start_s) * 1000.0)
    assert hidden is not None
    return times, hidden


def unavailable(backend: str, device: torch.device, dtype_name: str) -> str | None:
    """Why ``backend`` cannot run here, or None."""
    if backend == "triton":
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            return "the triton package is not installed (pip install 'omnicell[kernels]')"
        if device.type != "cuda":
            return "the triton kernel needs CUDA (CPU runs it only through the test interpreter)"
        return None
    if backend != "flash_attn":
        return None
    if device.type != "cuda":
        return "flash_attn needs CUDA"
    if not flash_attn_available():
        return "the flash_attn package is not installed (pip install 'omnicell[flash]')"
    if dtype_name == "float32":
        return "flash_attn runs in float16/bfloat16 only"
    return None


def model_at(master: OmniCell, device: torch.device, dtype: torch.dtype, bf16_mode: str) -> OmniCell:
    """A copy of the float32 ``master`` on ``device`` with weights at the dtype that runs."""
    weights = dtype if bf16_mode == "cast" else torch.float32
    return copy.deepcopy(master).to(device=device, dtype=weights).eval()


def is_out_of_memory(error: BaseException) -> bool:
    message = str(error).lower()
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in message or "can't allocate" in message


def run_cases(
    args: argparse.Namespace, master: OmniCell, inputs: Inputs, device: torch.device, dtype_names: list[str]
) -> list[Result]:
    batch, length = inputs.shape
    flops = forward_flops(master.config, batch, length)["total"]
    memory = PeakMemory(device)
    results: list[Result] = []
    references: dict[str, torch.Tensor] = {}
    for dtype_name in dtype_names:
        dtype = DTYPES[dtype_name]
        model = model_at(master, device, dtype, args.bf16_mode)
        outputs: dict[str, torch.Tensor] = {}
        for backend in args.backends:
            result = Result(backend=backend, dtype=dtype_name)
            results.append(result)
            reason = unavailable(backend, device, dtype_name)
            if reason is not None:
                result.status, result.note = "skipped", reason
                print(f"note: skipping {backend} / {dtype_name}: {reason}", flush=True)
                continue
            model.set_attention_backend(backend)
            memory.reset()
            try:
                with torch.inference_mode(), precision(device, dtype, args.bf16_mode):
                    times, hidden = time_forward(model, inputs, device, args.warmup, args.repeats)
            except Exception as error:  # an OOM or kernel failure must not end a long device run
                synchronize_quietly(device)
                result.status = "oom" if is_out_of_memory(error) else "error"
                result.note = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                print(f"note: {backend} / {dtype_name} failed: {result.note}", flush=True)
                continue  # the next memory.reset() frees the cache once the traceback is gone
            result.peak_memory_bytes = memory.read_bytes()
            outputs[backend] = hidden.detach().float().cpu()
            del hidden
            fill_figures(result, times, batch, length, flops, (args.peak_tflops or {}).get(dtype_name))
            print(
                f"done: {backend:<10} {dtype_name:<8} median {result.median_ms:9.2f} ms/batch",
                flush=True,
            )
        if not args.no_check:
            reference = outputs.get(REFERENCE_BACKEND)
            if reference is None:
                reference = reference_output(model, inputs, device, dtype, args.bf16_mode, dtype_name)
            if reference is not None:
                references[dtype_name] = reference
                print(f"eager {dtype_name} reference: max |hidden| = {float(reference.abs().max()):.3e}", flush=True)
                for result in results:
                    if result.dtype == dtype_name and result.backend in outputs:
                        result.max_abs_diff_vs_eager = max_abs_diff(outputs[result.backend], reference)
            float32_reference = references.get("float32")
            if float32_reference is not None and dtype_name != "float32":
                for result in results:
                    if result.dtype == dtype_name and result.backend in outputs:
                        result.max_abs_diff_vs_eager_float32 = max_abs_diff(outputs[result.backend], float32_reference)
        del model, outputs
        free(device)
    return results


def reference_output(
    model: OmniCell, inputs: Inputs, device: torch.device, dtype: torch.dtype, bf16_mode: str, dtype_name: str
) -> torch.Tensor | None:
    """One eager forward for the agreement check when eager was not among the timed backends."""
    model.set_attention_backend(REFERENCE_BACKEND)
    try:
        with torch.inference_mode(), precision(device, dtype, bf16_mode):
            hidden = forward(model, inputs).float().cpu()
    except Exception as error:
        synchronize_quietly(device)
        print(f"note: no eager reference at {dtype_name} ({type(error).__name__}); agreement not checked", flush=True)
        hidden = None
    free(device)
    return hidden


def synchronize_quietly(device: torch.device) -> None:
    try:
        synchronize(device)
    except Exception:  # the failed kernel's error resurfaces here; it is already reported
        pass


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def fill_figures(
    result: Result, times_ms: list[float], batch: int, length: int, flops: int, peak_tflops: float | None
) -> None:
    result.times_ms = times_ms
    result.gflop_per_forward = flops / 1e9
    result.median_ms = statistics.median(times_ms)
    seconds = result.median_ms / 1000.0
    result.tokens_per_s = batch * length / seconds
    result.cells_per_s = batch / seconds
    result.achieved_tflops = flops / seconds / 1e12
    if peak_tflops:
        result.mfu = result.achieved_tflops / peak_tflops


# -------------------------------------------------------------------------------------- printing


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.1f} GiB, capability {props.major}.{props.minor})"
    model_name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {model_name} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "device": device_name(device),
        "git_revision": git_revision(),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    if flash_attn_available():
        try:
            import flash_attn

            info["flash_attn"] = getattr(flash_attn, "__version__", "installed")
        except Exception as error:  # installed but broken (e.g. ABI mismatch): say so
            info["flash_attn"] = f"import fails: {type(error).__name__}"
    return info


def format_bytes(value: int | None, *, cumulative: bool) -> str:
    if value is None:
        return "-"
    return f"{value / 2**30:.2f} GiB" + ("*" if cumulative else "")


def format_number(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_table(results: list[Result], *, cumulative_rss: bool) -> None:
    headers = (
        "backend",
        "dtype",
        "median ms/batch",
        "min-max ms",
        "tokens/s",
        "cells/s",
        "peak mem",
        "GFLOP/fwd",
        "TFLOP/s",
        "MFU",
        "max|Δ| vs eager",
    )
    rows = []
    for r in results:
        spread = f"{min(r.times_ms):.1f}-{max(r.times_ms):.1f}" if r.times_ms else r.status
        rows.append(
            (
                r.backend,
                r.dtype,
                format_number(r.median_ms, ".2f"),
                spread,
                format_number(r.tokens_per_s, ",.0f"),
                format_number(r.cells_per_s, ",.2f"),
                format_bytes(r.peak_memory_bytes, cumulative=cumulative_rss),
                format_number(r.gflop_per_forward, ",.1f"),
                format_number(r.achieved_tflops, ".3f"),
                "-" if r.mfu is None else f"{100 * r.mfu:.1f}%",
                format_number(r.max_abs_diff_vs_eager, ".3e"),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    left = {0, 1}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available to this torch build")
    else:
        device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.tf32:
        torch.set_float32_matmul_precision("high")
    dtype_names = args.dtypes or (["float32", "bfloat16"] if device.type == "cuda" else ["float32"])
    dtype_names = sorted(dtype_names, key=list(DTYPES).index)  # float32 first: the cross-dtype reference
    torch.manual_seed(args.seed)

    config = OmniCellConfig() if args.layers is None else OmniCellConfig(num_layers=args.layers)
    batch, genes, cells = args.batch_size, args.genes_per_cell, args.cells_per_sequence
    length = cells * (genes + 2)
    master = OmniCell(config, attention_backend="sdpa").eval()
    n_parameters = sum(p.numel() for p in master.parameters())
    flops = forward_flops(config, batch, length)

    info = environment(device)
    print(f"command : {info['command']}")
    for key in ("date_utc", "torch", "python", "platform", "device", "cuda", "cudnn", "flash_attn", "git_revision"):
        if info.get(key) is not None:
            print(f"{key:<8}: {info[key]}")
    if "float32_matmul_precision" in info:
        print(f"float32 matmul precision: {info['float32_matmul_precision']}")
    official = "official" if args.layers is None else f"official except num_layers={config.num_layers}"
    print(
        f"model   : OmniCell {official}: d_model {config.d_model}, heads {config.heads}, layers {config.num_layers}, "
        f"hidden {config.hidden_dim}, vocabulary {config.num_gene}; {n_parameters / 1e6:.1f} M parameters, random"
    )
    mode = "single-cell" if cells == 1 else f"spatial (1 focal + {cells - 1} neighbours)"
    print(
        f"input   : batch {batch} x T {length} = {cells} cell block(s) x ({genes} genes + 2 markers), {mode}; "
        f"bfloat16 mode {args.bf16_mode}; warmup {args.warmup}, repeats {args.repeats}"
    )
    print(
        "FLOPs   : "
        + ", ".join(f"{name} {value / 1e9:,.1f}" for name, value in flops.items() if name != "total")
        + f" -> {flops['total'] / 1e9:,.1f} GFLOP per forward"
    )
    print(flush=True)

    inputs = make_inputs(config, batch, genes, cells, args.seed, device)
    results = run_cases(args, master, inputs, device, dtype_names)
    cumulative_rss = device.type == "cpu" and PeakMemory(device).cumulative

    print()
    print_table(results, cumulative_rss=cumulative_rss)
    print()
    if device.type == "cuda":
        print("peak mem: torch.cuda.max_memory_allocated per case (weights at that dtype included).")
    else:
        kind = "cumulative over the process (*)" if cumulative_rss else "reset before each case"
        print(f"peak mem: process RSS high-water mark (resource.getrusage), {kind}.")
    print("median / min-max over the timed repeats; cells/s = sequences (focal cells) per second.")
    if not args.peak_tflops:
        print("MFU: pass --peak-tflops (e.g. 989 for H100 SXM bfloat16 dense) to compute it.")
    if not args.no_check:
        print()
        print("Agreement of .hidden with the eager backend on the same inputs and weights (max |Δ|):")
        for r in results:
            if r.max_abs_diff_vs_eager is None and r.max_abs_diff_vs_eager_float32 is None:
                continue
            parts = []
            if r.max_abs_diff_vs_eager is not None:
                parts.append(f"vs eager {r.dtype}: {r.max_abs_diff_vs_eager:.3e}")
            if r.max_abs_diff_vs_eager_float32 is not None:
                parts.append(f"vs eager float32: {r.max_abs_diff_vs_eager_float32:.3e}")
            print(f"  {r.backend:<10} {r.dtype:<8} " + "; ".join(parts))

    if args.json is not None:
        memory_kind = "cuda_max_memory_allocated" if device.type == "cuda" else "rss_high_water_reset_per_case"
        if cumulative_rss:
            memory_kind = "rss_high_water_cumulative"
        payload = {
            "environment": info,
            "arguments": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
            "config": config.to_dict(),
            "parameters": n_parameters,
            "batch_size": batch,
            "sequence_length": length,
            "flops_per_forward": flops,
            "peak_memory": memory_kind,
            "results": [dataclasses.asdict(r) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n")
        print(f"\nresults saved to {args.json}")
    return 1 if any(r.status == "error" for r in results) else 0


def _finite(value: Any) -> Any:
    """``value`` with NaN floats replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
