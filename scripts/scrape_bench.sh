#!/usr/bin/env bash
# How long a `/metrics` scrape takes with many stored tasks (issue 20's target: <= 50 ms at
# 1,000,000). Starts a release server in the given mode, fills its database behind its back
# with N finished tasks (1 % of them dead letters) and 10,000 users' spend rows, then times
# SCRAPES scrapes with curl. Usage:
#   scripts/scrape_bench.sh embedded|clustered [N (default 1000000)]
# Env: SCRAPES (default 50), PORT (default 18111), SERVER_BIN (default target/release/...).
# Clustered mode uses a fresh database ais_scrape on 127.0.0.1:5432 and Redis prefix scrape.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1 n=${2:-1000000}
port=${PORT:-18111}
bin=${SERVER_BIN:-${CARGO_TARGET_DIR:-target}/release/ai-integration-service}
data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
common=(env PORT="$port" RUST_LOG=warn JWT_SECRET=scrape-secret-scrape-secret-scrape)
pg() { psql -h 127.0.0.1 -U postgres -qAt "$@"; }

# One statement for both databases: N tasks, every 100th failed, the rest completed, over
# 1,000 users; and this month's spend for 10,000 users.
fill_sql() {
  local uuid=$1 json=$2 ts=$3 series=$4
  cat <<SQL
INSERT INTO tasks (id, user_id, task_type, status, priority, payload, result, error, max_retries,
  timeout_ms, run_after, created_at, updated_at, started_at, completed_at)
SELECT $uuid, 'user-' || (g % 1000), 'summarize',
  CASE WHEN g % 100 = 0 THEN 'failed' ELSE 'completed' END, 5, $json, NULL, NULL, 3, 300000,
  $ts, $ts, $ts, $ts, $ts
FROM $series;
INSERT INTO user_spend (user_id, month, spent_micros, reserved_micros)
SELECT 'user-' || g, '$(date -u +%Y-%m)', 1000 * g, 0 FROM $(echo "$series" | sed "s/$n/10000/");
SQL
}

if [ "$mode" = clustered ]; then
  pg -c "DROP DATABASE IF EXISTS ais_scrape" -c "CREATE DATABASE ais_scrape" 2>/dev/null
  redis-cli --scan --pattern 'scrape:*' | xargs -r redis-cli del >/dev/null
  "${common[@]}" DATABASE_URL=postgres://postgres@127.0.0.1:5432/ais_scrape \
    REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX=scrape "$bin" > "$data/server.log" 2>&1 &
else
  "${common[@]}" DATA_DIR="$data" "$bin" > "$data/server.log" 2>&1 &
fi
server=$!
for _ in $(seq 1 100); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.1; done
echo "filling $n tasks ($mode)"
started=$(date +%s)
if [ "$mode" = clustered ]; then
  fill_sql "gen_random_uuid()" "'{\"text\":\"x\"}'::jsonb" "now()" "generate_series(1, $n) g" |
    pg -d ais_scrape
  pg -d ais_scrape -c "VACUUM ANALYZE tasks"
else
  # SQLite stores UUIDs as 16-byte blobs and times as text, as the service writes them.
  fill_sql "randomblob(16)" "'{\"text\":\"x\"}'" "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')" \
    "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < $n) SELECT g FROM s) AS gs" |
    sqlite3 -cmd ".timeout 30000" "$data/tasks.db"
fi
echo "  filled in $(( $(date +%s) - started )) s"
curl -sf "localhost:$port/metrics" | grep -E '^ais_dead_letters |^ais_cost_month_microdollars ' | sed 's/^/  /'
for _ in $(seq 1 "${SCRAPES:-50}"); do
  curl -s -o /dev/null -w '%{time_total}\n' "localhost:$port/metrics"
done | sort -n | awk '{ t[NR] = $1 * 1000 } END {
  printf "  scrape ms over %d: p50 %.1f  p95 %.1f  max %.1f\n", NR, t[int(NR * 0.5)], t[int(NR * 0.95)], t[NR] }'
