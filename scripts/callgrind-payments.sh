#!/usr/bin/env bash
# Instructions per hosted payment, counted by valgrind's callgrind (issue 15): unlike CPU
# seconds they do not move with the machine's speed or its neighbours.
#
# Runs the capacity bench under callgrind with a small fixed load (BENCH_N payments, 1,000
# by default, after the same warm-up, probes and inquiry burst as a full run), counts only
# the payment burst (the bench calls ipg_bench_payments_begin/_end around it) and prints:
#   - every thread of the bench process (daemon, librdkafka, the mock broker, the driver);
#   - the tokio tasks polled (the daemon's code: inclusive cost of tokio's run_task);
#   - tokio's worker threads in all (tasks, I/O driver, scheduler);
# each divided by the payments answered. redis-server runs natively (not traced).
#
# With CALLGRIND_REDIS=1 it counts redis-server's instructions instead: the bench runs
# natively and its redis-server under callgrind, zeroed and dumped around the payment burst
# (callgrind_control, BENCH_REDIS_CALLGRIND in the bench), and prints Redis's instructions
# per payment. Redis then runs ~50x slower, so more payments meet in each group commit
# than at full speed (the script prints the mean group).
#
# Usage: scripts/callgrind-payments.sh [bench binary]   (default: builds and uses the
# current capacity bench). Takes a few minutes: everything runs ~50x slower under valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${1:-}"
if [ -z "$bin" ]; then
  bin=$(cargo bench --bench capacity --no-run 2>&1 | grep -o 'target/release/deps/capacity-[0-9a-f]*' | tail -1)
fi
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
export REDIS_SERVER="${REDIS_SERVER:-$(scripts/ensure-redis.sh)}"
n="${BENCH_N:-1000}"
out=$(mktemp -d)
log="$out/bench.txt"

if [ "${CALLGRIND_REDIS:-}" = 1 ]; then
  wrapper="$out/redis-server"
  printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s/redis.out "$@"\n' \
    "$out" >"$wrapper"
  sed -i "s|\"\$@\"|$REDIS_SERVER \"\$@\"|" "$wrapper"
  chmod +x "$wrapper"
  REDIS_SERVER="$wrapper" BENCH_REDIS_CALLGRIND=1 BENCH_N="$n" BENCH_PROBE=5 BENCH_OPEN_SECS=1 \
    "$bin" --bench >"$log" 2>"$out/bench-stderr.txt" &
  pid=$!
  err="$out/bench-stderr.txt"
  while kill -0 "$pid" 2>/dev/null && ! grep -q '^payment burst: answered' "$err"; do sleep 2; done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # The bench's redis-server (under valgrind) outlives a killed bench.
  pkill -f "callgrind-out-file=$out/redis.out" 2>/dev/null || true
  dump=$(ls "$out"/redis.out.* | sort | tail -n 1)
  answered=$(grep -o '^payment burst: answered [0-9]*' "$err" | awk '{print $4}')
  answered="${answered:-$n}"
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  calls=$(grep -o 'cmdstat_evalsha:calls=[0-9]*' "$err" | head -n 1 | cut -d= -f2)
  echo "callgrind, redis-server during a payment burst of $n (answered $answered):"
  printf '  instructions (Ir): %s  = %s per payment\n' "$total" "$((total / answered))"
  printf '  EVALSHA calls in the burst: %s (payments per call: %s)\n' "${calls:-?}" \
    "$(awk -v a="$answered" -v c="${calls:-0}" 'BEGIN { if (c > 0) printf "%.1f", a / c; else print "?" }')"
  echo "  (dump: $dump)"
  exit 0
fi

# The bench's later phases are not needed: stop it once the dump is written.
BENCH_N="$n" BENCH_PROBE=5 BENCH_OPEN_SECS=1 \
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
  --zero-before=ipg_bench_payments_begin --dump-before=ipg_bench_payments_end \
  --fair-sched=yes "$bin" --bench >"$log" 2>"$out/valgrind.txt" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  if ls "$out"/callgrind.out.* >/dev/null 2>&1; then
    sleep 2
    # A killed bench does not stop its redis-server: stop it first (its child).
    pkill -P "$pid" -f redis-server 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    break
  fi
  sleep 2
done
wait "$pid" 2>/dev/null || true

dump=$(ls "$out"/callgrind.out.* | sort | tail -n 1)
answered=$(grep -E '^ +daemon payments +[0-9]+' "$log" | awk '{print $4}' || true)
answered="${answered:-$n}"
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
inclusive=$(callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | grep -v '=>')
first() { awk -v pat="$1" '$0 ~ pat && !done {gsub(",", "", $1); print $1; done = 1}'; }
workers=$(first 'multi_thread::worker::run \\[' <<<"$inclusive")
tasks=$(first 'worker::Context::run_task \\[' <<<"$inclusive")
echo "callgrind, payment burst of $n (answered $answered), instructions (Ir):"
printf '  all threads of the bench process: %s  = %s per payment\n' "$total" "$((total / answered))"
printf '  tokio tasks polled (the daemon):  %s  = %s per payment\n' "${tasks:-0}" "$((${tasks:-0} / answered))"
printf '  tokio workers in all (tasks, I/O driver, scheduler; idle spinning inflates it under\n'
printf '  valgrind, which runs one thread at a time): %s  = %s per payment\n' "${workers:-0}" "$((${workers:-0} / answered))"
echo "  (dump: $dump; top functions: callgrind_annotate --inclusive=yes $dump | head -60)"
