#!/usr/bin/env bash
# The contract fuzzer (issue 27, docs/contracts.md): schemathesis, driven by docs/openapi.json,
# against `ipg-switch run` started as the tests start it (a private redis-server, the
# embedded broker, config/demo.toml's institutions and channels, the API on a free port).
# scripts/fuzz/hooks.py signs every request and adds OAuth tokens, and checks that a payment
# or reversal that was refused moved no money. It must find no 5xx, no answer that violates
# the document, and no such money change; `verify` must agree afterwards.
#
#   FUZZ_EXAMPLES   generated requests per operation (default 25: the short run test.sh
#                   makes; docs/contracts.md gives the longer one)
#   FUZZ_VENV       where schemathesis is installed (default .run/fuzz-venv)
set -euo pipefail
cd "$(dirname "$0")/.."

EXAMPLES=${FUZZ_EXAMPLES:-25}
VENV=${FUZZ_VENV:-.run/fuzz-venv}
REDIS_SERVER=${REDIS_SERVER:-$(scripts/ensure-redis.sh)}
RUN=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

if [ ! -x "$VENV/bin/schemathesis" ] || [ ! -x "$VENV/bin/openapi-spec-validator" ]; then
  echo "contract-fuzz: installing schemathesis and openapi-spec-validator into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'schemathesis==4.32.5' 'openapi-spec-validator==0.9.0'
fi
cargo build --locked --quiet --bin ipg-switch

REDIS_PORT=$(free_port)
API_PORT=$(free_port)
METRICS_PORT=$(free_port)
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  >"$RUN/redis.log" 2>&1 &
PIDS+=($!)
export IPG_DEMO_SNAP_SECRET=demo-snap-secret
IPG__REDIS__URL="redis://127.0.0.1:$REDIS_PORT/0" \
  IPG__API__LISTEN="127.0.0.1:$API_PORT" \
  IPG__METRICS__LISTEN="127.0.0.1:$METRICS_PORT" \
  "${CARGO_TARGET_DIR:-target}/debug/ipg-switch" --config config/demo.toml run \
  >"$RUN/daemon.log" 2>&1 &
PIDS+=($!)
BASE="http://127.0.0.1:$API_PORT"
for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$METRICS_PORT/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$METRICS_PORT/readyz" >/dev/null || {
  echo "contract-fuzz: the daemon did not become ready" >&2
  tail -20 "$RUN/daemon.log" >&2
  exit 1
}

# The served document (generated from the routes) is valid OpenAPI 3.1 by an independent
# validator too (tests/contracts.rs checks it against the OpenAPI 3.1 JSON Schema).
curl -fsS "$BASE/openapi.json" >"$RUN/openapi.json"
"$VENV/bin/openapi-spec-validator" "$RUN/openapi.json"

started=$(date +%s)
status=0
FUZZ_BASE="$BASE" SCHEMATHESIS_HOOKS=scripts.fuzz.hooks PYTHONPATH=. \
  "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
  --url "$BASE" \
  --exclude-path '/api/v2/gw/bill/{hash}/mock' \
  --checks not_a_server_error,response_schema_conformance,money_unchanged_when_refused \
  --max-examples "$EXAMPLES" \
  --phases examples,coverage,fuzzing \
  --seed 1 \
  --no-color >"$RUN/schemathesis.log" 2>&1 || status=$?
mkdir -p .run
cp "$RUN/schemathesis.log" .run/contract-fuzz.log
cp "$RUN/daemon.log" .run/contract-fuzz-daemon.log
tail -40 "$RUN/schemathesis.log"
echo "contract-fuzz: the whole report is .run/contract-fuzz.log" >&2
echo "contract-fuzz: $(($(date +%s) - started)) s, $EXAMPLES examples per operation" >&2
if grep -q " panicked at " "$RUN/daemon.log"; then
  echo "contract-fuzz: the daemon panicked" >&2
  grep -A5 " panicked at " "$RUN/daemon.log" >&2
  status=1
fi
exit "$status"
