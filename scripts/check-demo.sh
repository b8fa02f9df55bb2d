#!/usr/bin/env bash
# Checks scripts/run-demo.sh (issue 22, items 1 and 6) on the debug binaries, and that the
# walk-throughs it serves can be pasted (items 2 and 7). The demo runs with
# DEMO_PROFILE=debug, in a state directory of its own (.run/check-demo, removed at the end)
# and with the demo's Redis on a free port, so that a demo of yours in .run/ is never touched.
# It needs the daemon's ports (8080, 9464), 8081 and 8082 free, as the demo does.
#
#   0. The walk-throughs in README.md and docs/*.md can be pasted as a block: every kcat
#      consumer (-C) has -e, so it returns at the end of the topic; and sudo is only offered
#      as "as root (or with sudo)" (a root container has none).
#   1. For each port the demo needs (the daemon's API port and its metrics/ops port, the
#      webhook receiver's, the passive institution's, the demo's Redis), held by another
#      program: run-demo.sh exits non-zero within 90 s, never prints `run-demo: ready`, says
#      which port on a `run-demo:` line, builds nothing (the ports are checked before the
#      build) and leaves nothing running.
#   2. The daemon exiting at start (a configuration it refuses): run-demo.sh exits non-zero,
#      never prints ready, names the daemon with the end of its log, leaves nothing running.
#   3. The daemon never ready (its Redis down, DEMO_READY_TIMEOUT=8): run-demo.sh exits
#      non-zero naming /readyz, never prints ready, leaves nothing running.
#   4. All ports free: run-demo.sh prints `run-demo: ready` within 120 s, /readyz answers 200
#      at that moment, the three demo bills are created; SIGTERM stops it within 30 s, with
#      status 0, and every process it started is gone.
#   5. A second start on the same data: each demo bill is reported `already there`, none as
#      `not created`; ready and stopped as in 4.
#
# Environment: CHECK_DEMO_SCRIPT (default scripts/run-demo.sh) the launcher checked, so that
# the check can be run against another version of it (it must accept the same environment);
# CHECK_DEMO_DOCS (default: README.md docs/*.md) the documents of step 0.
# scripts/test.sh runs this check after building the debug binaries it needs:
#   cargo build --locked --bin ipg-switch --example passive_institution --example webhook_receiver
set -uo pipefail
cd "$(dirname "$0")/.."

DEMO=${CHECK_DEMO_SCRIPT:-scripts/run-demo.sh}
TARGET=${CARGO_TARGET_DIR:-target}
for f in "$TARGET/debug/ipg-switch" "$TARGET/debug/examples/passive_institution" \
  "$TARGET/debug/examples/webhook_receiver"; do
  if [ ! -x "$f" ]; then
    echo "check-demo: $f is missing; build it first: cargo build --locked --bin ipg-switch" \
      "--example passive_institution --example webhook_receiver" >&2
    exit 1
  fi
done
command -v python3 >/dev/null || {
  echo "check-demo: python3 is needed (it holds ports)" >&2
  exit 1
}

# The demo's own configuration only, whatever this shell has (e.g. a sourced .run/demo.env).
while read -r v; do unset "$v"; done < <(compgen -e | grep '^IPG_' || true)
export DEMO_PROFILE=debug
export DEMO_RUN_DIR=.run/check-demo
RUN=$DEMO_RUN_DIR
OUT=.run/check-demo.out # the last run's output; kept when the check fails
mkdir -p .run
started=$SECONDS

