#!/usr/bin/env bash
# The load figures of docs/benchmarks.md: every scenario against one setup,
# each run bounded (at most 60 s measured), every process started here
# stopped by its pid.
#
#   benches/load_matrix.sh mem     OUT   one node, memory engine
#   benches/load_matrix.sh redis   OUT   one node on its own redis-server (no persistence)
#   benches/load_matrix.sh cluster OUT   scripts/cluster.sh: redis (AOF, fsync always), 3 nodes, nginx
#   benches/load_matrix.sh durable OUT   persistence on against off, one paced scenario,
#                                        the variants interleaved (see durable_matrix below)
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

# --- durable: the durable store on against off ------------------------------
# One paced scenario (DEMO_TOKEN_DELAY_MS=20, 120 tokens, COALESCE_MS=5,
# DURABLE_CLIENTS clients × DURABLE_MESSAGES messages) against one node per
# variant, the variants in turn, DURABLE_ROUNDS times (off, on, off, on… so
# that drift shows):
#   off        REDIS_URL only (its own redis-server --save "" --appendonly no): no store
#   on-pg      the same plus DATABASE_URL=postgres://…/<a database created for the run>
#   on-sqlite  the same plus DATABASE_URL=sqlite://<run dir>/x.db
#   mem-off    the memory engine without a store: `cargo bench --bench history --
#              serve-memory` (the binary itself always has one without REDIS_URL)
#   embedded   the memory engine with SQLite in DATA_DIR: plain `chatstream serve`
# Before each run it waits until the 1-minute load average is under
# DURABLE_MAX_LOAD (1.0; at most 10 min, then says so). Per run: the load
# report, CPU of the node, redis-server and the run's PostgreSQL backends,
# the node's disk writes (/proc/PID/io), PostgreSQL's commits and row
# changes (pg_stat_database), and the node's chatstream_store_* metrics.
PG_ADMIN="${CHATSTREAM_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
durable_idle() {
  local limit="${DURABLE_MAX_LOAD:-1.0}" start=$SECONDS
  while awk -v l="$limit" '{exit !($1 >= l)}' /proc/loadavg; do
    if [ $((SECONDS - start)) -ge 600 ]; then
      echo "warning: load average $(cut -d' ' -f1 /proc/loadavg) after 10 min of waiting" >&2
      echo "busy $(cut -d' ' -f1 /proc/loadavg)"
      return
    fi
    sleep 5
  done
  echo "idle $(cut -d' ' -f1 /proc/loadavg) after $((SECONDS - start)) s"
}
pg_backends() { # "pid comm ticks" of the backends of database $1
  local p
  for p in $(psql "$PG_ADMIN" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = '$1'"); do
    [ -r "/proc/$p/stat" ] && echo "$p postgres $(awk '{print $14+$15}' "/proc/$p/stat")"
  done
}
pg_counters() {
  psql "$PG_ADMIN" -Atc "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted, blks_hit + blks_read FROM pg_stat_database WHERE datname = '$1'"
}
durable_start() { # VARIANT: sets URL, NODE_PID, PIDS, STOP, PGDB, RUN_DIR
  local variant=$1 port rport redis_pid=""
  STOP=""
  RUN_DIR=$(mktemp -d "$out/$variant-XXXX")
  port=$(free_port)
  PGDB=""
  local env=(DEMO_TOKEN_DELAY_MS=20 DEMO_REPLY_TOKENS=120 COALESCE_MS=5 FRAMES_PER_SECOND=1000
    DATA_DIR="$RUN_DIR/data" AUTH_SECRET=bench-secret-of-at-least-thirty-two-bytes
    ADMIN_TOKEN=bench-admin-token-of-at-least-32-bytes RUST_LOG=warn BIND="127.0.0.1:$port")
  local cmd=("$BIN" serve)
  case "$variant" in
    off | on-pg | on-sqlite)
      rport=$(free_port)
      redis-server --bind 127.0.0.1 --port "$rport" --dir "$RUN_DIR" --save "" \
        --appendonly no --daemonize no >"$RUN_DIR/redis.log" 2>&1 &
      redis_pid=$!
      for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
      env+=(REDIS_URL="redis://127.0.0.1:$rport")
      ;;
  esac
  case "$variant" in
    on-pg)
      PGDB="chatstream_bench_load_$(date +%s)_$RANDOM"
      psql "$PG_ADMIN" -qc "CREATE DATABASE \"$PGDB\"" || return 1
      env+=(DATABASE_URL="${PG_ADMIN%/*}/$PGDB")
      ;;
    on-sqlite) env+=(DATABASE_URL="sqlite://$RUN_DIR/x.db") ;;
    mem-off) cmd=("$HISTORY_BIN" serve-memory "127.0.0.1:$port") ;;
    off | embedded) ;;
    *) echo "unknown variant $variant" >&2; return 1 ;;
  esac
  env "${env[@]}" "${cmd[@]}" >>"$RUN_DIR/node.log" 2>&1 &
  NODE_PID=$!
  URL="http://127.0.0.1:$port"
  PIDS="$NODE_PID $redis_pid"
  STOP="kill $NODE_PID $redis_pid"
  wait_ready "$URL"
}
durable_matrix() {
  local rounds="${DURABLE_ROUNDS:-2}" clients="${DURABLE_CLIENTS:-200}" messages="${DURABLE_MESSAGES:-10}"
  local variants="${DURABLE_VARIANTS:-off on-pg on-sqlite mem-off embedded}"
  case " $variants " in
    *" mem-off "*)
      HISTORY_BIN="${HISTORY_BIN:-$(cd "$ROOT" && cargo bench --bench history --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "history":
        print(m["executable"])' | tail -1)}"
      [ -x "$HISTORY_BIN" ] || { echo "no history bench binary (cargo bench --bench history --no-run)" >&2; exit 1; }
      ;;
  esac
  local round variant run
  for round in $(seq 1 "$rounds"); do
    for variant in $variants; do
      run="durable-$variant-r$round"
      durable_start "$variant" || { echo "$run: could not start" >&2; $STOP 2>/dev/null; continue; }
      durable_idle >"$out/$run.idle"
      cpu_of "$PIDS" >"$out/$run.cpu-before"
      [ -n "$PGDB" ] && { pg_backends "$PGDB" >"$out/$run.pg-before"; pg_counters "$PGDB" >"$out/$run.pgstat-before"; }
      grep -E '^(write_bytes|syscw)' "/proc/$NODE_PID/io" >"$out/$run.io-before"
      busy_before=$(busy_ticks)
      /usr/bin/time -f "%U %S %e" -o "$out/$run.time" timeout 300 "$BIN" load --url "$URL" --json \
        -c "$clients" -n "$messages" --duration-secs 120 >"$out/$run.json"
      busy_after=$(busy_ticks)
      cpu_of "$PIDS" >"$out/$run.cpu-after"
      grep -E '^(write_bytes|syscw)' "/proc/$NODE_PID/io" >"$out/$run.io-after"
      sleep 2 # the persister's last checkpoints; PostgreSQL's statistics flush
      curl -fsS "$URL/metrics" | grep -E '^chatstream_store_' >"$out/$run.metrics" || true
      if [ -n "$PGDB" ]; then
        pg_backends "$PGDB" >"$out/$run.pg-after"
        pg_counters "$PGDB" >"$out/$run.pgstat-after"
        psql "${PG_ADMIN%/*}/$PGDB" -Atc "SELECT count(*) FROM messages" >"$out/$run.rows"
      elif [ -f "$RUN_DIR/x.db" ] || [ -f "$RUN_DIR/data/chatstream.db" ]; then
        local db="$RUN_DIR/x.db"
        [ -f "$db" ] || db="$RUN_DIR/data/chatstream.db"
        sqlite3 "$db" "SELECT count(*) FROM messages" >"$out/$run.rows" 2>/dev/null || true
      fi
      $STOP
      wait "$NODE_PID" 2>/dev/null
      [ -n "$PGDB" ] && psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS \"$PGDB\" WITH (FORCE)"
      python3 - "$out/$run" "$(getconf CLK_TCK)" "$((busy_after - busy_before))" "$variant" <<'PY'
