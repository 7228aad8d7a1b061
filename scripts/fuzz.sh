#!/usr/bin/env bash
# Fuzzes the parsers of hostile input (fuzz/fuzz_targets/): each target runs
# for a bounded time, then the script stops by itself. A crash fails the run
# and leaves its input in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS]    seconds per target; default
#        FUZZ_SECONDS, else 20.
#        FUZZ_SANITIZER=address FUZZ_RELEASE=1 scripts/fuzz.sh 600
#                                     for a long session.
# By default the build is unoptimized (debug assertions and overflow checks
# on) and without a sanitizer: the targets' code has no `unsafe`, and that
# build takes a quarter of the time of an optimized one with AddressSanitizer
# (6 minutes against 27 on two busy cores), which keeps CI's bounded run
# short.
# Needs the nightly toolchain (cargo +nightly); installs cargo-fuzz if
# missing. Builds into fuzz/target, apart from the main crate's target dir;
# the corpus it grows is kept in fuzz/corpus/<target>/ (not checked in),
# started from the seeds in fuzz/seeds/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-${FUZZ_SECONDS:-20}}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: seconds per target must be a positive integer, not '$seconds'" >&2
  exit 2
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing: cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

targets=(client_frame sse)
fuzz_args=(--fuzz-dir fuzz --target-dir fuzz/target --sanitizer "${FUZZ_SANITIZER:-none}")
if [ -z "${FUZZ_RELEASE:-}" ]; then
  fuzz_args+=(--dev)
fi

cargo +nightly fuzz build "${fuzz_args[@]}"

failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "fuzzing $target for ${seconds}s"
  # The first corpus directory receives new inputs; the seeds are only read.
  if ! cargo +nightly fuzz run "${fuzz_args[@]}" "$target" \
    "fuzz/corpus/$target" "fuzz/seeds/$target" \
    -- -max_total_time="$seconds" -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
