#!/usr/bin/env bash
# Runs the daemon as a demo: the embedded Kafka-protocol broker, a private redis-server
# (installed from Debian's packages if missing) on 127.0.0.1:6390 with every write fsynced
# (appendfsync always), demo institutions and channels from config/demo.toml, the demo
# bills in demo/bills/, the passive demo institution PST01 (examples/passive_institution.rs,
# bills in demo/passive/bills.json) on 127.0.0.1:8082 and a webhook receiver for SCH01
# (examples/webhook_receiver.rs) on 127.0.0.1:8081. Ctrl-C (or SIGTERM) stops all.
#
# Every port the demo needs is checked before anything is built or started: the demo's
# Redis, 8081, 8082, and the daemon's HTTP API ([api] listen, 127.0.0.1:8080) and
# metrics/health endpoint ([metrics] listen, 127.0.0.1:9464), read as the daemon reads them
# (IPG__API__LISTEN / IPG__METRICS__LISTEN, else config/demo.toml, else
# config/$IPG_ENV.toml, else config/default.toml). A port held by another program stops the
# script, naming the port. Until the demo is ready, a child that exits (redis-server, the
# passive institution, the webhook receiver, the daemon) stops everything, naming it with
# the end of its log, and the script exits non-zero. `run-demo: ready` is printed only once
# the daemon answers 200 on its /readyz (Redis answers and the request consumer holds
# partitions) and the demo bills are created. After that, the daemon exiting or the demo's
# redis-server dying ends the demo (non-zero unless it was asked to stop); the passive
# institution and the webhook receiver may be stopped on purpose (docs/walkthrough.md) and are only
# reported.
#
# Everything it keeps is in .run/: Redis data, logs, pid files, and demo.env, which exports
# the addresses the CLI needs (`source .run/demo.env`). Reset the demo: stop it, rm -rf .run/.
# A demo already running (or left over from a killed run) is stopped first.
#
# Environment:
#   DEMO_REDIS_PORT (default 6390) moves the demo's redis-server to another port;
#   IPG__REDIS__URL set to another Redis makes the demo use that one and start none;
#   DEMO_PROFILE (default release; or debug) the cargo profile built and run: debug skips
#     the release build (scripts/check-demo.sh runs the demo on the debug binaries);
#   DEMO_READY_TIMEOUT (default 60) seconds to wait for the daemon's /readyz to answer 200;
#   DEMO_RUN_DIR (default .run) the state directory (scripts/check-demo.sh uses its own, so
#     that it never touches a demo of yours).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${DEMO_PROFILE:-release}
case "$PROFILE" in
  release) PROFILE_ARGS=(--release) ;;
  debug) PROFILE_ARGS=() ;;
  *)
    echo "run-demo: DEMO_PROFILE must be release or debug, not '$PROFILE'" >&2
    exit 2
    ;;
esac
READY_TIMEOUT=${DEMO_READY_TIMEOUT:-60}
RUN=${DEMO_RUN_DIR:-.run}
CONFIG=config/demo.toml
# The demo bank's SNAP client secret (config/demo.toml [channels.snap]): secrets come from
# the environment only.
export IPG_DEMO_SNAP_SECRET=${IPG_DEMO_SNAP_SECRET:-demo-snap-secret}
REDIS_PORT=${DEMO_REDIS_PORT:-6390}
DEMO_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
WEBHOOK_LISTEN=127.0.0.1:8081
PASSIVE_LISTEN=127.0.0.1:8082
# The daemon always runs the embedded broker here, whatever an earlier `source .run/demo.env`
# left in this shell.
unset IPG__KAFKA__BOOTSTRAP_SERVERS

# toml_value FILE SECTION KEY (scripts/toml-value.sh).
. scripts/toml-value.sh
# daemon_setting SECTION KEY: the value the daemon run with $CONFIG uses, layered as it
# layers them (docs/configuration.md).
daemon_setting() {
  local var="IPG__${1^^}__${2^^}" f
  if [ -n "${!var+x}" ]; then
    printf '%s\n' "${!var}"
    return
  fi
  for f in "$CONFIG" ${IPG_ENV:+"config/$IPG_ENV.toml"} config/default.toml; do
    if [ -f "$f" ] && toml_value "$f" "$1" "$2"; then return; fi
  done
}
# probe_host ADDR: the host to connect to for a listen address (0.0.0.0 and [::] listen on
# loopback too).
probe_host() {
  local h=${1%:*}
  h=${h#[}
  h=${h%]}
  case "$h" in "" | 0.0.0.0 | ::) h=127.0.0.1 ;; esac
  echo "$h"
}

