#!/usr/bin/env bash
# Build the omnicell image tagged with the package version (src/omnicell/_version.py, the one place it is set).
# Extra arguments go to `docker build`, e.g. --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
set -euo pipefail
cd "$(dirname "$0")/../.."
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' src/omnicell/_version.py)"
image="${IMAGE:-ghcr.io/omnicell/omnicell}"
exec docker build -f wrappers/containers/Dockerfile -t "${image}:${version}" "$@" .
