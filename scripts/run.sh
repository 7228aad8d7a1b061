#!/usr/bin/env bash
# Runs one chatstream node with the embedded engine: the chat UI on
# http://localhost:8080, nothing else to install. Builds the browser UI first
# when npm is available; without it the node serves its built-in page.
# Any argument is passed to `chatstream serve` (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v npm >/dev/null 2>&1 && [ -f frontend/package.json ]; then
  (cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build)
fi
exec cargo run --release -- serve "$@"