API_LISTEN=$(daemon_setting api listen)
OPS_LISTEN=$(daemon_setting metrics listen)
if [ -z "$OPS_LISTEN" ]; then
  echo "run-demo: the daemon's metrics.listen is empty: the demo needs its /readyz to know" \
    "when the daemon is ready (unset IPG__METRICS__LISTEN)" >&2
  exit 2
fi
OPS_HOST=$(probe_host "$OPS_LISTEN") OPS_PORT=${OPS_LISTEN##*:}

USE_DEMO_REDIS=1
if [ -n "${IPG__REDIS__URL:-}" ] && [ "$IPG__REDIS__URL" != "$DEMO_REDIS_URL" ]; then
  USE_DEMO_REDIS=""
fi

# listening PORT [HOST]: something accepts connections there.
listening() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }
# http_get HOST PORT PATH: prints the answer to GET PATH (status line, headers, body), with
# bash alone: curl is not needed.
http_get() {
  (
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$3" "$1" "$2" >&3
    while IFS= read -r -t 5 line <&3 || [ -n "$line" ]; do
      printf '%s\n' "${line%$'\r'}"
      line=""
    done
  ) 2>/dev/null
}
# http_status ANSWER: the status code in an answer of http_get.
http_status() { sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' <<<"$1"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# pid_of NAME PATTERN: the pid in $RUN/NAME.pid if that process is alive and its command
# line contains PATTERN (so that a recycled pid is never taken for ours).
pid_of() {
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null || true)
  alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" && echo "$pid"
}
# stop_pid PID: SIGTERM, then up to 30 s for it to exit.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 300); do
    alive "$1" || return 0
    sleep 0.1
  done
  echo "run-demo: pid $1 did not stop within 30 s" >&2
}
# stop_stale NAME PATTERN: stops what an earlier run of this script left behind.
stop_stale() {
  local pid
  pid=$(pid_of "$1" "$2") || true
  if [ -n "$pid" ]; then
    echo "stopping the $1 left by an earlier demo run (pid $pid)"
    stop_pid "$pid"
  fi
  rm -f "$RUN/$1.pid"
}
# port_free HOST PORT WHAT [HINT]: fails saying how to free PORT when another program holds it.
port_free() {
  listening "$2" "$1" || return 0
  echo "run-demo: $1:$2 ($3) is in use by another program; nothing was started." >&2
  echo "  See which: ss -ltnp 'sport = :$2'; stop it and run again." >&2
  if [ $# -gt 3 ]; then echo "  $4" >&2; fi
  exit 1
}
# check_ports [before-build]: every port the demo needs is free. Before the build, a port
# still held by a process of an earlier demo run is let through: that run is stopped after
# the build (so that a running demo keeps running while this one builds), and every port is
# checked again then.
check_ports() {
  local early=${1:-}
  if [ -n "$USE_DEMO_REDIS" ] && ! { [ -n "$early" ] && pid_of redis "redis-server 127.0.0.1:$REDIS_PORT" >/dev/null; }; then
    port_free 127.0.0.1 "$REDIS_PORT" "the demo's Redis" \
      "Or put the demo's Redis on another port: DEMO_REDIS_PORT=6391 scripts/run-demo.sh
  (the CLI then needs: source .run/demo.env), or use a Redis of your own (appendonly yes,
  appendfsync always): IPG__REDIS__URL=redis://127.0.0.1:PORT/0 scripts/run-demo.sh"
  fi
  if ! { [ -n "$early" ] && pid_of passive-institution "examples/passive_institution" >/dev/null; }; then
    port_free "${PASSIVE_LISTEN%:*}" "${PASSIVE_LISTEN##*:}" "the passive demo institution PST01"
  fi
  if ! { [ -n "$early" ] && pid_of webhook-receiver "examples/webhook_receiver" >/dev/null; }; then
    port_free "${WEBHOOK_LISTEN%:*}" "${WEBHOOK_LISTEN##*:}" "the webhook receiver of SCH01"
  fi
  if ! { [ -n "$early" ] && pid_of daemon "ipg-switch --config $CONFIG run" >/dev/null; }; then
    if [ -n "$API_LISTEN" ]; then
      port_free "$(probe_host "$API_LISTEN")" "${API_LISTEN##*:}" \
        "the daemon's HTTP API, [api] listen = \"$API_LISTEN\"" \
        "Or move it: IPG__API__LISTEN=127.0.0.1:PORT scripts/run-demo.sh"
    fi
    port_free "$OPS_HOST" "$OPS_PORT" \
      "the daemon's /metrics, /healthz and /readyz, [metrics] listen = \"$OPS_LISTEN\"" \
      "Or move it: IPG__METRICS__LISTEN=127.0.0.1:PORT scripts/run-demo.sh"
  fi
}

# --- before anything is built or started ---------------------------------------------------
check_ports before-build
scripts/ensure-redis.sh >/dev/null
echo "building ipg-switch ($PROFILE; the first build takes several minutes)..."
cargo build "${PROFILE_ARGS[@]}" --locked --bin ipg-switch --example passive_institution \
  --example webhook_receiver
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE/ipg-switch"
EXAMPLES="${CARGO_TARGET_DIR:-target}/$PROFILE/examples"

mkdir -p "$RUN/redis"
RUN_ABS=$(cd "$RUN" && pwd)
old=$(pid_of run-demo "run-demo.sh") || true
if [ -n "$old" ] && [ "$old" != $$ ]; then
  echo "stopping the demo already running (pid $old)"
  stop_pid "$old"
fi
stop_stale daemon "ipg-switch --config $CONFIG run"
stop_stale passive-institution "examples/passive_institution"
stop_stale webhook-receiver "examples/webhook_receiver"
if [ -n "$USE_DEMO_REDIS" ]; then stop_stale redis "redis-server 127.0.0.1:$REDIS_PORT"; fi
check_ports
echo $$ >"$RUN/run-demo.pid"

daemon_pid="" inst_pid="" recv_pid="" redis_pid="" stopping=""
# Stops what this run started, the daemon first (it drains into Redis) and Redis last, and
# removes only the files that are still this run's.
cleanup() {
  local p name
  for p in "$daemon_pid" "$inst_pid" "$recv_pid" "$redis_pid"; do
    if alive "$p"; then stop_pid "$p"; fi
  done
  for name in run-demo daemon passive-institution webhook-receiver redis; do
    p=$(cat "$RUN/$name.pid" 2>/dev/null || true)
    case "$p" in
      "" | "$$" | "$daemon_pid" | "$inst_pid" | "$recv_pid" | "$redis_pid") rm -f "$RUN/$name.pid" ;;
    esac
  done
  if grep -qs "^# run $$\$" "$RUN/demo.env"; then rm -f "$RUN/demo.env"; fi
}
trap cleanup EXIT
# Until the daemon runs, Ctrl-C and SIGTERM just stop what was started (cleanup).
trap 'exit 130' INT
trap 'exit 143' TERM

