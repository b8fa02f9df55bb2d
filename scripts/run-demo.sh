#!/usr/bin/env bash
# Runs the daemon as a demo: the embedded Kafka-protocol broker, a private redis-server
# (installed from Debian's packages if missing) on 127.0.0.1:6390 with every write fsynced
# (appendfsync always), demo institutions and channels from config/demo.toml, the demo
# bills in demo/bills/, the passive demo institution PST01 (examples/passive_institution.rs,
# bills in demo/passive/bills.json) on 127.0.0.1:8082 and a webhook receiver for SCH01
# (examples/webhook_receiver.rs) on 127.0.0.1:8081. Ctrl-C stops all.
#
# Everything it keeps is in .run/: Redis data, logs, pid files, and demo.env, which exports
# the addresses the CLI needs (`source .run/demo.env`). Reset the demo: stop it, rm -rf .run/.
# A demo already running (or left over from a killed run) is stopped first.
#
# Environment: DEMO_REDIS_PORT (default 6390) moves the demo's redis-server to another port;
# IPG__REDIS__URL set to another Redis makes the demo use that one and start none.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT=${DEMO_REDIS_PORT:-6390}
DEMO_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
WEBHOOK_LISTEN=127.0.0.1:8081
PASSIVE_LISTEN=127.0.0.1:8082
# The daemon always runs the embedded broker here, whatever an earlier `source .run/demo.env`
# left in this shell.
unset IPG__KAFKA__BOOTSTRAP_SERVERS

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# pid_of NAME PATTERN: the pid in .run/NAME.pid if that process is alive and its command
# line contains PATTERN (so that a recycled pid is never taken for ours).
pid_of() {
  local pid
  pid=$(cat ".run/$1.pid" 2>/dev/null || true)
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
  rm -f ".run/$1.pid"
}
# port_free PORT WHAT [HINT]: fails saying how to free PORT when another program holds it.
port_free() {
  listening "$1" || return 0
  echo "run-demo: 127.0.0.1:$1 ($2) is in use by another program." >&2
  echo "  See which: ss -ltnp 'sport = :$1'; stop it and run again." >&2
  if [ $# -gt 2 ]; then echo "  $3" >&2; fi
  exit 1
}

scripts/ensure-redis.sh >/dev/null
echo "building ipg-switch (release; the first build takes several minutes)..."
cargo build --release --locked --bin ipg-switch --example passive_institution \
  --example webhook_receiver
BIN="${CARGO_TARGET_DIR:-target}/release/ipg-switch"
EXAMPLES="${CARGO_TARGET_DIR:-target}/release/examples"

mkdir -p .run/redis
old=$(pid_of run-demo "run-demo.sh") || true
if [ -n "$old" ] && [ "$old" != $$ ]; then
  echo "stopping the demo already running (pid $old)"
  stop_pid "$old"
fi
stop_stale daemon "ipg-switch --config config/demo.toml run"
stop_stale passive-institution "examples/passive_institution"
stop_stale webhook-receiver "examples/webhook_receiver"
echo $$ >.run/run-demo.pid

daemon_pid="" inst_pid="" recv_pid="" redis_pid=""
# Stops what this run started, the daemon first (it drains into Redis) and Redis last, and
# removes only the files that are still this run's.
cleanup() {
  local p name
  for p in "$daemon_pid" "$inst_pid" "$recv_pid" "$redis_pid"; do
    if alive "$p"; then stop_pid "$p"; fi
  done
  for name in run-demo daemon passive-institution webhook-receiver redis; do
    p=$(cat ".run/$name.pid" 2>/dev/null || true)
    case "$p" in
      "" | "$$" | "$daemon_pid" | "$inst_pid" | "$recv_pid" | "$redis_pid") rm -f ".run/$name.pid" ;;
    esac
  done
  if grep -qs "^# run $$\$" .run/demo.env; then rm -f .run/demo.env; fi
}
trap cleanup EXIT

# --- Redis ---------------------------------------------------------------------------------
if [ -n "${IPG__REDIS__URL:-}" ] && [ "$IPG__REDIS__URL" != "$DEMO_REDIS_URL" ]; then
  REDIS_URL=$IPG__REDIS__URL
  echo "IPG__REDIS__URL is set: using the Redis at $REDIS_URL (no redis-server started);"
  echo "  it must keep every acknowledged write: appendonly yes, appendfsync always (README)"