import json, os, sys
run, hz, busy, variant = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
report = json.load(open(run + ".json"))
def ticks(path):
    if not os.path.exists(path):
        return {}
    return {l.split()[0]: (l.split()[1], int(l.split()[2])) for l in open(path) if l.strip()}
before, after = ticks(run + ".cpu-before"), ticks(run + ".cpu-after")
per = {}
for pid, (comm, t) in after.items():
    name = "redis" if comm.startswith("redis") else "node"
    per[name] = per.get(name, 0) + (t - before[pid][1]) / hz
pgb, pga = ticks(run + ".pg-before"), ticks(run + ".pg-after")
if pga:
    per["postgres"] = sum(t - pgb.get(pid, (0, 0))[1] for pid, (_, t) in pga.items()) / hz
def kv(path):
    return {l.split(":")[0]: int(l.split(":")[1]) for l in open(path)} if os.path.exists(path) else {}
iob, ioa = kv(run + ".io-before"), kv(run + ".io-after")
user, system, wall = map(float, open(run + ".time").read().split())
elapsed = report["elapsed_secs"]
store = {"node_write_bytes": ioa.get("write_bytes", 0) - iob.get("write_bytes", 0),
         "node_write_syscalls": ioa.get("syscw", 0) - iob.get("syscw", 0)}
if os.path.exists(run + ".pgstat-after"):
    b = list(map(int, open(run + ".pgstat-before").read().split("|")))
    a = list(map(int, open(run + ".pgstat-after").read().split("|")))
    store.update(zip(["pg_commits", "pg_inserted", "pg_updated", "pg_deleted", "pg_blocks"], [y - x for x, y in zip(b, a)]))
if os.path.exists(run + ".rows"):
    rows = open(run + ".rows").read().strip()
    store["messages_stored"] = int(rows) if rows.isdigit() else None
metrics = {}
if os.path.exists(run + ".metrics"):
    for line in open(run + ".metrics"):
        name, value = line.rsplit(" ", 1)
        metrics[name] = float(value)
report["cpu"] = {"per_process_cpu_s": per, "loadgen_cpu_s": user + system, "loadgen_wall_s": wall,
                 "machine_busy_cpu_s": busy / hz}
report["store"] = store
report["store_metrics"] = metrics
report["variant"] = variant
report["idle"] = open(run + ".idle").read().strip()
json.dump(report, open(run + ".json", "w"), indent=1)
r, a, f = report["rates"], report["append_to_screen_ms"], report["send_to_first_delta_ms"]
events = report["events_received"]
per_k = {k: round(v / events * 1000, 3) for k, v in per.items()}
print(f'{os.path.basename(run)}: {elapsed:.1f}s turns/s={r["turns"]:.1f} events/s={r["events"]:.0f} '
      f'append->screen p50/p99={a["p50"]:.2f}/{a["p99"]:.2f} ms send->first p50/p99={f["p50"]:.1f}/{f["p99"]:.1f} ms '
      f'cpu s/1000 events={per_k} store={store} metrics={metrics} gaps={report["gaps"]} '
      f'received={events}/{report["events_expected"]} errors={report["error_count"]} ({report["idle"]})')
PY
    done
  done
}
if [ "$setup" = durable ]; then
  durable_matrix
  exit 0
fi

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
