#!/usr/bin/env bash
# Context switches and CPU of each thread of a running process over a window, from /proc: on a
# small VM a switch costs tens of microseconds of CPU, so counting them shows where a server's
# CPU goes when its work is small. Usage:
#   scripts/thread_switches.sh PID SECONDS [CALLS_PER_SECOND]
# With CALLS_PER_SECOND (the load's rate), the switches are also given per call.
set -euo pipefail
pid=$1 seconds=$2 rate=${3:-0}
tick=$(getconf CLK_TCK)
snapshot() {
  for t in /proc/"$pid"/task/*; do
    awk -v tid="${t##*/}" -v comm="$(tr ' ' _ < "$t/comm")" \
      '/^voluntary_ctxt/ { v = $2 } /^nonvoluntary_ctxt/ { n = $2 } END { print tid, comm, v, n }' "$t/status"
  done 2>/dev/null | while read -r tid comm v n; do
    echo "$tid $comm $v $n $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/task/$tid/stat" 2>/dev/null || echo 0)"
  done | sort
}
before=$(snapshot)
sleep "$seconds"
after=$(snapshot)
# join: tid comm v n cpu comm v n cpu
join <(echo "$before") <(echo "$after") | awk -v s="$seconds" -v r="$rate" -v t="$tick" '
  { v = ($7 - $3) / s; n = ($8 - $4) / s; cpu = ($9 - $5) / t / s * 100
    tv += v; tn += n; tc += cpu
    if (r > 0) printf "%-8s %-16s voluntary %8.0f/s (%5.1f a call)  involuntary %8.0f/s (%5.1f a call)  cpu %5.1f %%\n", $1, $2, v, v / r, n, n / r, cpu
    else printf "%-8s %-16s voluntary %8.0f/s  involuntary %8.0f/s  cpu %5.1f %%\n", $1, $2, v, n, cpu }
  END { if (r > 0) printf "total: %.1f switches a call, %.3f ms of CPU a call\n", (tv + tn) / r, tc * 10 / r
        else printf "total: %.0f switches/s, cpu %.1f %%\n", tv + tn, tc }'
