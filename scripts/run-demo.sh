#!/usr/bin/env bash
# Runs the daemon as a demo: the embedded Kafka-protocol broker, a private redis-server
# (installed from Debian's packages if missing) on a free port, demo institutions and
# channels from config/demo.toml, the demo bills in demo/bills/, and the passive demo
# institution PST01 (examples/passive_institution.rs, bills in demo/passive/bills.json) on
# 127.0.0.1:8082. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-redis.sh >/dev/null
cargo build --release --locked --quiet --bin ipg-switch --example passive_institution
BIN="${CARGO_TARGET_DIR:-target}/release/ipg-switch"
INSTITUTION="${CARGO_TARGET_DIR:-target}/release/examples/passive_institution"

port=6390
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
mkdir -p .run/redis
redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/.run/redis" --appendonly yes \
  --save "" --daemonize yes --pidfile "$PWD/.run/redis.pid" --logfile "$PWD/.run/redis.log"
inst_pid=""
trap 'kill "$(cat .run/redis.pid)" 2>/dev/null || true; [ -n "$inst_pid" ] && kill "$inst_pid" 2>/dev/null || true' EXIT
export IPG__REDIS__URL="redis://127.0.0.1:$port/0"
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "redis-server on 127.0.0.1:$port (data in .run/redis)"

for bill in demo/bills/*.json; do
  if out=$($BIN --config config/demo.toml bill create --file "$bill" 2>&1); then
    echo "created bill $(echo "$out" | sed -n 's/.*"hash": "\(.*\)".*/\1/p') from $bill"
  else
    echo "bill from $bill not created: ${out#ipg-switch: }"
  fi
done

$INSTITUTION 127.0.0.1:8082 demo-pst01-key demo/passive/bills.json >.run/passive-institution.log 2>&1 &
inst_pid=$!
echo "passive demo institution PST01 on http://127.0.0.1:8082/ipg (log: .run/passive-institution.log)"

echo "starting ipg-switch; the embedded broker's address is logged as bootstrap=..."
$BIN --config config/demo.toml run
