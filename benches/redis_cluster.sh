#!/usr/bin/env bash
# The cross-node workload on one Redis server against a three-master Redis
# Cluster (docs/benchmarks.md, "One Redis against a Redis Cluster"): three
# nodes, each client sending to node i and followed by a watcher on node
# i + 1 (`chatstream load --url n1,n2,n3 -w 1`), so that every event crosses
# Redis between nodes. Neither Redis persists anything, and the cluster has
# no replicas: the comparison is of the engine's work, not of durability.
#
#   benches/redis_cluster.sh OUT
#
# Needs a release build (cargo build --release). OUT gets, per setup and
# scenario, the load report (JSON), the CPU ticks of every process before
# and after, and each Redis server's command calls and keys; one summary
# line per run on stdout. Every process started here is stopped by pid.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${CHATSTREAM_BIN:-$ROOT/target/release/chatstream}"
out="${1:?output directory}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# name, ms between demo tokens, COALESCE_MS, clients, messages
SCENARIOS=(
  "paced-d20-c5-150  20 5 150 3"
  "stress-d1-c5-100   1 5 100 10"
)
# The setups alternate, ROUNDS times, so that drift of this shared
# machine's load shows as a difference between rounds, not between setups.
ROUNDS="${ROUNDS:-2}"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ticks() { for p in $1; do echo "$p $(cat "/proc/$p/comm") $(awk '{print $14+$15}' "/proc/$p/stat")"; done; }
wait_redis() { for _ in $(seq 1 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }

PIDS=()
stop_all() { kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; PIDS=(); }
trap stop_all EXIT

# start_redis SETUP DIR: sets REDIS_ENV, REDIS_PORTS and REDIS_PIDS.
start_redis() {
  local setup=$1 dir=$2 port
  REDIS_PORTS=()
  REDIS_PIDS=()
  if [ "$setup" = one ]; then
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
      >"$dir/redis-$port.log" 2>&1 &
    PIDS+=($!)
    REDIS_PIDS=($!)
    wait_redis "$port"
    REDIS_PORTS=("$port")
    REDIS_ENV="REDIS_URL=redis://127.0.0.1:$port"
    return
  fi
  local seeds=() bus
  for _ in 1 2 3; do
    port=$(free_port)
    # Its own bus port: the default, port + 10000, may not exist.
    bus=$(free_port)
    mkdir -p "$dir/$port"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir/$port" --save "" --appendonly no \
      --cluster-enabled yes --cluster-port "$bus" --cluster-config-file nodes.conf \
      >"$dir/redis-$port.log" 2>&1 &
    PIDS+=($!)
    REDIS_PIDS+=($!)
    wait_redis "$port"
    REDIS_PORTS+=("$port")
    seeds+=("127.0.0.1:$port")
  done
  redis-cli --cluster create "${seeds[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1
  for _ in $(seq 1 100); do
    redis-cli -p "${REDIS_PORTS[0]}" cluster info | grep -q cluster_state:ok && break
    sleep 0.1
  done
  REDIS_ENV="REDIS_CLUSTER_NODES=$(printf 'redis://%s,' "${seeds[@]}" | sed 's/,$//')"
}

for round in $(seq 1 "$ROUNDS"); do
  for line in "${SCENARIOS[@]}"; do
    for setup in one cluster; do
      read -r name delay coalesce clients messages <<<"$line"
      run="$setup-$name-r$round"
      dir=$(mktemp -d "$out/$run-XXXX")
      start_redis "$setup" "$dir"
      urls=()
      node_pids=()
      for n in 1 2 3; do
        port=$(free_port)
        env "$REDIS_ENV" BIND="127.0.0.1:$port" NODE_ID="node-$n" DEMO_TOKEN_DELAY_MS="$delay" \
          DEMO_REPLY_TOKENS=120 COALESCE_MS="$coalesce" FRAMES_PER_SECOND=1000 \
          MAX_GENERATIONS_PER_USER=1000 GUEST_TOKENS_PER_MINUTE=1000000 API_REQUESTS_PER_SECOND=1000000 \
          AUTH_SECRET=bench-secret-of-at-least-thirty-two-bytes ADMIN_TOKEN=bench-admin-token-of-at-least-32-bytes \
          RUST_LOG=warn "$BIN" serve >>"$dir/node-$n.log" 2>&1 &
        node_pids+=($!)
        PIDS+=($!)
        urls+=("http://127.0.0.1:$port")
      done
      for u in "${urls[@]}"; do
        for _ in $(seq 1 200); do curl -fsS -o /dev/null "$u/readyz" 2>/dev/null && break; sleep 0.05; done
      done
      redis_pids="${REDIS_PIDS[*]}"
      for p in "${REDIS_PORTS[@]}"; do redis-cli -p "$p" config resetstat >/dev/null; done
      ticks "${node_pids[*]} $redis_pids" >"$dir/cpu-before"
      "$BIN" load --url "$(IFS=,; echo "${urls[*]}")" -c "$clients" -n "$messages" -w 1 \
        --duration-secs 60 --json >"$dir/report.json" 2>"$dir/load.err" &
      load_pid=$!
      wait "$load_pid"
      ticks "${node_pids[*]} $redis_pids" >"$dir/cpu-after"
      for p in "${REDIS_PORTS[@]}"; do
        {
          echo "port $p keys $(redis-cli -p "$p" dbsize)"
          redis-cli -p "$p" info commandstats | tr -d '\r' | grep '^cmdstat_'
        } >"$dir/redis-$p.stats"
      done
      python3 - "$dir" "$run" <<'PY'
import json, os, sys
d, run = sys.argv[1], sys.argv[2]
hz = os.sysconf("SC_CLK_TCK")
def load(name):
    return {l.split()[0]: (l.split()[1], int(l.split()[2])) for l in open(f"{d}/{name}") if l.strip()}
before, after = load("cpu-before"), load("cpu-after")
r = json.load(open(f"{d}/report.json"))
el = r["elapsed_secs"]
nodes = sum(after[p][1] - before[p][1] for p in after if after[p][0] != "redis-server") / hz
redis = [(after[p][1] - before[p][1]) / hz for p in sorted(after) if after[p][0] == "redis-server"]
calls = []
for f in sorted(os.listdir(d)):
    if f.startswith("redis-") and f.endswith(".stats"):
        total = sum(int(l.split("calls=")[1].split(",")[0]) for l in open(f"{d}/{f}") if "calls=" in l)
        calls.append(total)
appended = r["events_appended"]
s = r["append_to_screen_ms"]
print(f"{run}: appended {appended} ({appended / el:,.0f}/s) in {el:.1f} s{' (deadline)' if r['stopped_by_deadline'] else ''}, received {r['events_received']} of {r['events_expected']}, "
      f"gaps {r['gaps']}, errors {r['error_count']}, append->screen p50 {s['p50']:.2f} p99 {s['p99']:.2f} ms, "
      f"CPU nodes {nodes / el:.2f} cores, redis {' + '.join(f'{x / el:.2f}' for x in redis)} cores, "
      f"{(nodes + sum(redis)) * 1e6 / appended:.1f} us/event, redis calls per server {calls}")
PY
      stop_all
    done
  done
done
