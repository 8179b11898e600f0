#!/usr/bin/env bash
# Installs what building and testing need, if missing: a C toolchain and make (librdkafka is
# built from source by rdkafka-sys), OpenSSL headers for TLS/SASL, and the PostgreSQL client
# tools. Idempotent.
set -euo pipefail

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v pg_isready >/dev/null 2>&1 || missing+=(postgresql-client)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# TLS and SASL to Kafka link the system OpenSSL.
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)

if ((${#missing[@]})); then
  echo "ensure-tools: installing ${missing[*]}" >&2
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "ensure-tools: please install: ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "ensure-tools: cargo is required (https://rustup.rs)" >&2
  exit 1
fi

# The CI gates format and lint the code.
for component in rustfmt clippy; do
  probe=fmt; [ "$component" = clippy ] && probe=clippy
  if ! cargo "$probe" --version >/dev/null 2>&1; then
    if command -v rustup >/dev/null 2>&1; then
      echo "ensure-tools: installing the $component component" >&2
      rustup component add "$component" >&2
    else
      echo "ensure-tools: cargo $probe is required (rustup component add $component)" >&2
      exit 1
    fi
  fi
done
