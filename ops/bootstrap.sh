#!/usr/bin/env bash
# Installs what Meterly needs on a fresh Debian-like machine, once: Java 17 and Maven (to
# fetch Kafka and Cassandra from Maven Central), a Python 3.11 virtual environment in .venv,
# and the pinned Python packages. Later runs only check and return quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "meterly: $*" >&2; }

need_apt=()
if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then need_apt+=(openjdk-17-jre-headless); fi
if ! command -v mvn >/dev/null 2>&1 && [ -z "${METERLY_KAFKA_BOOTSTRAP:-}" ]; then need_apt+=(maven); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_apt[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    say "missing ${need_apt[*]}: install them (Java 17+ and Maven), or point METERLY_KAFKA_BOOTSTRAP and METERLY_CASSANDRA_HOSTS at existing clusters"
    exit 1
  fi
fi

PYTHON="${METERLY_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then say "Python 3.11 is required (set METERLY_PYTHON to its path)"; exit 1; fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.meterly-installed
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > "$stamp"
fi