# toml_value FILE SECTION KEY (scripts/toml-value.sh).
. scripts/toml-value.sh
setting() { toml_value config/demo.toml "$1" "$2" || toml_value config/default.toml "$1" "$2"; }
API_PORT=$(setting api listen) API_PORT=${API_PORT##*:}
OPS_PORT=$(setting metrics listen) OPS_PORT=${OPS_PORT##*:}
WEBHOOK_PORT=8081 PASSIVE_PORT=8082

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# http_status PORT PATH: the status code of GET PATH on 127.0.0.1:PORT (bash alone, no curl).
http_status() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
    IFS=' ' read -r -t 5 _ code _ <&3 || exit 1
    echo "$code"
  ) 2>/dev/null
}
# free_port: a port nothing listens on, below the kernel's ephemeral range.
free_port() {
  python3 -c '
import random, socket
for _ in range(200):
    p = random.randrange(20000, 30000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: s.close()'
}

for p in "$API_PORT" "$OPS_PORT" "$WEBHOOK_PORT" "$PASSIVE_PORT"; do
  if listening "$p"; then
    echo "check-demo: 127.0.0.1:$p is in use (a demo running? ss -ltnp 'sport = :$p');" \
      "the demo needs it: stop that and run again" >&2
    exit 1
  fi
done
export DEMO_REDIS_PORT
DEMO_REDIS_PORT=$(free_port)

holder="" demo_pid="" failures=0
cleanup() {
  if [ -n "$holder" ]; then kill "$holder" 2>/dev/null; fi
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  # Whatever a launcher under check left behind in this check's state directory.
  stop_leftovers
  rm -rf "$RUN"
  if [ "$failures" -eq 0 ]; then rm -f "$OUT" "$OUT.rc"; fi
}
# stop_leftovers: stops the processes named in $RUN/*.pid that are still the demo's.
stop_leftovers() {
  local f pid
  for f in "$RUN"/daemon.pid "$RUN"/passive-institution.pid "$RUN"/webhook-receiver.pid \
    "$RUN"/redis.pid; do
    pid=$(cat "$f" 2>/dev/null) || continue
    if kill -0 "$pid" 2>/dev/null &&
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
      grep -Eq 'ipg-switch|passive_institution|webhook_receiver|redis-server'; then
      echo "check-demo: stopping pid $pid left by the demo ($f)" >&2
      kill -TERM "$pid" 2>/dev/null
    fi
  done
}
trap cleanup EXIT

fail() {
  echo "check-demo: FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "check-demo: ok: $*"; }
show_output() { sed 's/^/    | /' "$OUT" | tail -n 25 >&2; }

# hold PORT: a program that listens on PORT and never answers, until release.
hold() {
  python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAITs of earlier runs
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
time.sleep(600)' "$1" &
  holder=$!
  for _ in $(seq 50); do
    listening "$1" && return 0
    sleep 0.1
  done
  echo "check-demo: could not hold 127.0.0.1:$1" >&2
  exit 1
}
release() {
  kill "$holder" 2>/dev/null
  wait "$holder" 2>/dev/null
  holder=""
}
# nothing_left WHAT: none of the demo's ports is listening, and no process of the run is left.
nothing_left() {
  local p left=""
  sleep 0.3
  for p in "$API_PORT" "$OPS_PORT" "$WEBHOOK_PORT" "$PASSIVE_PORT" "$DEMO_REDIS_PORT"; do
    if listening "$p"; then left="$left $p"; fi
  done
  if [ -n "$left" ]; then
    fail "$1: ports still listening after run-demo.sh exited:$left"
    stop_leftovers
    sleep 1
  fi
}
# run_failing WHAT PATTERN [ENV...]: run-demo.sh must fail at once: non-zero, no ready, a
# run-demo: line matching PATTERN.
run_failing() {
  local what=$1 pattern=$2 rc t0=$SECONDS
  shift 2
  rm -rf "$RUN"
  env "$@" timeout -k 5 90 "$DEMO" >"$OUT" 2>&1 </dev/null
  rc=$?
  local bad=0
  if [ "$rc" -eq 0 ]; then fail "$what: run-demo.sh exited 0" && bad=1; fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then fail "$what: run-demo.sh still running after 90 s" && bad=1; fi
  if grep -q "run-demo: ready" "$OUT"; then fail "$what: run-demo.sh printed 'run-demo: ready'" && bad=1; fi
  if ! grep -Eq "^run-demo: .*$pattern" "$OUT"; then
    fail "$what: no 'run-demo:' line matching /$pattern/" && bad=1
  fi
  [ "$bad" -eq 0 ] && pass "$what: exit $rc after $((SECONDS - t0)) s, no ready, $(grep -Em1 "^run-demo: .*$pattern" "$OUT" | cut -c1-110)"
  [ "$bad" -eq 0 ] || show_output
  return "$bad"
}

# --- 0. the walk-throughs can be pasted as a block ------------------------------------------
# shellcheck disable=SC2086 # CHECK_DEMO_DOCS is a list of files
docs=$(ls ${CHECK_DEMO_DOCS:-README.md docs/*.md})
# Each kcat command (up to a closing backtick, a comment, a pipe or ;) that consumes.
# shellcheck disable=SC2086
bad_kcat=$(grep -noE 'kcat [^`#|;]*' $docs | grep -E ' -C( |$)' | grep -vE ' -e( |$)' || true)
if [ -n "$bad_kcat" ]; then
  fail "kcat consumers without -e (they never return, so a pasted walk-through stops there):"
  echo "$bad_kcat" | sed 's/^/    | /' >&2
else
  pass "every kcat consumer in $(echo $docs | wc -w) documents has -e"
fi
# shellcheck disable=SC2086
bad_sudo=$(grep -nwi sudo $docs | grep -v 'as root (or with sudo)' || true)
if [ -n "$bad_sudo" ]; then
  fail "sudo offered without 'as root (or with sudo)' (a root container has no sudo):"
  echo "$bad_sudo" | sed 's/^/    | /' >&2
else
  pass "sudo is only offered as 'as root (or with sudo)'"
fi

# --- 1. a port the demo needs is held by another program -------------------------------------
for entry in "$API_PORT:the daemon's HTTP API" "$OPS_PORT:the daemon's metrics/ops endpoint" \
  "$WEBHOOK_PORT:the webhook receiver" "$PASSIVE_PORT:the passive institution" \
  "$DEMO_REDIS_PORT:the demo's Redis"; do
  port=${entry%%:*} what="port $port (${entry#*:}) held"
  hold "$port"
  run_failing "$what" "[:]$port\\b"
  release
  if grep -q "^building ipg-switch" "$OUT"; then
    fail "$what: run-demo.sh built before it checked the port"
  fi
  nothing_left "$what"
done

# --- 2. the daemon dies at start ---------------------------------------------------------------
# pipeline.lanes must be a number: the daemon refuses to start (exit 2).
run_failing "the daemon exits at start" "ipg-switch.*exited" IPG__PIPELINE__LANES=abc
if ! grep -q "pipeline.lanes" "$OUT"; then
  fail "the daemon exits at start: run-demo.sh did not show the end of the daemon's log"
fi
nothing_left "the daemon exits at start"

# --- 3. the daemon never ready -----------------------------------------------------------------
# Its Redis is down (the daemon starts and waits for it, /readyz answers 503).
dead_redis=$(free_port)
run_failing "the daemon never ready" "/readyz" IPG__REDIS__URL="redis://127.0.0.1:$dead_redis/0" \
  DEMO_READY_TIMEOUT=8
nothing_left "the daemon never ready"

# --- 4 and 5. all ports free: ready means ready; SIGTERM stops everything ----------------------
# run_ready WHAT BILLS_PATTERN: starts the demo, waits for ready, checks, stops it.
run_ready() {
  local what=$1 bills=$2 t0=$SECONDS ready="" code pids="" pid rc
  "$DEMO" >"$OUT" 2>&1 </dev/null &
  demo_pid=$!
  for _ in $(seq 1200); do
    if grep -q "run-demo: ready" "$OUT"; then
      ready=1
      break
    fi
    kill -0 "$demo_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    fail "$what: no 'run-demo: ready' within 120 s"
    show_output
    return
  fi
  code=$(http_status "$OPS_PORT" /readyz || true)
  if [ "$code" = 200 ]; then
    pass "$what: ready after $((SECONDS - t0)) s, and /readyz answers 200 then"
  else
    fail "$what: 'run-demo: ready' printed while /readyz answers '${code:-nothing}'"
  fi
  if [ "$(grep -Ec "$bills" "$OUT")" -eq 3 ] && ! grep -q "not created" "$OUT"; then
    pass "$what: $(grep -Ec "$bills" "$OUT") bills: $(grep -Em1 "$bills" "$OUT" | cut -c1-100)"
  else
    fail "$what: expected 3 lines matching /$bills/ and no 'not created'"
    grep "bill" "$OUT" | sed 's/^/    | /' >&2
  fi
  for f in daemon passive-institution webhook-receiver redis; do
    pids="$pids${pids:+ }$(cat "$RUN/$f.pid" 2>/dev/null)"
  done
  kill -TERM "$demo_pid"
  t0=$SECONDS
  for _ in $(seq 300); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$demo_pid" 2>/dev/null; then
    fail "$what: run-demo.sh still running 30 s after SIGTERM"
    return
  fi
  wait "$demo_pid"
  rc=$?
  demo_pid=""
  if [ "$rc" -ne 0 ]; then fail "$what: run-demo.sh exited $rc after SIGTERM"; fi
  for pid in $pids; do
    if kill -0 "$pid" 2>/dev/null; then fail "$what: pid $pid still running after the demo stopped"; fi
  done
  [ "$rc" -eq 0 ] && pass "$what: SIGTERM stopped it in $((SECONDS - t0)) s, status 0, its processes ($pids) gone"
  nothing_left "$what"
}
rm -rf "$RUN"
run_ready "a first start" "^created bill [^ ]+ from demo/bills/"
run_ready "a second start on the same data" \
  "^bill from demo/bills/[^ ]+ already there \(VA [0-9/]+ has an active bill"

echo "check-demo: $failures failure(s) in $((SECONDS - started)) s (checked: $DEMO)"
[ "$failures" -eq 0 ]
