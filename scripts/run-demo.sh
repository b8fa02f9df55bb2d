#!/usr/bin/env bash
# Runs the daemon as a demo: the embedded Kafka-protocol broker, a private redis-server
# (installed from Debian's packages if missing) on a free port, demo institutions and
# channels from config/demo.toml, and the demo bills in demo/bills/. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-redis.sh >/dev/null
cargo build --release --locked --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/ipg-switch"

port=6390
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
mkdir -p .run/redis
redis-server --port "$port" --bind 127.0.0.1 --dir "$PWD/.run/redis" --appendonly yes \
  --save "" --daemonize yes --pidfile "$PWD/.run/redis.pid" --logfile "$PWD/.run/redis.log"
trap 'kill "$(cat .run/redis.pid)" 2>/dev/null || true' EXIT
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

echo "starting ipg-switch; the embedded broker's address is logged as bootstrap=..."
$BIN --config config/demo.toml run
