#!/usr/bin/env bash
# The one command that checks Meterly: installs what is missing, runs ruff, mypy --strict
# and the import contracts (pyproject.toml [tool.importlinter]) on the package code, then
# the whole test suite against a real Kafka broker and a real
# Cassandra node (provisioned locally unless configured). A run that tests nothing, or skips
# a test, fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh --tests
export PYTHONUNBUFFERED=1
echo "meterly: ruff" >&2
.venv/bin/ruff check gateway processors schemas storage ops tests
echo "meterly: mypy --strict" >&2
.venv/bin/mypy
echo "meterly: import contracts (lint-imports)" >&2
.venv/bin/lint-imports --no-cache
echo "meterly: pytest" >&2
set +e
.venv/bin/pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "meterly: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$code"
