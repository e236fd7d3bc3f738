#!/usr/bin/env bash
# Set up if needed, then run lint, types and the whole test suite (services are started by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check streamer tests benchmarks scripts
.venv/bin/mypy
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
