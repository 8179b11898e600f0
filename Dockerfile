# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run in a slim Debian with only the shared
# libraries the binary links (OpenSSL for Kafka TLS/SASL, zlib). Runs as a non-root user.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole workspace, so Cargo sees every member as it is (no stub files); only the product
# package's binary is built. BuildKit cache mounts keep the registry and librdkafka's build
# between image builds, so a source edit does not rebuild the dependencies.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kafka-pg-sink --bin kafka-pg-sink \
 && strip target/release/kafka-pg-sink \
 && cp target/release/kafka-pg-sink /usr/local/bin/kafka-pg-sink

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin sink
COPY --from=build /usr/local/bin/kafka-pg-sink /usr/local/bin/kafka-pg-sink
COPY config/kafka-pg-sink.toml /etc/kafka-pg-sink/kafka-pg-sink.toml
USER 10001:10001
# Mount your own config over /etc/kafka-pg-sink/kafka-pg-sink.toml, or override keys with
# KAFKA_PG_SINK__SECTION__KEY variables. Inside a container the HTTP port must listen on all
# interfaces for probes and scraping.
ENV KAFKA_PG_SINK_CONFIG=/etc/kafka-pg-sink/kafka-pg-sink.toml \
    KAFKA_PG_SINK__HTTP__LISTEN=0.0.0.0:8080 \
    RUST_LOG=info \
    MALLOC_ARENA_MAX=2
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/kafka-pg-sink"]
CMD ["run"]
