#!/usr/bin/env bash
# Makes sure a Python venv holds the Confluent serializers the test kit encodes with
# (crates/testkit/python/requirements.txt: confluent-kafka with its Avro, Protobuf, JSON Schema
# and Schema Registry extras, and grpcio-tools), and prints the venv's python on stdout (logs go
# to stderr). Idempotent: when the venv already holds exactly the pinned set and imports it, it
# only checks that and exits.
#   KPS_PYSERDE_VENV   where the venv lives (default ~/.cache/kafka-pg-sink/pyserde)
#   KPS_PYSERDE_PYTHON the interpreter that creates it (default python3, 3.9 or newer)
# A Python without the venv module (Debian's python3 without python3-venv) gets the module from
# Debian's packages when running as root, else virtualenv from `pip install --user`.
# Usage: export KPS_PYTHON="$(scripts/ensure-python-serde.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "ensure-python-serde: $*" >&2; }

requirements="$PWD/crates/testkit/python/requirements.txt"
venv="${KPS_PYSERDE_VENV:-$HOME/.cache/kafka-pg-sink/pyserde}"
base="${KPS_PYSERDE_PYTHON:-python3}"
python="$venv/bin/python"
# The venv records the requirements it was built from; a change to them rebuilds it.
stamp="$venv/.kps-requirements.txt"

importable() {
  "$python" - <<'EOF' >/dev/null 2>&1
import confluent_kafka.schema_registry.avro
import confluent_kafka.schema_registry.json_schema
import confluent_kafka.schema_registry.protobuf
import grpc_tools.protoc
import google.protobuf.json_format
EOF
}

if [ -x "$python" ] && cmp -s "$requirements" "$stamp" && importable; then
  echo "$python"; exit 0
fi

if ! command -v "$base" >/dev/null 2>&1; then
  log "$base is not installed (scripts/ensure-tools.sh installs python3)"; exit 1
fi

make_venv() {
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$base" -m venv "$venv" >&2 2>&1 && [ -x "$venv/bin/pip" ]
}

if ! make_venv; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    minor="$("$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    log "the venv module is missing; installing python$minor-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "python$minor-venv" >&2 || apt-get install -y -qq python3-venv >&2
  fi
  if ! make_venv; then
    log "the venv module is missing; using virtualenv from pip install --user"
    rm -rf "$venv"
    "$base" -m pip install --user --quiet virtualenv >&2 ||
      "$base" -m pip install --user --quiet --break-system-packages virtualenv >&2
    "$base" -m virtualenv --quiet "$venv" >&2
  fi
fi

log "installing the pinned serializers into $venv (about a minute on a fresh machine)"
"$python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
importable || { log "the serializers do not import after installing"; exit 1; }
cp "$requirements" "$stamp"
echo "$python"
