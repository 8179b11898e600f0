#!/usr/bin/env bash
# Quickstart: moves real records from a Kafka-protocol broker into Postgres and shows the result.
# Starts what it needs (Postgres if none runs, a mock Kafka cluster in its own process unless
# KAFKA_BROKERS is set), produces sample payments, runs the connector until every offset is
# committed, prints rows and metrics, then stops the connector with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${COUNT:-10000}"
PROFILE="${PROFILE:-debug}"   # PROFILE=release for throughput figures

scripts/ensure-tools.sh
server_url="$(scripts/ensure-postgres.sh)"
db_url="${server_url%/*}/kps_demo"
echo "==> building"
if [ "$PROFILE" = release ]; then cargo build --locked --quiet --release --workspace --bins; else cargo build --locked --quiet --workspace --bins; fi
bin="target/$PROFILE"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "==> database kps_demo (recreated) with table payments"
psql "$server_url" -qc 'DROP DATABASE IF EXISTS kps_demo WITH (FORCE)' -c 'CREATE DATABASE kps_demo'
psql "$db_url" -qc 'CREATE TABLE payments (
  id bigint PRIMARY KEY, account text NOT NULL, amount numeric(12,2) NOT NULL,
  paid_at timestamptz, src_partition int, src_offset bigint)'

topic=payments
if [ -n "${KAFKA_BROKERS:-}" ]; then
  brokers="$KAFKA_BROKERS"
  topic="payments_demo_$(date +%s)"
  echo "==> using KAFKA_BROKERS=$brokers, topic $topic (auto-created by the broker)"
else
  fifo="$(mktemp -u)"; mkfifo "$fifo"
  $bin/kafka-pg-sink-devkit broker --topic payments:4 < /dev/null > "$fifo" &
  pids+=($!)
  read -r line < "$fifo"; rm -f "$fifo"
  brokers="${line#BOOTSTRAP=}"
  echo "==> mock Kafka cluster (librdkafka) listening on $brokers, topic payments with 4 partitions"
fi

echo "==> producing $COUNT payment events"
$bin/kafka-pg-sink-devkit produce --brokers "$brokers" --topic "$topic" --count "$COUNT"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
echo "==> running kafka-pg-sink (metrics on http://127.0.0.1:$port/metrics)"
export KAFKA_PG_SINK__KAFKA__BROKERS="$brokers" KAFKA_PG_SINK__POSTGRES__URL="$db_url" \
  KAFKA_PG_SINK__HTTP__LISTEN="127.0.0.1:$port"
config=config/demo.toml
if [ "$topic" != payments ]; then
  config="$(mktemp --suffix .toml)"; sed "s/^topic = \"payments\"/topic = \"$topic\"/" config/demo.toml > "$config"
fi
start_ns=$(date +%s%N)
RUST_LOG="${RUST_LOG:-warn,kafka_pg_sink=info}" $bin/kafka-pg-sink --config "$config" &
sink=$!
pids+=($sink)

# Throughput is measured over the whole run, from the connector's start to the last commit.
first_ns=""; done_count=0
for _ in $(seq 1 1200); do
  done_count="$(psql "$db_url" -Atqc "SELECT coalesce(sum(next_offset),0) FROM kafka_pg_sink.offsets WHERE topic='$topic'" 2>/dev/null || echo 0)"
  done_count="${done_count:-0}"
  if [ -z "$first_ns" ] && [ "$done_count" -gt 0 ]; then first_ns=$(date +%s%N); fi
  [ "$done_count" -ge "$COUNT" ] && break
  sleep 0.1
done
last_ns=$(date +%s%N)
if [ "$done_count" -lt "$COUNT" ]; then
  echo "!! only $done_count of $COUNT records were committed" >&2; exit 1
fi

echo
echo "==> rows in Postgres"
psql "$db_url" -c "SELECT count(*) AS rows, sum(amount) AS total_amount, count(DISTINCT account) AS accounts FROM payments"
psql "$db_url" -c "SELECT * FROM payments ORDER BY id LIMIT 5"
echo "==> stored offsets (the connector resumes from these, not from Kafka)"
psql "$db_url" -c "SELECT topic, partition, next_offset, updated_at FROM kafka_pg_sink.offsets ORDER BY partition"
echo "==> metrics"
python3 - "$port" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(("kafka_pg_sink_records_consumed_total", "kafka_pg_sink_rows_written_total",
                        "kafka_pg_sink_batches_committed_total", "kafka_pg_sink_committed_offset",
                        "kafka_pg_sink_commit_duration_seconds_count", "kafka_pg_sink_fenced_commits_total")):
        print("  " + line)
PY
python3 -c "n=$COUNT; s=($last_ns-$start_ns)/1e9; f=(${first_ns:-$last_ns}-$start_ns)/1e9; print(f'==> throughput: {n} records committed in {s:.2f} s from the connector\'s start = {n/s:,.0f} records/s over the whole run ($PROFILE build); the first batch committed after {f:.2f} s (start-up and joining the group)')"
kill -TERM "$sink"; wait "$sink" && echo "==> connector stopped cleanly (SIGTERM, exit 0)"
cat <<EOF

==> next: your own topics
  1. copy config/kafka-pg-sink.toml and write a [[mappings]] entry per topic -> table
  2. $bin/kafka-pg-sink --config my.toml ddl     # prints the CREATE TABLE each mapping needs; review and run it
  3. $bin/kafka-pg-sink --config my.toml check   # checks the configuration against the database
  4. $bin/kafka-pg-sink --config my.toml         # runs; metrics and health on http.listen
EOF
