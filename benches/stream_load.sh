#!/usr/bin/env bash
# The workload of issue 11 (docs/benchmarks.md, "Tokens across three
# nodes"): three release nodes on one redis-server (no persistence), each
# conversation's subscriber on node i and its reply generated on node i + 1,
# the demo model at R tokens a second; and the idle connections. Every
# figure is `chatstream load`'s own (`--workload stream|idle`), CPU and
# memory read by it from /proc for the three nodes and redis-server.
#
#   benches/stream_load.sh OUT [LABEL=BINARY ...]
#
# Without LABEL=BINARY pairs it runs $CHATSTREAM_BIN (or the release build)
# as "current". With several, the binaries alternate within each round
# (ROUNDS, default 2), so that drift of this shared machine shows between
# rounds rather than between binaries. ROWS picks the rows (default all);
# each row is "name rate conversations measured-tokens" or "idle N".
# LOADGEN, if set, is the binary whose `load` runs every row (so that
# binaries compared are measured by the same load generator).
# Every process started here is stopped by pid; every run is bounded.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?output directory}"
shift
mkdir -p "$out"
out="$(cd "$out" && pwd)"
BINS=("$@")
[ ${#BINS[@]} -eq 0 ] && BINS=("current=${CHATSTREAM_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/chatstream}")
ROUNDS="${ROUNDS:-2}"
WARMUP=20
DEFAULT_ROWS=(
  "20k 20 1000 100"
  "40k 40 1000 200"
  "100k 100 1000 500"
  "200k 100 2000 500"
  "idle 10000"
)
if [ -n "${ROWS:-}" ]; then IFS=';' read -r -a RUN_ROWS <<<"$ROWS"; else RUN_ROWS=("${DEFAULT_ROWS[@]}"); fi

# 10,000 sockets on the load generator's side, a third of them per node.
ulimit -n "$(ulimit -Hn)"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PIDS=()
stop_all() { [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; PIDS=(); }
trap stop_all EXIT

# start BIN DIR DELAY_MS REPLY_TOKENS: sets URLS, MEASURED (pids) and RPORT.
start() {
  local bin=$1 dir=$2 delay=$3 tokens=$4 rport port
  rport=$(free_port)
  RPORT=$rport
  redis-server --bind 127.0.0.1 --port "$rport" --dir "$dir" --save "" --appendonly no \
    --maxclients 10000 >"$dir/redis.log" 2>&1 &
  PIDS+=($!)
  MEASURED=($!)
  for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  URLS=()
  for n in 1 2 3; do
    port=$(free_port)
    env REDIS_URL="redis://127.0.0.1:$rport" BIND="127.0.0.1:$port" NODE_ID="node-$n" \
      DEMO_TOKEN_DELAY_MS="$delay" DEMO_REPLY_TOKENS="$tokens" \
      MAX_GENERATIONS_PER_USER=1000 GUEST_TOKENS_PER_MINUTE=1000000 API_REQUESTS_PER_SECOND=1000000 \
      MAX_CONVERSATIONS_PER_USER=1000000 \
      AUTH_SECRET=bench-secret-of-at-least-thirty-two-bytes ADMIN_TOKEN=bench-admin-token-of-at-least-32-bytes \
      RUST_LOG=warn "$bin" serve >>"$dir/node-$n.log" 2>&1 &
    PIDS+=($!)
    MEASURED+=($!)
    URLS+=("http://127.0.0.1:$port")
  done
  for u in "${URLS[@]}"; do
    for _ in $(seq 1 200); do curl -fsS -o /dev/null "$u/readyz" 2>/dev/null && break; sleep 0.05; done
  done
}

for round in $(seq 1 "$ROUNDS"); do
  for row in "${RUN_ROWS[@]}"; do
    for pair in "${BINS[@]}"; do
      label=${pair%%=*}
      bin=${pair#*=}
      read -r name a b c <<<"$row"
      run="$name-$label-r$round"
      dir=$(mktemp -d "$out/$run-XXXX")
      echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" >"$dir/machine"
      if [ "$name" = idle ]; then
        start "$bin" "$dir" 20 10
        args=(--workload idle -c "$a" --duration-secs 300)
      else
        start "$bin" "$dir" $((1000 / a)) $((c + 4 * WARMUP))
        args=(--workload stream --rate "$a" -c "$b" --warmup-tokens "$WARMUP" --measured-tokens "$c"
          --duration-secs 120)
      fi
      "${LOADGEN:-$bin}" load --url "$(IFS=,; echo "${URLS[*]}")" "${args[@]}" \
        --pid "$(IFS=,; echo "${MEASURED[*]}")" --json >"$dir/report.json" 2>"$dir/load.err"
      # Redis's own account of its commands (calls, microseconds), whole run.
      redis-cli -p "$RPORT" info commandstats | tr -d '\r' | grep '^cmdstat_' >"$dir/redis.stats"
      python3 - "$dir/report.json" "$run" <<'PY'
import json, sys
path, run = sys.argv[1], sys.argv[2]
try:
    r = json.load(open(path))
except Exception as e:
    print(f"{run}: no report ({e})"); sys.exit()
if "connect_to_welcome_ms" in r:
    c = r["connect_to_welcome_ms"]
    print(f"{run}: {r['connections']} idle, {r['rss_per_connection_kib']:.2f} KiB each, "
          f"connect->welcome p50 {c['p50']:.3f} p99 {c['p99']:.3f} ms, closed early {r['closed_early']}, errors {r['error_count']}")
else:
    l, f = r["latency_ms"], r["seq_faults"]
    us = r["cpu_us_per_token"]
    print(f"{run}: offered {r['offered_tokens_per_second']:,.0f}/s delivered {r['delivered_tokens_per_second']:,.0f}/s "
          f"({r['tokens_in_window']} tokens in {r['deltas_in_window']} deltas), p50 {l['p50']:.2f} p99 {l['p99']:.2f} ms, "
          f"{us if us is None else round(us, 1)} us/token (cpu s {[round(p['secs'], 2) for p in r['cpu_secs']]}), "
          f"lost {f['lost']} repeated {f['repeated']} out-of-order {f['out_of_order']} missing {r['tokens_missing']} "
          f"unfinished {r['replies_unfinished']} ended-in-window {r['replies_ended_in_window']} errors {r['error_count']} {r['errors'][:2]}")
PY
      stop_all
    done
  done
done
