#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests against a real PostgreSQL and a
# Kafka-protocol broker over TCP (librdkafka's mock cluster in its own process, or the cluster
# named by KAFKA_BROKERS). Installs and starts what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-tools.sh
DATABASE_URL="$(scripts/ensure-postgres.sh)"
export DATABASE_URL
echo "test: DATABASE_URL=$DATABASE_URL KAFKA_BROKERS=${KAFKA_BROKERS:-<mock cluster per test>}" >&2

cargo test --locked --all-targets "$@"
