#!/usr/bin/env bash
# Refresh constraints.txt: resolve the newest versions that pyproject.toml allows in a throw-away
# virtualenv and write them pinned. Run the whole suite before committing the new file.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q '.[dev]'
{
  echo "# Exact versions that setup, CI and the image install (pip -c). Refresh on purpose with"
  echo "# scripts/lock.sh, run the whole suite, and commit the result with the reason."
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^streamer[= @]'
} > constraints.txt
echo "lock: wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"
