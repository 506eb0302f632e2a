#!/usr/bin/env bash
# Fuzzes the service's parsers with cargo fuzz (libFuzzer), one target after another, and
# prints one line of figures per target. Usage:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Default: 30 s for each of http_json grpc_request jwt provider_body provider_stream
# extract_html. Needs nightly Rust and cargo-fuzz:
#   rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz
# Inputs that add coverage are kept in a scratch directory, so the committed corpus
# (fuzz/corpus/<target>) stays as it is; KEEP=1 adds them to it and minimises it (cargo fuzz
# cmin). A crash stops the target and leaves its input in fuzz/artifacts/<target>/; copy it to
# fuzz/regressions/<target>/, where `cargo test --test fuzz_corpus` replays it. One job at a
# time (the machine is shared); no sanitizer (safe Rust; panics and overflows are what we
# look for, and it runs about twice as fast). Figures are libFuzzer's last status line.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(http_json grpc_request jwt provider_body provider_stream extract_html)
fuzz=(cargo +nightly fuzz)
"${fuzz[@]}" build -s none || exit 1
failed=0
printf '%-16s %8s %12s %8s %6s %6s %7s  %s\n' target seconds execs exec/s cov ft corpus result
for t in "${targets[@]}"; do
  log=$(mktemp)
  if [ "${KEEP:-0}" = 1 ]; then
    dirs=(corpus/"$t")
  else
    scratch=$(mktemp -d)
    dirs=("$scratch" corpus/"$t")
  fi
  mkdir -p corpus/"$t"
  start=$(date +%s)
  "${fuzz[@]}" run -s none "$t" "${dirs[@]}" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  elapsed=$(( $(date +%s) - start ))
  # The last status line: "#123 DONE cov: 456 ft: 789 corp: 10/2Kb ... exec/s: 11 ...".
  line=$(grep -E '^#[0-9]+' "$log" | tail -1)
  execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$line")
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$line")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$line")
  corp=$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$line")
  rate=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  result=ok
  if [ $rc -ne 0 ]; then
    result="CRASH (see $log, fuzz/artifacts/$t/)"
    failed=1
  fi
  printf '%-16s %8s %12s %8s %6s %6s %7s  %s\n' "$t" "$elapsed" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
  [ $rc -eq 0 ] && rm -f "$log"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$scratch"
  if [ "${KEEP:-0}" = 1 ] && [ $rc -eq 0 ]; then
    "${fuzz[@]}" cmin -s none "$t" corpus/"$t" >/dev/null 2>&1 || echo "cmin $t failed"
    # cmin may drop a seed whose features others cover; the seeds stay (tests read them).
    git checkout -q -- "corpus/$t/seed-*" 2>/dev/null || true
  fi
done
exit $failed
