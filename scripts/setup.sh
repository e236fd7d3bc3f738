#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine with Python 3.11+:
# the Debian packages the tests need when missing, a virtualenv in .venv, the package with its dev
# extra at the exact versions of constraints.txt (refreshed on purpose by scripts/lock.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "setup: Python 3.11+ is required (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi

# Debian packages the tests drive as real processes: redis-server, redis-sentinel (failover
# tests), faketime (skewed clocks), openssl (test certificates for the TLS Kafka tests) and
# prometheus (promtool for the alert rules' unit tests, the server for the monitoring test).
MISSING=()
command -v redis-server >/dev/null 2>&1 || MISSING+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || MISSING+=(redis-sentinel)
compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null || MISSING+=(faketime)
command -v openssl >/dev/null 2>&1 || MISSING+=(openssl)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || MISSING+=(prometheus)
if [ "${#MISSING[@]}" -gt 0 ]; then
  echo "setup: installing ${MISSING[*]} (Debian packages)…"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${MISSING[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating virtualenv .venv…"
  "$PYTHON" -m venv .venv
fi
STAMP=.venv/.streamer-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ constraints.txt -nt "$STAMP" ]; then
  echo "setup: installing streamer and its dependencies into .venv (first run takes a minute)…"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  touch "$STAMP"
fi
echo "setup: ready (.venv/bin/streamer)"
