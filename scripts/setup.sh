#!/usr/bin/env bash
# Install omnicell and what it needs into the current Python environment.
#   bash scripts/setup.sh [extras]      (extras of pyproject.toml, default: test)
# PyTorch first, the build that fits the machine:
# - no NVIDIA GPU: the CPU build, from PyTorch's CPU wheel index (about 200 MB instead of the several GB
#   of the CUDA build that a plain `pip install torch` brings on Linux); if that index cannot be reached,
#   the default index;
# - an NVIDIA GPU: the default index (the CUDA build).
# A torch that is already installed is kept. TORCH_INDEX_URL chooses another wheel index (e.g. a CUDA
# version's), TORCH_SPEC another requirement (e.g. torch==2.5.1).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
extras="${1:-test}"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
spec="${TORCH_SPEC:-torch}"

if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "torch is installed: kept as it is"
elif [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$PYTHON" -m pip install "$spec" --index-url "$TORCH_INDEX_URL"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing PyTorch from the default index (the CUDA build)"
    "$PYTHON" -m pip install "$spec"
else
    echo "no NVIDIA GPU found: installing the CPU build of PyTorch (about 200 MB instead of several GB)"
    # a short timeout and no retries: where the index cannot be reached, the fallback starts within seconds
    if ! "$PYTHON" -m pip install --timeout 10 --retries 0 "$spec" --index-url "$CPU_INDEX"; then
        echo "PyTorch's CPU index could not be reached: installing torch from the default index instead"
        "$PYTHON" -m pip install "$spec"
    fi
fi
"$PYTHON" -m pip install --quiet -e ".[${extras}]"
