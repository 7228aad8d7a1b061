#!/usr/bin/env bash
# Runs every test of the project: the Rust suites (unit, actor, black-box
# WebSocket, engine conformance on memory, a real redis-server and a real
# Redis Cluster, multi-node cluster, TLS to Redis), the deployment files'
# checks (scripts/check-deploy.sh), a bounded fuzzing run, then the browser
# UI's lint (ESLint), unit tests and end-to-end tests in headless Chromium. Needs
# redis-server, openssl, promtool, kubernetes-validate, chromium and the
# nightly Rust toolchain (.ci/run installs them on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --all-targets
cargo test --all-targets
scripts/check-deploy.sh

# Bounded fuzzing of the parsers that take hostile input (scripts/fuzz.sh);
# needs the nightly toolchain, which .ci/run installs.
scripts/fuzz.sh "${FUZZ_SECONDS:-20}"

if [ -f frontend/package.json ]; then
  cd frontend
  npm ci --no-audit --no-fund
  npm run build
  npm run lint
  npm run test:unit
  CHATSTREAM_BIN="$PWD/../target/debug/chatstream" npm run test:e2e
fi
