-- Runs once, when the postgres container initialises an empty data directory (database `sink`,
-- from POSTGRES_DB). The connector never creates target tables; it creates only its own schema
-- (kafka_pg_sink: offsets, dead letters) at start-up.
--
-- The target of the `payments` mapping in deploy/kafka-pg-sink.toml: the key column `id` is the
-- primary key (the ON CONFLICT target), every mapped column exists, and the NOT NULL columns
-- are mapped.
CREATE TABLE public.payments (
    id            bigint PRIMARY KEY,
    account       text NOT NULL,
    amount        numeric(14, 2) NOT NULL,
    paid_at       timestamptz,
    src_partition integer,
    src_offset    bigint
);
