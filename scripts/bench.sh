#!/usr/bin/env bash
# Benchmarks kafka-pg-sink on this machine (issue 6): the raw COPY + upsert ceiling, then the
# release connector in upsert, insert and accumulate modes with production defaults, against
# PostgreSQL (DATABASE_URL, else started by ensure-postgres.sh) and librdkafka's mock broker
# (or KAFKA_BROKERS). Prints a table and writes bench/results/<UTC timestamp>.json.
# Arguments go to the benchmark, e.g. `scripts/bench.sh --records 400000`; see --help.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-tools.sh
DATABASE_URL="$(scripts/ensure-postgres.sh)"
export DATABASE_URL
echo "bench: DATABASE_URL=$DATABASE_URL KAFKA_BROKERS=${KAFKA_BROKERS:-<mock broker>}" >&2

cargo build --release --locked --workspace --bins
exec target/release/kafka-pg-sink-bench \
  --sink target/release/kafka-pg-sink \
  --mock-broker target/release/kafka-pg-sink-mock-broker \
  "$@"
