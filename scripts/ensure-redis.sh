#!/usr/bin/env bash
# Makes sure redis-server (>= 7.0) is installed, from Debian's packages if missing.
# The project never relies on a Redis already running: tests and the demo start their own.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing Debian's redis-server package" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  # The package starts a system service on 6379; the project does not use it.
fi

version=$(redis-server --version | sed -n 's/.*v=\([0-9]*\)\..*/\1/p')
if [ -n "$version" ] && [ "$version" -lt 7 ]; then
  echo "redis-server $(redis-server --version) is older than 7.0 (SET NX GET is needed)" >&2
  exit 1
fi
command -v redis-server
