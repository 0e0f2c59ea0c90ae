-- Event store, command log, outbox and consumer bookkeeping: the same tables in every service's schema.

CREATE TABLE IF NOT EXISTS events (
    position          bigserial PRIMARY KEY,
    -- The writing transaction's id. Readers of the global stream only take rows whose transaction
    -- is older than every transaction still running (see event_store.read_all).
    tx_id             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event_id          uuid NOT NULL UNIQUE,
    aggregate_type    text NOT NULL,
    aggregate_id      text NOT NULL,
    aggregate_version integer NOT NULL CHECK (aggregate_version >= 1),
    type              text NOT NULL,
    schema_version    integer NOT NULL,
    occurred_at       timestamptz NOT NULL,
    correlation_id    uuid NOT NULL,
    causation_id      uuid,
    command_id        uuid,
    actor             text NOT NULL,
    topic             text NOT NULL,
    payload           jsonb NOT NULL,
    UNIQUE (aggregate_id, aggregate_version)
);
CREATE INDEX IF NOT EXISTS events_global_order ON events (tx_id, position);

CREATE TABLE IF NOT EXISTS commands (
    command_id   uuid PRIMARY KEY,
    aggregate_id text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- Rows wait here until the relay has published them; the relay deletes what Kafka acknowledged.
CREATE TABLE IF NOT EXISTS outbox (
    position bigint PRIMARY KEY,
    topic    text NOT NULL,
    key      text NOT NULL,
    value    bytea NOT NULL
);

-- Event ids a consumer has handled, written in the same transaction as the handler's own rows.
CREATE TABLE IF NOT EXISTS processed_events (
    event_id     uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS dead_letters (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    event_id    uuid,
    error       text NOT NULL,
    value       bytea,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, "offset")
);
