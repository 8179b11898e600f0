-- Records a mapping could not apply, written in the same transaction that advances the offset
-- past them: a record is either reflected in its target table or here, exactly once.
CREATE TABLE IF NOT EXISTS dead_letters (
    id               bigserial   PRIMARY KEY,
    group_id         text        NOT NULL,
    topic            text        NOT NULL,
    partition        integer     NOT NULL,
    "offset"         bigint      NOT NULL,
    target_table     text        NOT NULL,
    stage            text        NOT NULL CHECK (stage IN ('decode', 'convert', 'database')),
    error            text        NOT NULL,
    record_key       bytea,
    record_value     bytea,
    headers          jsonb       NOT NULL DEFAULT '[]',
    record_timestamp timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Set, exactly once, by `kafka-pg-sink dead-letters replay` in the transaction that applies it.
    replayed_at      timestamptz,
    UNIQUE (group_id, topic, partition, "offset", target_table)
);
CREATE INDEX IF NOT EXISTS dead_letters_pending ON dead_letters (topic, target_table) WHERE replayed_at IS NULL;
