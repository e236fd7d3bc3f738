#!/usr/bin/env bash
# Set up if needed, then run lint, types and the whole test suite (services are started by the tests).
# The tests run on PYTEST_WORKERS pytest-xdist workers (default 4; 0 = in this process): tests
# that start services stay together per module, the rest are spread (tests/conftest.py).
# Property tests draw new examples each run from HYPOTHESIS_SEED (random unless given; printed,
# so `HYPOTHESIS_SEED=<seed> bash scripts/test.sh` replays a failing run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check streamer tests benchmarks scripts
.venv/bin/mypy
seed="${HYPOTHESIS_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "hypothesis seed: $seed (replay: HYPOTHESIS_SEED=$seed bash scripts/test.sh)"
exec .venv/bin/pytest -q -p no:cacheprovider -rs -n "${PYTEST_WORKERS:-4}" --dist loadgroup \
  --hypothesis-seed="$seed" "$@"
