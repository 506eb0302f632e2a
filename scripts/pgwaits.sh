#!/usr/bin/env bash
# Samples what PostgreSQL's active backends of one database wait on, every 20 ms, and prints
# the counts (wait event type : wait event : start of the query). Run it beside a benchmark to
# see lock convoys or WAL flush waits. Usage: scripts/pgwaits.sh [DATABASE] [SECONDS]
#   e.g. (sleep 4; scripts/pgwaits.sh ais_bench 8) & scripts/bench.sh clustered 100 --rate 1000
set -euo pipefail
db=${1:-ais_bench}
end=$((SECONDS + ${2:-8}))
while [ "$SECONDS" -lt "$end" ]; do
  psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT coalesce(wait_event_type, 'cpu') || ':' ||
    coalesce(wait_event, '-') || ':' || left(regexp_replace(query, '\s+', ' ', 'g'), 40)
    FROM pg_stat_activity WHERE datname = '$db' AND state = 'active'" 2>/dev/null || true
  sleep 0.02
done | sort | uniq -c | sort -rn | head -25