# fail LOG MESSAGE: says what went wrong with the end of LOG, and stops everything.
fail() {
  echo "run-demo: $2; not ready, stopping the demo." >&2
  if [ -s "$1" ]; then
    echo "  last lines of $1:" >&2
    tail -n 15 "$1" | sed 's/^/    /' >&2
  fi
  exit 1
}
# check_children: fails naming the first child of this run that is no longer running, with
# its exit status (redis-server daemonizes: not a child of this shell, no status) and log.
check_children() {
  local s=0
  if [ -n "$redis_pid" ] && ! alive "$redis_pid"; then
    fail "$RUN/redis.log" "the demo's redis-server (pid $redis_pid) exited"
  fi
  if [ -n "$inst_pid" ] && ! alive "$inst_pid"; then
    wait "$inst_pid" 2>/dev/null || s=$?
    fail "$RUN/passive-institution.log" \
      "the passive demo institution PST01 (pid $inst_pid) exited with status $s"
  fi
  if [ -n "$recv_pid" ] && ! alive "$recv_pid"; then
    wait "$recv_pid" 2>/dev/null || s=$?
    fail "$RUN/webhook-receiver.log" \
      "the webhook receiver of SCH01 (pid $recv_pid) exited with status $s"
  fi
  if [ -n "$daemon_pid" ] && ! alive "$daemon_pid"; then
    wait "$daemon_pid" 2>/dev/null || s=$?
    fail "$RUN/daemon.log" "ipg-switch (the daemon, pid $daemon_pid) exited with status $s"
  fi
}
# wait_listening PORT WHAT: up to 10 s for WHAT, just started, to accept connections on PORT.
wait_listening() {
  for _ in $(seq 100); do
    listening "$1" && return 0
    check_children
    sleep 0.1
  done
  check_children
  fail "" "$2 does not accept connections on 127.0.0.1:$1 after 10 s"
}

