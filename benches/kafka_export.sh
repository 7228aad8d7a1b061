#!/usr/bin/env bash
# The cost of the Kafka export (docs/benchmarks.md, "Events export"): one
# embedded node (memory engine, SQLite in DATA_DIR) under a paced load
# (DEMO_TOKEN_DELAY_MS=20, 120 tokens, COALESCE_MS=5), export off against on
# (KAFKA_BROKERS: a tansu broker on loopback, its in-memory storage), the
# variants in turn, ROUNDS times, so that drift shows.
#
#   benches/kafka_export.sh OUT
#
# Needs a release build (cargo build --release) and tansu
# (CHATSTREAM_TEST_TANSU, or where .ci/run installs it). Loopback only, each
# load bounded (--duration-secs), every process started here stopped by its
# pid. Per run: the load report, CPU seconds of the node and of the broker,
# and for "on" how long the outbox took to drain after the load and the
# events published. One summary line per run on stdout.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${CHATSTREAM_BIN:-$ROOT/target/release/chatstream}"
TANSU="${CHATSTREAM_TEST_TANSU:-$HOME/.cache/chatstream-tools/tansu-0.6.0/bin/tansu}"
out="${1:?output directory}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
rounds="${EXPORT_ROUNDS:-2}" clients="${EXPORT_CLIENTS:-200}" messages="${EXPORT_MESSAGES:-10}"
variants="${EXPORT_VARIANTS:-off on}"
hz=$(getconf CLK_TCK)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
wait_ready() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1/readyz" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$1 did not come up" >&2
  return 1
}
metric() { curl -fsS "$1/metrics" | awk -v name="$2" '$1 == name {print $2}'; }

kport=$(free_port)
"$TANSU" broker --listener-url "tcp://127.0.0.1:$kport" --advertised-listener-url "tcp://127.0.0.1:$kport" \
  --storage-engine memory://tansu/ >"$out/tansu.log" 2>&1 &
tansu_pid=$!
trap 'kill $tansu_pid 2>/dev/null' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$kport") 2>/dev/null && break
  sleep 0.1
done

for round in $(seq 1 "$rounds"); do
  for variant in $variants; do
    run="export-$variant-r$round"
    port=$(free_port)
    data_dir=$(mktemp -d)
    env=(DEMO_TOKEN_DELAY_MS=20 DEMO_REPLY_TOKENS=120 COALESCE_MS=5 FRAMES_PER_SECOND=1000
      DATA_DIR="$data_dir" AUTH_SECRET=bench-secret-of-at-least-thirty-two-bytes
      ADMIN_TOKEN=bench-admin-token-of-at-least-32-bytes RUST_LOG=warn BIND="127.0.0.1:$port"
      GUEST_TOKENS_PER_MINUTE=1000000 API_REQUESTS_PER_SECOND=1000000)
    if [ "$variant" = on ]; then
      topic="bench.$run.$$"
      "$TANSU" topic create --broker "tcp://127.0.0.1:$kport" --partitions 12 "$topic" >/dev/null
      env+=(KAFKA_BROKERS="127.0.0.1:$kport" KAFKA_TOPIC="$topic")
    fi
    env "${env[@]}" "$BIN" serve >>"$out/node.log" 2>&1 &
    node_pid=$!
    url="http://127.0.0.1:$port"
    wait_ready "$url" || { kill "$node_pid"; continue; }
    node_before=$(ticks "$node_pid") tansu_before=$(ticks "$tansu_pid")
    timeout 300 "$BIN" load --url "$url" --json -c "$clients" -n "$messages" --duration-secs 120 >"$out/$run.json"
    node_load=$(($(ticks "$node_pid") - node_before)) tansu_load=$(($(ticks "$tansu_pid") - tansu_before))
    drain_ms=0 published=0
    if [ "$variant" = on ]; then
      # The load's last events are in the outbox until the next round (200 ms):
      # how long until the node's gauge reads 0 (it is read every 2 s).
      start=$(date +%s%N)
      for _ in $(seq 1 300); do
        [ "$(metric "$url" chatstream_outbox_rows)" = 0 ] && break
        sleep 0.1
      done
      drain_ms=$((($(date +%s%N) - start) / 1000000))
      published=$(metric "$url" chatstream_outbox_published_total)
    fi
    kill "$node_pid"
    wait "$node_pid" 2>/dev/null
    rm -rf "$data_dir"
    python3 - "$out/$run.json" "$hz" "$node_load" "$tansu_load" "$drain_ms" "${published:-0}" <<'PY'
import json, os, sys
path, hz, node, tansu, drain_ms, published = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
report = json.load(open(path))
events = report["events_received"]
r, a, f = report["rates"], report["append_to_screen_ms"], report["send_to_first_delta_ms"]
report["export"] = {"node_cpu_s": node / hz, "broker_cpu_s": tansu / hz,
                    "drain_ms_upper_bound": int(drain_ms), "published": float(published)}
json.dump(report, open(path, "w"), indent=1)
print(f'{os.path.basename(path)[:-5]}: {report["elapsed_secs"]:.1f}s turns/s={r["turns"]:.1f} '
      f'events/s={r["events"]:.0f} append->screen p50/p99={a["p50"]:.2f}/{a["p99"]:.2f} ms '
      f'send->first p50/p99={f["p50"]:.1f}/{f["p99"]:.1f} ms node cpu s/1000 events={node / hz / events * 1000:.4f} '
      f'broker cpu s={tansu / hz:.2f} published={published} drained within {drain_ms} ms '
      f'received={events}/{report["events_expected"]} errors={report["error_count"]}')
PY
  done
done
