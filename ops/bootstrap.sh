#!/usr/bin/env bash
# Installs what Meterly needs on a fresh Debian-like machine; later runs only check and return
# quickly.
#
#   ops/bootstrap.sh          what ./ops/run.sh needs: Java 17 and Maven (they fetch Kafka and
#                             Cassandra from Maven Central), Python 3.11, and the runtime
#                             packages of uv.lock in .venv
#   ops/bootstrap.sh --tests  what ./ops/test.sh needs on top: the dev group of uv.lock,
#                             Debian's chromium (console tests), curl and jq (the README
#                             walkthrough the tests run)
#
# System packages come from apt-get when this runs as root; otherwise it names each missing
# one with the command that installs it, and stops. Python packages are installed by uv from
# uv.lock exactly (`uv sync --frozen`, hashes checked); uv itself is pinned by hash in
# ops/requirements/uv.txt. `meterly doctor` checks the same things and more.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "meterly: $*" >&2; }
tests=0
case "${1:-}" in
  --tests) tests=1 ;;
  "") ;;
  *) say "usage: ops/bootstrap.sh [--tests]"; exit 2 ;;
esac

# 1. System packages (Debian names).
need=()
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then need+=(openjdk-17-jre-headless); fi
if ! command -v mvn >/dev/null 2>&1 && [ -z "${METERLY_KAFKA_BOOTSTRAP:-}" ]; then need+=(maven); fi
if [ "$tests" = 1 ]; then
  # fonts-liberation is only a recommendation of chromium, but pages render without text
  # on a machine that has no fonts at all.
  if [ -z "${METERLY_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then need+=(chromium fonts-liberation); fi
  if ! command -v curl >/dev/null 2>&1; then need+=(curl); fi
  if ! command -v jq >/dev/null 2>&1; then need+=(jq); fi
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need[*]} with apt-get (once)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
      say "apt-get could not install ${need[*]}; install them by hand and run this again"
      exit 1
    fi
  else
    say "missing: ${need[*]}"
    if command -v apt-get >/dev/null 2>&1; then
      say "install them with:  sudo apt-get install -y ${need[*]}"
    else
      say "install them with your package manager (Java 17+, Maven, Chromium, curl, jq)"
    fi
    if [[ " ${need[*]} " == *" chromium "* ]]; then
      say "(or set METERLY_CHROMIUM to a Chromium or Chrome binary you already have)"
    fi
    if [[ " ${need[*]} " == *" maven "* ]]; then
      say "(or point METERLY_KAFKA_BOOTSTRAP and METERLY_CASSANDRA_HOSTS at existing clusters)"
    fi
    exit 1
  fi
fi

# 2. Python 3.11.
PYTHON="${METERLY_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      # The interpreter itself, not a launcher such as a pyenv shim: uv recreates a .venv
      # whose interpreter differs from the one it is given.
      PYTHON="$("$candidate" -c 'import sys; print(sys.executable)')"; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  say "Python 3.11 is required: sudo apt-get install -y python3.11 python3.11-venv (or set METERLY_PYTHON to its path)"
  exit 1
fi

# 3. uv, pinned by hash, in a virtual environment of its own.
uv_version="$(sed -n 's/^uv==\([0-9.]*\).*/\1/p' ops/requirements/uv.txt)"
tools="${METERLY_CACHE:-${METERLY_HOME:-.meterly}/cache}/tools/uv-$uv_version"
if [ ! -x "$tools/bin/uv" ]; then
  say "installing uv $uv_version (pinned by hash) into $tools"
  rm -rf "$tools"
  "$PYTHON" -m venv "$tools"
  "$tools/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
    -r ops/requirements/uv.txt
fi

# 4. The locked packages in .venv: exactly uv.lock, with its hashes.
export UV_PYTHON="$PYTHON" UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=.venv
if [ "$tests" = 1 ]; then
  # Exact: the dev group too, and anything not in the lock is removed.
  "$tools/bin/uv" sync --frozen --quiet
else
  # Runtime packages; leaves the test tools of an earlier ./ops/test.sh in place.
  "$tools/bin/uv" sync --frozen --quiet --no-dev --inexact
fi
