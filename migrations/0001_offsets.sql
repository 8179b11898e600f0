-- The connector's own state. Applied with search_path set to the configured schema
-- (`postgres.schema`, default kafka_pg_sink), so names here are unqualified.

-- Next offset to read per group and partition. Written only in the same transaction as the rows
-- of the batch that ends there, as a compare-and-set on the previous value.
CREATE TABLE IF NOT EXISTS offsets (
    group_id    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
