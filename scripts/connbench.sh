#!/usr/bin/env bash
# Runs one connection benchmark: starts a fresh release server in the given mode, runs connload
# against it (which holds the connections, produces events and reads the server's RSS), stops
# the server. Usage:
#   scripts/connbench.sh embedded|clustered [connload args...]
# Env: MAXCONN (MAX_CONNECTIONS, default 20000), BUFFER (NOTIFICATION_BUFFER, default 256),
# POOL (WORKER_POOL_SIZE, default 1000: an echo task takes microseconds, so claims amortise over many slots), LOG (RUST_LOG, default warn), PORT (default 18102),
# PROFILE (cargo profile directory under target/, default release). The server and connload (the
# workspace crate tools/connload) both run from $CARGO_TARGET_DIR/$PROFILE: build them with
# `cargo build --release` at the root.
# Clustered mode uses a fresh database ais_connbench on 127.0.0.1:5432 and Redis prefix
# connbench. The server's log is printed when it exits badly.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1
shift
port=${PORT:-18102}
dir=${CARGO_TARGET_DIR:-target}/${PROFILE:-release}
export JWT_SECRET=connbench-secret-connbench-secret-0123
# Both processes need a descriptor per connection (plus the database, Redis, the listener).
ulimit -n "$(ulimit -Hn)"
data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
common=(env PORT="$port" WORKER_POOL_SIZE="${POOL:-1000}" MAX_CONNECTIONS="${MAXCONN:-20000}" ENABLE_ECHO=true MAX_ACTIVE_TASKS_PER_USER=0
  NOTIFICATION_BUFFER="${BUFFER:-256}" MAX_QUEUE_SIZE=100000 RUST_LOG="${LOG:-warn}")
if [ "$mode" = clustered ]; then
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS ais_connbench" \
    -c "CREATE DATABASE ais_connbench" 2>/dev/null
  redis-cli --scan --pattern 'connbench:*' | xargs -r redis-cli del >/dev/null
  "${common[@]}" DATABASE_URL=postgres://postgres@127.0.0.1:5432/ais_connbench \
    REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX=connbench "$dir/ai-integration-service" \
    > "$data/server.log" 2>&1 &
elif [ "$mode" = embedded ]; then
  "${common[@]}" DATA_DIR="$data" "$dir/ai-integration-service" > "$data/server.log" 2>&1 &
else
  echo "usage: $0 embedded|clustered [connload args...]" >&2
  exit 2
fi
server=$!
for _ in $(seq 1 100); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.1; done
status=0
"$dir/connload" --url "http://127.0.0.1:$port" --server-pid "$server" --label "$mode" "$@" || status=$?
if ! kill -0 "$server" 2>/dev/null; then
  echo "connbench: the server exited during the run; its log:" >&2
  tail -50 "$data/server.log" >&2
fi
exit "$status"
