#!/usr/bin/env bash
# What an open dashboard costs the server: runs a release server under a steady load from
# tools/loadgen (RATE tasks/s, default 1,000), and while the load runs, opens N dashboard
# streams (GET /api/v1/admin/dashboard/stream, read and discarded by curl) for each N given,
# measuring the server's CPU (utime + stime from /proc/PID/stat) over WINDOW seconds per
# phase. Prints each phase's CPU as a share of one core and, against the latest phase with
# no dashboard before it, the cost per open dashboard: the server's own cost grows over a run
# (its tables grow), so phases alternate with empty ones rather than compare with the first.
# PERF=1 records a `perf` profile of each phase's window (target/dashbench/perf-PHASE-N.data,
# N dashboards; `perf report -i` reads it). Usage:
#   scripts/dashbench.sh [N...]            (default: 0 1 0 10 0 50)
# Env: MODE embedded|clustered (default embedded), RATE (1000), WINDOW (10 s), POOL (50),
# PORT (18102), SERVER_BIN / loadgen from $CARGO_TARGET_DIR/release (build both with
# `cargo build --release` at the root). Clustered mode uses database ais_dashbench on
# 127.0.0.1:5432 and Redis prefix dashbench.
set -euo pipefail
cd "$(dirname "$0")/.."
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(0 1 0 10 0 50)
mode=${MODE:-embedded} rate=${RATE:-1000} window=${WINDOW:-10} port=${PORT:-18102}
dir=${CARGO_TARGET_DIR:-target}/release
bin=${SERVER_BIN:-$dir/ai-integration-service}
export JWT_SECRET=dashbench-secret-dashbench-secret
data=$(mktemp -d)
streams=()
cleanup() {
  for s in "${streams[@]}"; do kill "$s" 2>/dev/null || true; done
  [ -n "${load:-}" ] && kill "$load" 2>/dev/null || true
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
env_common=(env PORT="$port" WORKER_POOL_SIZE="${POOL:-50}" MAX_QUEUE_SIZE=100000 RUST_LOG=warn
            ENABLE_ECHO=true MAX_ACTIVE_TASKS_PER_USER=0)
if [ "$mode" = clustered ]; then
  psql -h 127.0.0.1 -U postgres -qAt -c "DROP DATABASE IF EXISTS ais_dashbench" \
    -c "CREATE DATABASE ais_dashbench" 2>/dev/null
  redis-cli --scan --pattern 'dashbench:*' | xargs -r redis-cli del >/dev/null
  extra=(DATABASE_URL=postgres://postgres@127.0.0.1:5432/ais_dashbench
         REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX=dashbench)
else
  extra=(DATA_DIR="$data")
fi
"${env_common[@]}" "${extra[@]}" "$bin" > "$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.1; done
admin=$("${env_common[@]}" "${extra[@]}" "$bin" token --user dashbench-ops --admin --ttl 2h)
tick=$(getconf CLK_TCK)
cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$server/stat"; }

# Long enough for every phase: warm-up, then per phase a settle and a window.
seconds=$(( 10 + ${#phases[@]} * (window + 3) + 5 ))
"$dir/loadgen" --url "http://127.0.0.1:$port" --rate "$rate" --tasks $(( rate * seconds )) \
  --users 20 --timeout 10m > "$data/loadgen.txt" 2>&1 &
load=$!
sleep 10
echo "mode $mode, $rate tasks/s, ${window}s per phase, $(nproc) cores"
base="" phase=0
for n in "${phases[@]}"; do
  for _ in $(seq 1 "$n"); do
    curl -sN -H "Authorization: Bearer $admin" \
      "http://127.0.0.1:$port/api/v1/admin/dashboard/stream" > /dev/null &
    streams+=($!)
  done
  sleep 3
  phase=$((phase + 1))
  if [ -n "${PERF:-}" ]; then
    mkdir -p target/dashbench
    perf record -q -F 499 -g -p "$server" -o "target/dashbench/perf-$phase-$n.data" \
      -- sleep "$window" 2>/dev/null &
    profiler=$!
  fi
  c0=$(cpu) t0=$(date +%s%N)
  sleep "$window"
  c1=$(cpu) t1=$(date +%s%N)
  [ -n "${profiler:-}" ] && { wait "$profiler" || true; profiler=""; }
  share=$(awk -v c=$((c1 - c0)) -v t="$tick" -v ns=$((t1 - t0)) 'BEGIN { printf "%.2f", c / t / (ns / 1e9) * 100 }')
  if [ "$n" -eq 0 ]; then base=$share; fi
  per=$(awk -v s="$share" -v b="$base" -v n="$n" 'BEGIN { if (n > 0 && b != "") printf "%+.3f", (s - b) / n; else printf "-" }')
  echo "  dashboards $n: server CPU $share % of a core; per dashboard vs the empty phase before: $per %"
  for s in "${streams[@]}"; do kill "$s" 2>/dev/null || true; done
  streams=()
done
wait "$load" || true
load=""
echo "loadgen:"
sed 's/^/  /' "$data/loadgen.txt" | tail -n 15
