#!/usr/bin/env bash
# The load figures of docs/benchmarks.md: every scenario against one setup,
# each run bounded (at most 60 s measured), every process started here
# stopped by its pid.
#
#   benches/load_matrix.sh mem     OUT   one node, memory engine
#   benches/load_matrix.sh redis   OUT   one node on its own redis-server (no persistence)
#   benches/load_matrix.sh cluster OUT   scripts/cluster.sh: redis (AOF, fsync always), 3 nodes, nginx
#
# Needs a release build (cargo build --release). OUT gets one JSON report per
# run (with the CPU seconds of each server process and of the load
# generator) and one summary line per run on stdout. Before each run it waits
# for the machine to be idle, since the load generator shares it.
# NODE_PRELOAD, if set, is LD_PRELOADed into memory-engine nodes (the
# TCP_NODELAY probe of docs/benchmarks.md); the setup is then named mem-nodelay.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${CHATSTREAM_BIN:-$ROOT/target/release/chatstream}"
setup="${1:?setup: mem, redis or cluster}"
out="${2:?output directory}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
name_setup="$setup"
[ "$setup" = mem ] && [ -n "${NODE_PRELOAD:-}" ] && name_setup=mem-nodelay

# name, ms between demo tokens, COALESCE_MS, clients, messages, watchers
SCENARIOS=(
  "burst-d0-c0        0 0  200 30 0"
  "stress-d1-c0       1 0  200 30 0"
  "stress-d1-c5       1 5  200 30 0"
  "fanout-d1-c0       1 0   50 20 9"
  "paced-d20-c0-200  20 0  200  3 0"
  "paced-d20-c5-200  20 5  200  3 0"
  "paced-d20-c0-1000 20 0 1000  3 0"
)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
quiet() { # at most 2 minutes: until under 5% of the machine is busy for 2 s
  for _ in $(seq 1 60); do
    local a b
    a=$(busy_ticks); sleep 2; b=$(busy_ticks)
    [ $((b - a)) -lt $((2 * $(getconf CLK_TCK) * $(nproc) / 20)) ] && return 0
  done
  echo "warning: the machine is busy; figures are disturbed" >&2
}
cpu_of() { # "pid comm ticks" per pid
  for p in $1; do echo "$p $(cat "/proc/$p/comm") $(awk '{print $14+$15}' "/proc/$p/stat")"; done
}
wait_ready() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1/readyz" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$1 did not come up" >&2
  return 1
}

# start DELAY COALESCE: sets URL, PIDS (whose CPU is counted) and STOP.
start() {
  local env=(DEMO_TOKEN_DELAY_MS="$1" DEMO_REPLY_TOKENS=120 COALESCE_MS="$2"
    FRAMES_PER_SECOND=1000 DATA_DIR="$(mktemp -d)" AUTH_SECRET=bench-secret-of-at-least-thirty-two-bytes ADMIN_TOKEN=bench-admin-token-of-at-least-32-bytes RUST_LOG=warn)
  case "$setup" in
    mem | redis)
      local port redis_pid=""
      port=$(free_port)
      if [ "$setup" = redis ]; then
        local rport rdir
        rport=$(free_port)
        rdir=$(mktemp -d "$out/redis-XXXX")
        redis-server --bind 127.0.0.1 --port "$rport" --dir "$rdir" --save "" \
          --appendonly no --daemonize no >"$rdir/redis.log" 2>&1 &
        redis_pid=$!
        for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
        env+=(REDIS_URL="redis://127.0.0.1:$rport")
      elif [ -n "${NODE_PRELOAD:-}" ]; then
        env+=(LD_PRELOAD="$NODE_PRELOAD")
      fi
      env "${env[@]}" BIND="127.0.0.1:$port" "$BIN" serve >>"$out/node.log" 2>&1 &
      local node_pid=$!
      URL="http://127.0.0.1:$port"
      PIDS="$node_pid $redis_pid"
      STOP="kill $node_pid $redis_pid"
      wait_ready "$URL"
      ;;
    cluster)
      local dir
      dir=$(mktemp -d "$out/cluster-XXXX")
      env "${env[@]}" CHATSTREAM_BIN="$BIN" "$ROOT/scripts/cluster.sh" up "$dir" >"$dir/up.log" 2>&1
      # shellcheck disable=SC1091
      source "$dir/cluster.env"
      URL="http://127.0.0.1:$NGINX_PORT"
      PIDS="$(cat "$dir"/node-*.pid "$dir/redis.pid" | tr '\n' ' ') $(pgrep -P "$(cat "$dir/nginx.pid")" | tr '\n' ' ')"
      STOP="$ROOT/scripts/cluster.sh down $dir"
      ;;
    *) echo "unknown setup $setup" >&2; exit 2 ;;
  esac
}

for scenario in "${SCENARIOS[@]}"; do
  read -r name delay coalesce clients messages watchers <<<"$scenario"
  run="$name_setup-$name"
  start "$delay" "$coalesce"
  quiet
  cpu_of "$PIDS" >"$out/$run.cpu-before"
  busy_before=$(busy_ticks)
  /usr/bin/time -f "%U %S %e" -o "$out/$run.time" timeout 180 "$BIN" load --url "$URL" --json \
    -c "$clients" -n "$messages" -w "$watchers" --duration-secs 60 >"$out/$run.json"
  busy_after=$(busy_ticks)
  cpu_of "$PIDS" >"$out/$run.cpu-after"
  $STOP
  sleep 1
  python3 - "$out/$run" "$(getconf CLK_TCK)" "$((busy_after - busy_before))" <<'PY'
import json, sys
run, hz, busy = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
report = json.load(open(run + ".json"))
before = {l.split()[0]: int(l.split()[2]) for l in open(run + ".cpu-before")}
per = {}
for line in open(run + ".cpu-after"):
    pid, comm, ticks = line.split()
    per[comm] = per.get(comm, 0) + (int(ticks) - before[pid]) / hz
user, system, wall = map(float, open(run + ".time").read().split())
report["cpu"] = {"per_process_cpu_s": per, "loadgen_cpu_s": user + system,
                 "loadgen_wall_s": wall, "machine_busy_cpu_s": busy / hz}
json.dump(report, open(run + ".json", "w"), indent=1)
r, a, f = report["rates"], report["append_to_screen_ms"], report["send_to_first_delta_ms"]
print(f'{run}: {report["elapsed_secs"]:.1f}s turns/s={r["turns"]:.0f} appended/s={r["appended_events"]:.0f} '
      f'received/s={r["events"]:.0f} MB/s={r["bytes"]/1e6:.1f} append->screen p50/p95/p99/max='
      f'{a["p50"]:.2f}/{a["p95"]:.2f}/{a["p99"]:.2f}/{a["max"]:.0f} ms send->first delta p50/p99='
      f'{f["p50"]:.1f}/{f["p99"]:.1f} ms cpu={ {k: round(v, 1) for k, v in per.items()} } '
      f'loadgen={user + system:.1f}s gaps={report["gaps"]} received={report["events_received"]}/'
      f'{report["events_expected"]} errors={report["error_count"]}')
PY
done
