#!/usr/bin/env bash
# Set up a fresh machine and run the test suite (the README's test command; CI runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
# kernels: triton, so the fused attention kernel's tests run (on CPU, through Triton's interpreter);
# census: tiledbsoma and friends, so the SOMA input and pretraining tests run
bash scripts/setup.sh test,kernels,census
PYTHON="${PYTHON:-python3}"
# Lint first (ruff comes with the test extra): a finding fails the run before the long tests.
"$PYTHON" -m ruff check .
# two workers: the suite is CPU-bound and CI has 2 cores (PYTEST_WORKERS=0 runs it in one process)
exec "$PYTHON" -m pytest -q -n "${PYTEST_WORKERS:-2}" "$@"
