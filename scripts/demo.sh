#!/usr/bin/env bash
# Set up if needed, then run the embedded demo (broker, Redis, ClickHouse, worker, live view).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streamer demo "$@"
