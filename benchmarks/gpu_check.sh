#!/usr/bin/env bash
# One prepared GPU session (< 8 minutes on an H100/H200): CUDA correctness of the triton kernel
# against SDPA, then the forward and end-to-end benchmarks at the released size. Run from the
# repository root:   bash benchmarks/gpu_check.sh [OUT_DIR]
# Every step has its own time limit; a step that fails or times out is reported and the rest run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-gpu_check_out}}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME SECONDS COMMAND...
    local name="$1" limit="$2"
    shift 2
    echo "=== $name (limit ${limit}s): $*" | tee -a "$OUT/summary.txt"
    local started=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.log" | tee -a "$OUT/summary.txt"
    echo "=== $name: exit $rc after $((SECONDS - started)) s" | tee -a "$OUT/summary.txt"
}

"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
    2>&1 | tee "$OUT/summary.txt" || "$PY" -m pip install --quiet "triton>=3"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv | tee -a "$OUT/summary.txt"

# 1. correctness: kernel alone (packed ragged sequences up to 20,020 tokens) and whole network
step kernel_check 120 "$PY" benchmarks/kernel_check.py --device cuda
# 2. forward only, released size (peak 989 TFLOP/s dense bf16 on H100/H200)
step forward_single 100 "$PY" benchmarks/forward.py --device cuda --batch-size 32 --dtypes bfloat16 \
    --backends sdpa,triton,flash_attn --peak-tflops 989 --warmup 2 --repeats 5 --json "$OUT/forward_single.json"
step forward_spatial 100 "$PY" benchmarks/forward.py --device cuda --cells-per-sequence 10 --batch-size 2 \
    --dtypes bfloat16 --backends sdpa,triton,flash_attn --peak-tflops 989 --warmup 1 --repeats 3 \
    --json "$OUT/forward_spatial.json"
# 3. end to end: h5ad in, obsm out, tokenisation included; packed vs padded on ragged spatial windows
step embed_single 90 "$PY" benchmarks/embed.py --device cuda --cells 4096 --batch-size 64 --modes single \
    --backends sdpa,triton --peak-tflops 989
step embed_spatial 90 "$PY" benchmarks/embed.py --device cuda --cells 512 --batch-size 4 \
    --modes spatial,spatial-ragged --backends sdpa,triton --peak-tflops 989
echo "all output in $OUT/" | tee -a "$OUT/summary.txt"
