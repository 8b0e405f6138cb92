#!/usr/bin/env bash
# The one command that starts Meterly: installs what is missing, provisions Kafka and
# Cassandra locally unless METERLY_KAFKA_BOOTSTRAP / METERLY_CASSANDRA_HOSTS name existing
# clusters, and serves http://localhost:3000. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh
exec .venv/bin/meterly run "$@"
