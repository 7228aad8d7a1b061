#!/usr/bin/env bash
# A local chatstream cluster without Docker: redis-server (append-only
# persistence), three nodes and nginx in front, all on 127.0.0.1.
#
#   scripts/cluster.sh                  start, print the URL, stop on Ctrl-C
#   scripts/cluster.sh up DIR           start in the background, state in DIR
#   scripts/cluster.sh down DIR         stop everything started in DIR
#   scripts/cluster.sh start-node DIR N (re)start node N (1..3) on its port
#   scripts/cluster.sh start-redis DIR  (re)start redis-server on its port
#
# DIR/cluster.env holds the ports and secrets; DIR/*.pid the process ids;
# DIR/*.log the logs. CHATSTREAM_BIN picks the binary (default: a release
# build, made if needed). DEMO_TOKEN_DELAY_MS and DEMO_REPLY_TOKENS pass
# through to the nodes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NODES=3

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # url, what
  for _ in $(seq 1 200); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "$2 did not come up ($1)" >&2
  return 1
}

start_redis() {
  local dir="$1"
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" \
    --appendonly yes --appendfsync always --save "" \
    --daemonize no >"$dir/redis.log" 2>&1 &
  echo $! >"$dir/redis.pid"
  for _ in $(seq 1 200); do
    if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "redis-server did not come up" >&2
  return 1
}

start_node() {
  local dir="$1" n="$2"
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  local port_var="NODE${n}_PORT"
  local port="${!port_var}"
  export DEMO_TOKEN_DELAY_MS DEMO_REPLY_TOKENS
  # nginx on this machine is the nodes' proxy: its X-Forwarded-For names
  # the client, for the per-IP limits.
  BIND="127.0.0.1:$port" NODE_ID="node-$n" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    AUTH_SECRET="$AUTH_SECRET" ADMIN_TOKEN="$ADMIN_TOKEN" \
    TRUSTED_PROXIES="${TRUSTED_PROXIES:-127.0.0.1}" \
    "$CHATSTREAM_BIN" serve >>"$dir/node-$n.log" 2>&1 &
  echo $! >"$dir/node-$n.pid"
  wait_for "http://127.0.0.1:$port/readyz" "node-$n"
}

start_nginx() {
  local dir="$1"
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  local servers=""
  for n in $(seq 1 $NODES); do
    local port_var="NODE${n}_PORT"
    servers+="    server 127.0.0.1:${!port_var} max_fails=1 fail_timeout=3s;\n"
  done
  sed -e '/^\s*server chatstream-/d' \
      -e "s|^upstream chatstream {|upstream chatstream {\n$servers|" \
      -e "s|listen 8080;|listen 127.0.0.1:$NGINX_PORT;|" \
      -e "s|/var/log/nginx/access.log|$dir/access.log|" \
      "$ROOT/deploy/nginx.conf" >"$dir/chatstream.conf"
  mkdir -p "$dir/nginx-temp"
  cat >"$dir/nginx.conf" <<CONF
user root;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/nginx-temp/body;
    proxy_temp_path $dir/nginx-temp/proxy;
    fastcgi_temp_path $dir/nginx-temp/fastcgi;
    uwsgi_temp_path $dir/nginx-temp/uwsgi;
    scgi_temp_path $dir/nginx-temp/scgi;
    include $dir/chatstream.conf;
}
CONF
  local nginx_bin
  nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
  "$nginx_bin" -c "$dir/nginx.conf" -p "$dir"
  wait_for "http://127.0.0.1:$NGINX_PORT/healthz" "nginx"
}

up() {
  local dir="$1"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [ -z "${CHATSTREAM_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --bin chatstream)
    # Where cargo put it: CARGO_TARGET_DIR or cargo's configuration may
    # move the target directory away from ./target.
    local target_dir
    target_dir="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    CHATSTREAM_BIN="$target_dir/release/chatstream"
  fi
  {
    echo "CHATSTREAM_BIN=$CHATSTREAM_BIN"
    echo "REDIS_PORT=$(free_port)"
    for n in $(seq 1 $NODES); do echo "NODE${n}_PORT=$(free_port)"; done
    echo "NGINX_PORT=$(free_port)"
    echo "AUTH_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
    echo "ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    # Every node, restarted ones too, must run the same model settings.
    for var in DEMO_TOKEN_DELAY_MS DEMO_REPLY_TOKENS; do
      if [ -n "${!var:-}" ]; then echo "$var=${!var}"; fi
    done
  } >"$dir/cluster.env"
  start_redis "$dir"
  for n in $(seq 1 $NODES); do start_node "$dir" "$n"; done
  start_nginx "$dir"
  # shellcheck disable=SC1091
  source "$dir/cluster.env"
  echo "chatstream cluster up: http://127.0.0.1:$NGINX_PORT (state in $dir)"
}

down() {
  local dir="$1" pids=()
  for name in nginx node-1 node-2 node-3 redis; do
    if [ -f "$dir/$name.pid" ]; then
      pids+=("$(cat "$dir/$name.pid")")
      rm -f "$dir/$name.pid"
    fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  # Nodes hand their replies over and exit within a few seconds; past ten,
  # whatever is left is killed.
  for _ in $(seq 1 200); do
    local alive=0
    for pid in "${pids[@]}"; do
      if [ -e "/proc/$pid" ] && ! grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null; then alive=1; fi
    done
    [ $alive -eq 1 ] || return 0
    sleep 0.05
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
}

case "${1:-}" in
  up) up "$2" ;;
  down) down "$2" ;;
  start-node) start_node "$2" "$3" ;;
  start-redis) start_redis "$2" ;;
  "")
    dir="$(mktemp -d -t chatstream-cluster-XXXXXX)"
    trap 'down "$dir"' EXIT INT TERM
    up "$dir"
    echo "Ctrl-C stops it."
    wait
    ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
