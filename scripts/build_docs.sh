#!/usr/bin/env bash
# Build the documentation, executing every tutorial notebook, offline, with warnings as errors.
#   bash scripts/build_docs.sh [extra sphinx-build options]
# The notebooks read their data from OMNICELL_DATA_DIR (default: ../shared/data beside the repository, the
# shared data folder of CI) and use the model bundled with the package; nothing is downloaded. Without that
# folder (a clone with nothing beside it) the tutorials show their stored outputs instead of running.
# OMNICELL_DOCS_EXECUTE=off shows the outputs stored in notebooks/ instead (docs/tutorials/index.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# OMNICELL_DOCS_SETUP=0 skips the install (an environment that already has the docs extra)
if [ "${OMNICELL_DOCS_SETUP:-1}" != "0" ]; then bash scripts/setup.sh docs; fi
export OMNICELL_DOCS_OFFLINE=1
DATA_DIR="${OMNICELL_DATA_DIR:-../shared/data}"
if [ -d "$DATA_DIR" ]; then
    export OMNICELL_DATA_DIR="$(cd "$DATA_DIR" && pwd)"
elif [ -z "${OMNICELL_DOCS_EXECUTE:-}" ]; then
    # Offline and without the tutorials' data files (a clone with nothing beside it) the notebooks cannot run:
    # show the outputs stored with them, and say so, rather than fail on the first data file.
    echo "build_docs: no data folder at $DATA_DIR (set OMNICELL_DATA_DIR): the tutorials show their stored outputs" >&2
    export OMNICELL_DOCS_EXECUTE=off
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MPLBACKEND=Agg
rm -rf docs/_build/html docs/_build/doctrees docs/generated
start=$(date +%s)
"$PYTHON" -m sphinx -b html -W --keep-going -T docs docs/_build/html "$@"
echo "docs built in $(( $(date +%s) - start )) s: docs/_build/html/index.html"
