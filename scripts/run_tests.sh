#!/usr/bin/env bash
# Set up a fresh machine and run the test suite (the README's test command; CI runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" -m pytest -q "$@"
