#!/usr/bin/env bash
# Measures how long tasks orphaned by `kill -9` wait before another instance runs them again.
# Instance A (clustered) claims N slow echo tasks; instance B starts idle; A is killed with
# SIGKILL; the script reports, per orphaned task, the time from the kill to its second
# TaskStarted event (written by B), against the target LEASE + 1 s. Usage:
#   scripts/rescuebench.sh [N]        (default 100)
# Env: LEASE (LEASE_DURATION, default 30s), PORT (A's port, default 18111; B uses PORT+1),
# SERVER_BIN (default $CARGO_TARGET_DIR/release/ai-integration-service, i.e. target/release/...).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
lease=${LEASE:-30s}
port=${PORT:-18111}
bin=${SERVER_BIN:-${CARGO_TARGET_DIR:-target}/release/ai-integration-service}
db=ais_rescue
export JWT_SECRET=bench-secret-bench-secret-bench-secret
logs=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$logs"' EXIT

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null
redis-cli --scan --pattern 'rescue:*' | xargs -r redis-cli del >/dev/null
sql() { psql -h 127.0.0.1 -U postgres -d "$db" -Atc "$1"; }

start() { # port, log name
  env PORT="$1" WORKER_POOL_SIZE="$n" LEASE_DURATION="$lease" RUST_LOG=warn ENABLE_ECHO=true MAX_ACTIVE_TASKS_PER_USER=0 \
    DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" REDIS_URL=redis://127.0.0.1:6379 \
    REDIS_KEY_PREFIX=rescue "$bin" > "$logs/$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "localhost:$1/readyz" >/dev/null && return; sleep 0.1; done
  echo "instance on :$1 did not become ready" >&2
  cat "$logs/$2.log" >&2
  exit 1
}

start "$port" a
a=${pids[0]}
token=$("$bin" token --user rescue)
# Each task runs far longer than the lease, so every one is still running on A when it dies.
tasks=$(python3 -c "import json; print(json.dumps({'tasks': [{'type': 'echo', 'payload': {'i': i, 'delay_ms': 600000}} for i in range($n)]}))")
curl -sf -X POST "localhost:$port/api/v1/tasks/batch" -H "Authorization: Bearer $token" \
  -H 'content-type: application/json' -d "$tasks" >/dev/null
until [ "$(sql "SELECT COUNT(*) FROM tasks WHERE status = 'processing'")" = "$n" ]; do sleep 0.1; done

start $((port + 1)) b
kill_at=$(date +%s.%N)
kill -9 "$a"
wait "$a" 2>/dev/null || true
echo "killed A (pid $a) holding $n tasks at $(date -u +%T.%N); lease $lease; waiting for B to run them"

until [ "$(sql "SELECT COUNT(*) FROM tasks WHERE status = 'processing' AND attempts = 2")" = "$n" ]; do
  sleep 0.2
done
sql "WITH restarts AS (
       SELECT EXTRACT(EPOCH FROM e.created_at) - $kill_at AS s
       FROM task_events e
       WHERE e.event_type = 'TaskStarted'
         AND e.id = (SELECT MAX(id) FROM task_events x
                     WHERE x.task_id = e.task_id AND x.event_type = 'TaskStarted'))
     SELECT format('orphans %s: kill -> running again min %ss, p50 %ss, max %ss',
       COUNT(*), ROUND(MIN(s)::numeric, 2),
       ROUND((PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY s))::numeric, 2),
       ROUND(MAX(s)::numeric, 2))
     FROM restarts"
