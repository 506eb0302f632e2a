#!/usr/bin/env bash
# Runs one benchmark: starts a fresh release server in the given mode, runs loadgen against it,
# stops the server. Usage:
#   scripts/bench.sh embedded|clustered POOL_SIZE [loadgen args...]
# Env: MAXQ (MAX_QUEUE_SIZE, default 10000), LOG (RUST_LOG, default warn), PORT (default 18101),
# SERVER_BIN (the server binary, default target/release/ai-integration-service: set it to compare
# another build with the same loadgen).
# Clustered mode uses a fresh database ais_bench on 127.0.0.1:5432 and Redis prefix bench.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1 pool=$2
shift 2
port=${PORT:-18101}
bin=${SERVER_BIN:-target/release/ai-integration-service}
export JWT_SECRET=bench-secret-bench-secret-bench-secret
data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
common=(env PORT="$port" WORKER_POOL_SIZE="$pool" MAX_QUEUE_SIZE="${MAXQ:-10000}" RUST_LOG="${LOG:-warn}")
if [ "$mode" = clustered ]; then
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS ais_bench" -c "CREATE DATABASE ais_bench" 2>/dev/null
  redis-cli --scan --pattern 'bench:*' | xargs -r redis-cli del >/dev/null
  "${common[@]}" DATABASE_URL=postgres://postgres@127.0.0.1:5432/ais_bench \
    REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX=bench "$bin" > "${SERVER_LOG:-$data/server.log}" 2>&1 &
else
  "${common[@]}" DATA_DIR="$data" "$bin" > "${SERVER_LOG:-$data/server.log}" 2>&1 &
fi
server=$!
for _ in $(seq 1 100); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.1; done
target/release/loadgen --url "http://127.0.0.1:$port" "$@"