# --- Redis ---------------------------------------------------------------------------------
if [ -z "$USE_DEMO_REDIS" ]; then
  REDIS_URL=$IPG__REDIS__URL
  echo "IPG__REDIS__URL is set: using the Redis at $REDIS_URL (no redis-server started);"
  echo "  it must keep every acknowledged write: appendonly yes, appendfsync always (docs/operations.md)"
else
  REDIS_URL=$DEMO_REDIS_URL
  # An acknowledged payment must survive a crash of redis-server: the AOF is fsynced on
  # every write (docs/operations.md, "Redis persistence the switch depends on"). No RDB snapshots.
  : >"$RUN/redis.log"
  if ! redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN_ABS/redis" \
    --appendonly yes --appendfsync always --save "" \
    --daemonize yes --pidfile "$RUN_ABS/redis.pid" --logfile "$RUN_ABS/redis.log"; then
    fail "$RUN/redis.log" "redis-server did not start"
  fi
  for _ in $(seq 50); do
    redis_pid=$(cat "$RUN/redis.pid" 2>/dev/null || true)
    [ -n "$redis_pid" ] && listening "$REDIS_PORT" && break
    sleep 0.1
  done
  if [ -z "$redis_pid" ]; then fail "$RUN/redis.log" "redis-server did not start"; fi
  wait_listening "$REDIS_PORT" "the demo's redis-server"
  echo "redis-server on 127.0.0.1:$REDIS_PORT (appendfsync always; data in $RUN/redis)"
fi
export IPG__REDIS__URL=$REDIS_URL

# --- the institutions' side ----------------------------------------------------------------
"$EXAMPLES/passive_institution" "$PASSIVE_LISTEN" demo-pst01-key demo/passive/bills.json \
  >"$RUN/passive-institution.log" 2>&1 &
inst_pid=$!
echo "$inst_pid" >"$RUN/passive-institution.pid"
wait_listening "${PASSIVE_LISTEN##*:}" "the passive demo institution PST01"
echo "passive demo institution PST01 on http://$PASSIVE_LISTEN/ipg (log: $RUN/passive-institution.log)"

"$EXAMPLES/webhook_receiver" "$WEBHOOK_LISTEN" demo-sch01-key >"$RUN/webhook-receiver.log" 2>&1 &
recv_pid=$!
echo "$recv_pid" >"$RUN/webhook-receiver.pid"
wait_listening "${WEBHOOK_LISTEN##*:}" "the webhook receiver of SCH01"
echo "webhook receiver of SCH01 on http://$WEBHOOK_LISTEN/ipg/webhook (events: $RUN/webhook-receiver.log)"

# --- the daemon ----------------------------------------------------------------------------
# In the background, so that this script can forward Ctrl-C and SIGTERM to it and wait while
# it drains. Its log goes to the terminal and to $RUN/daemon.log (tee ignores Ctrl-C, so
# that the daemon's last lines are kept).
echo "starting ipg-switch (log: $RUN/daemon.log)"
: >"$RUN/daemon.log"
"$BIN" --config "$CONFIG" run 2> >(
  trap '' INT TERM
  exec tee -a "$RUN/daemon.log" >&2
) &
daemon_pid=$!
echo "$daemon_pid" >"$RUN/daemon.pid"
# SIGTERM stops the daemon like SIGINT, and a background job never ignores it.
forward() {
  stopping=1
  if alive "$daemon_pid"; then kill -TERM "$daemon_pid" 2>/dev/null || true; fi
}
trap forward INT TERM

# nap: a short sleep that a signal interrupts at once (its trap then runs).
nap() {
  sleep "${1:-0.2}" &
  wait $! 2>/dev/null || true
}

bootstrap=""
deadline=$((SECONDS + READY_TIMEOUT))
while [ -z "$stopping" ] && [ -z "$bootstrap" ]; do
  check_children
  bootstrap=$(sed -n 's/.*bootstrap=\([^ ]*\).*/\1/p' "$RUN/daemon.log" | head -n 1)
  [ -n "$bootstrap" ] && break
  if [ "$SECONDS" -ge "$deadline" ]; then
    fail "$RUN/daemon.log" "ipg-switch logged no bootstrap= address within ${READY_TIMEOUT} s"
  fi
  nap
done
if [ -n "$bootstrap" ]; then
  bindir=$(cd "$(dirname "$BIN")" && pwd)
  {
    echo "# run $$"
    echo "# Written by scripts/run-demo.sh, removed when it stops: the addresses of the demo's"
    echo "# Redis and of its embedded broker (a new port each run), and the binary's directory."
    echo "export IPG__REDIS__URL=$REDIS_URL"
    echo "export IPG__KAFKA__BOOTSTRAP_SERVERS=$bootstrap"
    echo "export BOOT=$bootstrap"
    echo "export IPG_DEMO_SNAP_SECRET=$IPG_DEMO_SNAP_SECRET"
    echo "export PATH=\"$bindir:\$PATH\""
  } >"$RUN/demo.env"
