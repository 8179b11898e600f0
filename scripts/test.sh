#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests against a real PostgreSQL and a
# Kafka-protocol broker over TCP (librdkafka's mock cluster in its own process, or the cluster
# named by KAFKA_BROKERS). Installs and starts what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-tools.sh
DATABASE_URL="$(scripts/ensure-postgres.sh)"
export DATABASE_URL
KPS_PYTHON="$(scripts/ensure-python-serde.sh)"; export KPS_PYTHON  # the test kit's Confluent serializers
echo "test: DATABASE_URL=$DATABASE_URL KAFKA_BROKERS=${KAFKA_BROKERS:-<mock cluster per test>}" >&2

# Tests that cannot run on this broker (fault injection needs the mock; static membership needs a
# real cluster) are skipped with a reason and listed here, never silently.
skips="$(mktemp)"
trap 'rm -f "$skips"' EXIT
status=0
KPS_SKIP_LOG="$skips" cargo test --locked --workspace --all-targets "$@" || status=$?
if [ -s "$skips" ]; then
  echo "test: $(wc -l < "$skips") test(s) skipped on this broker:" >&2
  sort "$skips" >&2
else
  echo "test: no test skipped on this broker" >&2
fi
exit "$status"
