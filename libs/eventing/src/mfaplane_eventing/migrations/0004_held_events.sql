-- Messages a consumer holds until it is upgraded: an event of a type or schema version newer than it knows,
-- and every message of that partition after it, so that the partition's order is kept. The
-- consumer goes on with its other partitions, and each replica retries the oldest held message of
-- each partition until one that knows its version handles them (consumer.py).
CREATE TABLE IF NOT EXISTS held_events (
    topic      text NOT NULL,
    partition  integer NOT NULL,
    "offset"   bigint NOT NULL,
    event_id   uuid NOT NULL,
    value      bytea NOT NULL,
    reason     text NOT NULL,
    held_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset"),
    -- an event sent again (a replay of a genuine message, a redelivery) is held once
    UNIQUE (topic, partition, event_id)
);