else
  REDIS_URL=$DEMO_REDIS_URL
  stop_stale redis "redis-server 127.0.0.1:$REDIS_PORT"
  port_free "$REDIS_PORT" "the demo's Redis" \
    "Or put the demo's Redis on another port: DEMO_REDIS_PORT=6391 scripts/run-demo.sh
  (the CLI then needs: source .run/demo.env), or use a Redis of your own (appendonly yes,
  appendfsync always): IPG__REDIS__URL=redis://127.0.0.1:PORT/0 scripts/run-demo.sh"
  # An acknowledged payment must survive a crash of redis-server: the AOF is fsynced on
  # every write (README, "Redis persistence the switch depends on"). No RDB snapshots.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$PWD/.run/redis" \
    --appendonly yes --appendfsync always --save "" \
    --daemonize yes --pidfile "$PWD/.run/redis.pid" --logfile "$PWD/.run/redis.log"
  for _ in $(seq 50); do
    listening "$REDIS_PORT" && break
    sleep 0.1
  done
  redis_pid=$(cat .run/redis.pid 2>/dev/null || true)
  if ! listening "$REDIS_PORT"; then
    echo "run-demo: redis-server did not start; see .run/redis.log" >&2
    exit 1
  fi
  echo "redis-server on 127.0.0.1:$REDIS_PORT (appendfsync always; data in .run/redis)"
fi
export IPG__REDIS__URL=$REDIS_URL

# --- the institutions' side ----------------------------------------------------------------
port_free "${PASSIVE_LISTEN##*:}" "the passive demo institution PST01"
"$EXAMPLES/passive_institution" "$PASSIVE_LISTEN" demo-pst01-key demo/passive/bills.json \
  >.run/passive-institution.log 2>&1 &
inst_pid=$!
echo "$inst_pid" >.run/passive-institution.pid
echo "passive demo institution PST01 on http://$PASSIVE_LISTEN/ipg (log: .run/passive-institution.log)"

port_free "${WEBHOOK_LISTEN##*:}" "the webhook receiver of SCH01"
"$EXAMPLES/webhook_receiver" "$WEBHOOK_LISTEN" demo-sch01-key >.run/webhook-receiver.log 2>&1 &
recv_pid=$!
echo "$recv_pid" >.run/webhook-receiver.pid
echo "webhook receiver of SCH01 on http://$WEBHOOK_LISTEN/ipg/webhook (events: .run/webhook-receiver.log)"

# --- the daemon ----------------------------------------------------------------------------
# In the background, so that this script can forward Ctrl-C and SIGTERM to it and wait while
# it drains. Its log goes to the terminal and to .run/daemon.log (tee ignores Ctrl-C, so
# that the daemon's last lines are kept).
echo "starting ipg-switch (log: .run/daemon.log)"
: >.run/daemon.log
"$BIN" --config config/demo.toml run 2> >(
  trap '' INT TERM
  exec tee -a .run/daemon.log >&2
) &
daemon_pid=$!
echo "$daemon_pid" >.run/daemon.pid
stopping=""
# SIGTERM stops the daemon like SIGINT, and a background job never ignores it.
forward() {
  stopping=1
  if alive "$daemon_pid"; then kill -TERM "$daemon_pid" 2>/dev/null || true; fi
}
trap forward INT TERM

bootstrap=""
while [ -z "$stopping" ] && alive "$daemon_pid"; do
  bootstrap=$(sed -n 's/.*bootstrap=\([^ ]*\).*/\1/p' .run/daemon.log | head -n 1)
  [ -n "$bootstrap" ] && break
  sleep 0.2
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
    echo "export PATH=\"$bindir:\$PATH\""
  } >.run/demo.env
  # --- demo bills ---------------------------------------------------------------------------
  # Created through the running daemon's broker: every change is journaled before it is
  # answered (docs/journal.md), and the embedded broker lives inside the daemon.
  for bill in demo/bills/*.json; do
    if out=$(IPG__KAFKA__BOOTSTRAP_SERVERS=$bootstrap $BIN --config config/demo.toml bill create --file "$bill" 2>.run/cli.err); then
      echo "created bill $(echo "$out" | sed -n 's/.*"hash": "\(.*\)".*/\1/p') from $bill"
    else
      echo "bill from $bill not created: $(tail -n 1 .run/cli.err | sed 's/^ipg-switch: //')"
    fi
  done
  echo "run-demo: ready. In another shell, before the CLI or kcat: source .run/demo.env" \
    "(then e.g. ipg-switch --config config/demo.toml passive list --institution PST01)"
fi

status=0
while alive "$daemon_pid"; do
  if wait "$daemon_pid"; then status=0; else status=$?; fi
done
exit "$status"
