#!/usr/bin/env bash
# The instruction profile of a node under the stream workload (docs/
# benchmarks.md, "Where the time goes"): three nodes on one redis-server,
# node 1 under `valgrind --tool=callgrind`, a small fixed load
# (CONVERSATIONS × RATE tokens/s, REPLY_TOKENS each). Instruction counts do
# not move with the machine's load, unlike times.
#
#   benches/profile_node.sh OUT [BINARY]
#
# OUT gets callgrind.out (counted from the first send to the last reply's
# end: start-up is zeroed before the load), the top functions
# (callgrind_annotate), Redis's command statistics and the load's report.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?output directory}"
bin="${2:-${CHATSTREAM_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/chatstream}}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
CONVERSATIONS="${CONVERSATIONS:-30}"
RATE="${RATE:-20}"
REPLY_TOKENS="${REPLY_TOKENS:-100}"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PIDS=()
stop_all() { [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; PIDS=(); }
trap stop_all EXIT

rport=$(free_port)
redis-server --bind 127.0.0.1 --port "$rport" --dir "$out" --save "" --appendonly no >"$out/redis.log" 2>&1 &
PIDS+=($!)
redis_pid=$!
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
urls=()
pids=()
for n in 1 2 3; do
  port=$(free_port)
  wrap=()
  [ "$n" = 1 ] && wrap=(valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out")
  env REDIS_URL="redis://127.0.0.1:$rport" BIND="127.0.0.1:$port" NODE_ID="node-$n" \
    DEMO_TOKEN_DELAY_MS=$((1000 / RATE)) DEMO_REPLY_TOKENS="$REPLY_TOKENS" \
    MAX_GENERATIONS_PER_USER=1000 GUEST_TOKENS_PER_MINUTE=1000000 API_REQUESTS_PER_SECOND=1000000 \
    AUTH_SECRET=bench-secret-of-at-least-thirty-two-bytes ADMIN_TOKEN=bench-admin-token-of-at-least-32-bytes \
    RUST_LOG=warn "${wrap[@]}" "$bin" serve >>"$out/node-$n.log" 2>&1 &
  PIDS+=($!)
  pids+=($!)
  urls+=("http://127.0.0.1:$port")
done
for u in "${urls[@]}"; do
  for _ in $(seq 1 600); do curl -fsS -o /dev/null "$u/readyz" 2>/dev/null && break; sleep 0.1; done
done
callgrind_control -z "${pids[0]}" >/dev/null
redis-cli -p "$rport" config resetstat >/dev/null
"$bin" load --url "$(IFS=,; echo "${urls[*]}")" --workload stream --rate "$RATE" -c "$CONVERSATIONS" \
  --warmup-tokens 10 --measured-tokens $((REPLY_TOKENS / 2)) --duration-secs 120 \
  --pid "${pids[0]},$redis_pid" --json >"$out/report.json" 2>"$out/load.err"
callgrind_control -d "${pids[0]}" >/dev/null
redis-cli -p "$rport" info commandstats | tr -d '\r' | grep '^cmdstat_' >"$out/redis.stats"
stop_all
dump=$(ls -S "$out"/callgrind.out* | head -1)
callgrind_annotate --inclusive=no "$dump" 2>/dev/null | head -60 >"$out/top-self.txt"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | head -80 >"$out/top-inclusive.txt"
echo "tokens: $((CONVERSATIONS * REPLY_TOKENS)) across the three nodes; node 1 generated and delivered a third"
grep -m1 "PROGRAM TOTALS\|Ir" "$out/top-self.txt"