fi

# Ready means the daemon says so: /readyz answers 200 once Redis answers and the request
# consumer holds partitions.
ready="" answer=""
while [ -z "$stopping" ]; do
  check_children
  answer=$(http_get "$OPS_HOST" "$OPS_PORT" /readyz) || true
  if [ "$(http_status "$answer")" = 200 ]; then
    ready=1
    break
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    last=$(sed -n '1p;$p' <<<"${answer:-none}" | tr '\n' ' ')
    fail "$RUN/daemon.log" \
      "ipg-switch did not answer 200 on http://$OPS_LISTEN/readyz within ${READY_TIMEOUT} s (last answer: ${last% })"
  fi
  nap
done

if [ -n "$ready" ] && [ -z "$stopping" ]; then
  # --- demo bills ---------------------------------------------------------------------------
  # Created through the running daemon's broker: every change is journaled before it is
  # answered (docs/journal.md), and the embedded broker lives inside the daemon.
  for bill in demo/bills/*.json; do
    if out=$(IPG__KAFKA__BOOTSTRAP_SERVERS=$bootstrap "$BIN" --config "$CONFIG" bill create --file "$bill" 2>"$RUN/cli.err"); then
      echo "created bill $(echo "$out" | sed -n 's/.*"hash": "\(.*\)".*/\1/p') from $bill"
    else
      err=$(tail -n 1 "$RUN/cli.err" | sed 's/^ipg-switch: //')
      if [[ "$err" == *"already has an active bill"* ]]; then
        # Expected on a restart: Redis keeps the bills of earlier runs.
        # The VA: each prefix (one, or a list) followed by the bill's va_number.
        number=$(sed -n 's/.*"va_number": *"\([0-9]*\)".*/\1/p' "$bill")
        va=$(sed -n 's/.*"prefix": *//p' "$bill" | grep -o '[0-9]\{6\}' | sed "s/\$/$number/" |
          paste -sd / -) || true
        hash=$(echo "$err" | sed -n 's/.*already has an active bill (\([^)]*\)).*/\1/p')
        echo "bill from $bill already there (VA ${va:-$number} has an active bill${hash:+ $hash})"
      else
        echo "bill from $bill not created: $err"
      fi
    fi
  done
  check_children
  if [ -z "$stopping" ]; then
    echo "run-demo: ready. In another shell, before the CLI or kcat: source $RUN/demo.env" \
      "(then e.g. ipg-switch --config $CONFIG passive list --institution PST01)"
  fi
fi

# --- running -------------------------------------------------------------------------------
# The daemon exiting ends the demo; so does the demo's redis-server dying. The institutions'
# side may be stopped on purpose (docs/walkthrough.md: the circuit breaker), so that is only reported.
status=0 inst_noted="" recv_noted=""
while alive "$daemon_pid"; do
  if [ -z "$stopping" ] && [ -n "$redis_pid" ] && ! alive "$redis_pid"; then
    echo "run-demo: the demo's redis-server (pid $redis_pid) exited; stopping the demo." >&2
    tail -n 15 "$RUN/redis.log" | sed 's/^/    /' >&2
    forward
    status=1
  fi
  if [ -z "$inst_noted" ] && [ -n "$inst_pid" ] && ! alive "$inst_pid"; then
    echo "run-demo: note: the passive demo institution PST01 (pid $inst_pid) has stopped" \
      "(restart the demo to bring it back)" >&2
    inst_noted=1
  fi
  if [ -z "$recv_noted" ] && [ -n "$recv_pid" ] && ! alive "$recv_pid"; then
    echo "run-demo: note: the webhook receiver of SCH01 (pid $recv_pid) has stopped" \
      "(restart the demo to bring it back)" >&2
    recv_noted=1
  fi
  nap 0.5
done
daemon_status=0
wait "$daemon_pid" 2>/dev/null || daemon_status=$?
if [ "$daemon_status" -ne 0 ]; then
  echo "run-demo: ipg-switch (the daemon) exited with status $daemon_status (log: $RUN/daemon.log)" >&2
  status=$daemon_status
elif [ -z "$stopping" ]; then
  echo "run-demo: ipg-switch (the daemon) exited by itself (log: $RUN/daemon.log)" >&2
  status=1
fi
exit "$status"
