#!/usr/bin/env bash
# Runs one benchmark: starts a fresh release server in the given mode, runs loadgen against it,
# stops the server. Usage:
#   scripts/bench.sh embedded|clustered POOL_SIZE [loadgen args...]
# Env: MAXQ (MAX_QUEUE_SIZE, default 10000), LOG (RUST_LOG, default warn), PORT (default 18101),
# SERVER_BIN (the server binary, default $CARGO_TARGET_DIR/release/ai-integration-service, i.e.
# target/release/...: set it to compare another build with the same loadgen).
# loadgen (the workspace crate tools/loadgen) runs from the same release directory: build both
# with `cargo build --release` at the root.
# After the run it prints the CPU time (user + system, seconds) that the server, PostgreSQL and
# Redis used during it: on a shared 2-core box a cheaper build shows there even when latency
# percentiles drown in the machine's noise. Then how busy the whole machine was, how much of it
# the hypervisor stole, and the CPU pressure (from /proc/stat and /proc/pressure/cpu).
# Clustered mode uses a fresh database ais_bench on 127.0.0.1:5432 and Redis prefix bench.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1 pool=$2
shift 2
port=${PORT:-18101}
dir=${CARGO_TARGET_DIR:-target}/release
bin=${SERVER_BIN:-$dir/ai-integration-service}
export JWT_SECRET=bench-secret-bench-secret-bench-secret
data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
common=(env PORT="$port" WORKER_POOL_SIZE="$pool" MAX_QUEUE_SIZE="${MAXQ:-10000}" RUST_LOG="${LOG:-warn}"
        ENABLE_ECHO=true MAX_ACTIVE_TASKS_PER_USER="${MAXACTIVE:-0}")
if [ "$mode" = clustered ]; then
  pg() { psql -h 127.0.0.1 -U postgres -qAt "$@"; }
  pg -c "DROP DATABASE IF EXISTS ais_bench" -c "CREATE DATABASE ais_bench" 2>/dev/null
  # A WAL segment PostgreSQL has not made yet is made during the run by writing 16 MB of zeros
  # and fsyncing them, with the WAL write lock held: every commit waits 30-80 ms (BENCHMARKS.md,
  # seventh session). A server that has run a while recycles old segments instead; a fresh one
  # (this box after boot) has one. Make sure a run's worth (~40 MB at 10,000 tasks) is ready:
  # write WAL, then checkpoint, which recycles the segments behind it as future ones.
  ahead="select count(*) from pg_ls_waldir() where name ~ '^[0-9A-F]{24}\$' \
    and name > pg_walfile_name(pg_current_wal_lsn())"
  if [ "$(pg -c "$ahead")" -lt 4 ]; then
    pg -c "CREATE TABLE ais_wal_warmup AS SELECT g FROM generate_series(1, 3000000) g" \
      -c "DROP TABLE ais_wal_warmup" -c "CHECKPOINT"
    echo "  (made PostgreSQL's WAL segments ahead: $(pg -c "$ahead") ready)"
  fi
  redis-cli --scan --pattern 'bench:*' | xargs -r redis-cli del >/dev/null
  # Let the dropped database's freed blocks reach the journal before the run, not during it.
  sync
  "${common[@]}" DATABASE_URL=postgres://postgres@127.0.0.1:5432/ais_bench \
    REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX=bench "$bin" > "${SERVER_LOG:-$data/server.log}" 2>&1 &
else
  "${common[@]}" DATA_DIR="$data" "$bin" > "${SERVER_LOG:-$data/server.log}" 2>&1 &
fi
server=$!
# CPU seconds (utime + stime) of the given processes, or of every process whose command name
# starts with $1.
cpu_of() {
  local total=0 pid pids
  if [ "$1" = pid ]; then pids=$2; else pids=$(pgrep "^$1"); fi
  for pid in $pids; do
    total=$(awk -v t="$total" '{ sub(/^.*\) /, ""); print t + $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo "$total")
  done
  echo "$total"
}
for _ in $(seq 1 100); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.1; done
tick=$(getconf CLK_TCK)
# The whole machine: its jiffies (busy, steal, all) and the time some task waited for a CPU (µs).
machine() {
  awk '/^cpu / { all = 0; for (i = 2; i <= 9; i++) all += $i; print $2 + $3 + $4 + $7 + $8 + $9, $9, all }' /proc/stat
  awk '/^some/ { sub(/.*total=/, ""); print }' /proc/pressure/cpu 2>/dev/null || echo 0
}
before=("$(cpu_of pid "$server")" "$(cpu_of postgres)" "$(cpu_of redis-server)")
machine_before=$(machine) started=$(date +%s%N)
"$dir/loadgen" --url "http://127.0.0.1:$port" "$@"
machine_after=$(machine) ended=$(date +%s%N)
after=("$(cpu_of pid "$server")" "$(cpu_of postgres)" "$(cpu_of redis-server)")
awk -v t="$tick" -v s0="${before[0]}" -v s1="${after[0]}" -v p0="${before[1]}" -v p1="${after[1]}" \
  -v r0="${before[2]}" -v r1="${after[2]}" 'BEGIN { printf "  cpu seconds:        server %.2f  postgres %.2f  redis %.2f\n", (s1-s0)/t, (p1-p0)/t, (r1-r0)/t }'
# Busy and steal over all CPUs, and CPU pressure (share of the time some task was runnable but
# waiting): a run on a machine with high steal or pressure measures the host, not the build.
echo "$machine_before" "$machine_after" | tr '\n' ' ' | awk -v ns=$((ended - started)) \
  '{ all = $7 - $3; printf "  machine:            busy %.0f %%  steal %.0f %%  cpu pressure %.0f %%\n", ($5 - $1) / all * 100, ($6 - $2) / all * 100, ($8 - $4) / (ns / 1000) * 100 }'
