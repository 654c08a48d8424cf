#!/usr/bin/env bash
# Sets up everything hfrisk needs on a fresh Debian machine, idempotently:
# the Python environment in .venv (uv, falling back to pip), system servers (Redis, Prometheus,
# Java/Maven for Kafka) and the Kafka jars. Safe to run again; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
log() { printf '[bootstrap] %s\n' "$*"; }

if ! command -v uv >/dev/null 2>&1; then
  log "installing uv"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check uv >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  if command -v uv >/dev/null 2>&1; then uv venv --quiet -p "$PYTHON" .venv; else "$PYTHON" -m venv .venv; fi
fi

log "installing Python packages (first run downloads torch: a few minutes)"
if command -v uv >/dev/null 2>&1; then
  uv pip install --quiet -p .venv/bin/python -e ".[test]"
else
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
fi

if [ -f .ci/install-system.sh ]; then
  log "installing system servers"
  bash .ci/install-system.sh
fi

if .venv/bin/python -c "import hfrisk.stack.jars" >/dev/null 2>&1; then
  log "resolving Kafka jars"
  .venv/bin/python -m hfrisk.stack.jars
fi
log "ready"
