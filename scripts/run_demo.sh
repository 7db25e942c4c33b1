#!/usr/bin/env bash
# Set up a fresh machine and run the main job: embed the cells of an h5ad file.
#   bash scripts/run_demo.sh INPUT.h5ad OUTPUT.h5ad [MODEL] [extra `omnicell embed` options]
# MODEL is a registry name (default omnicell-v1, downloaded once) or a checkpoint folder.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    echo "usage: bash scripts/run_demo.sh INPUT.h5ad OUTPUT.h5ad [MODEL] [options]" >&2
    exit 2
fi
input="$1"; output="$2"; model="${3:-omnicell-v1}"; shift $(( $# < 3 ? $# : 3 ))
bash scripts/setup.sh test >/dev/null
exec omnicell embed "$input" -o "$output" --model "$model" "$@"
