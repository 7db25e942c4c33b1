#!/usr/bin/env bash
# Build the omnicell image, tagged with the package version (src/omnicell/_version.py, the one place it is set).
#
#   bash wrappers/containers/build.sh [cpu|cuda] [docker build options...]
#
# cpu (default) tags ${IMAGE}:<version>, cuda tags ${IMAGE}:<version>-cuda: the image the nf-core modules use for
# a task that requests a GPU. IMAGE defaults to quay.io/omnicell/omnicell. The OCI labels get the version, the
# commit and the build time. Further arguments go to `docker build` (e.g. --build-arg CUDA_WHEELS=cu126).
set -euo pipefail
cd "$(dirname "$0")/../.."
torch="${1:-cpu}"
case "$torch" in
    cpu) suffix="" ;;
    cuda) suffix="-cuda" ;;
    *) echo "usage: $0 [cpu|cuda] [docker build options...]" >&2; exit 2 ;;
esac
[ $# -gt 0 ] && shift
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' src/omnicell/_version.py)"
image="${IMAGE:-quay.io/omnicell/omnicell}"
exec docker build -f wrappers/containers/Dockerfile \
    --build-arg TORCH="$torch" \
    --build-arg VERSION="$version" \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -t "${image}:${version}${suffix}" "$@" .
