#!/usr/bin/env bash
# Set up a fresh machine and run the main job offline: pbmc68k_reduced -> tokenize -> embed with the
# bundled omnicell-tiny -> neighbours, Leiden, UMAP -> figure, h5ad and an ARI/NMI table beside PCA.
#   bash scripts/run_demo.sh [OUTPUT_FOLDER] [extra `omnicell demo` options, e.g. --model omnicell-v1]
set -euo pipefail
cd "$(dirname "$0")/.."
output="${1:-omnicell_demo}"
shift $(( $# > 0 ? 1 : 0 ))
bash scripts/setup.sh test >/dev/null
exec omnicell demo --output "$output" "$@"
