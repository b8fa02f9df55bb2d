#!/usr/bin/env bash
# Runs every test: deployment validation, unit tests, and integration tests that run the real daemon in-process
# against a Kafka-protocol broker (librdkafka's mock cluster, over TCP) and private
# redis-server processes on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_SERVER=$(scripts/ensure-redis.sh)
export REDIS_SERVER
# tests/secure.rs makes its TLS certificates with openssl (Debian's base images have it).
if ! command -v openssl >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

# Formatting is part of the build's contract (rustfmt ships with rustup's default profile).
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check
else
  echo "rustfmt not installed: formatting not checked" >&2
fi

# Every shipped configuration must load.
cargo build --locked --quiet
for f in config/*.toml; do
  [ "$f" = config/default.toml ] && continue
  # The demo bank's SNAP secret comes from the environment, as run-demo.sh sets it.
  IPG_DEMO_SNAP_SECRET=${IPG_DEMO_SNAP_SECRET:-demo-snap-secret} \
    "${CARGO_TARGET_DIR:-target}/debug/ipg-switch" check-config --config "$f"
done

# Deployment files: promtool config/rules/alert tests, manifests, dashboard, compose,
# Dockerfile, shipped configs (installs promtool, which tests/metrics_scrape.rs also uses).
scripts/validate-deploy.sh

cargo test --locked "$@"

# scripts/run-demo.sh keeps its promises (issue 22): every port checked before the build, a
# child that dies stops it, `ready` only once the daemon's /readyz answers 200, SIGTERM stops
# everything. On the debug binaries, in .run/check-demo; under a minute.
if [ "$#" -eq 0 ]; then
  cargo build --locked --quiet --bin ipg-switch --example passive_institution \
    --example webhook_receiver
  scripts/check-demo.sh
fi

# The contract fuzzer (issue 27, docs/contracts.md): schemathesis from docs/openapi.json
# against the running daemon, 25 generated requests per operation (about 1,600 requests,
# half a minute; schemathesis is installed from PyPI into .run/fuzz-venv the first time).
if [ "$#" -eq 0 ]; then
  FUZZ_EXAMPLES=25 scripts/contract-fuzz.sh
fi

# The same suites on a Redis Cluster (3 masters + 3 replicas per test, from the redis-server
# above; redis-cli comes with it): hosted rules, concurrency, the optimistic payment,
# passive, webhooks, scale-out. Tests run in parallel: the harness never hands one port out
# twice and takes ports below the kernel's ephemeral range (tests/common/mod.rs free_port).
if [ "$#" -eq 0 ]; then
  IPG_TEST_REDIS=cluster cargo test --locked \
    --test hosted_rules --test concurrency --test optimistic --test passive --test webhook \
    --test scale_out --test retention
fi
