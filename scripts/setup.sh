#!/usr/bin/env bash
# Install omnicell and what it needs into the current Python environment.
# Where no NVIDIA GPU is present, the CPU build of PyTorch is asked for first: a plain `torch`
# requirement would otherwise pull a multi-GB CUDA build. Set TORCH_INDEX_URL to choose a wheel
# index (e.g. PyTorch's CPU index) or TORCH_SPEC to pin another release.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
extras="${1:-test}"

if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1; then
        "$PYTHON" -m pip install "${TORCH_SPEC:-torch}"
    elif [ -n "${TORCH_INDEX_URL:-}" ]; then
        "$PYTHON" -m pip install "${TORCH_SPEC:-torch}" --index-url "$TORCH_INDEX_URL"
    else
        # torch 2.13.0 is the CPU build cached on our development and CI machines.
        "$PYTHON" -m pip install "${TORCH_SPEC:-torch==2.13.0}"
    fi
fi
"$PYTHON" -m pip install --quiet -e ".[${extras}]"
