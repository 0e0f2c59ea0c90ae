-- Bulk actions: an operation and one item per targeted user. Items are worked off by the gateway's
-- bulk worker; an operation survives a gateway restart and is finished by whichever replica runs.
CREATE TABLE IF NOT EXISTS bulk_operations (
    operation_id    uuid PRIMARY KEY,
    action          text NOT NULL CHECK (action IN ('require', 'extend', 'reset')),
    enrollment_days integer,
    actor           text NOT NULL,
    created_at      timestamptz NOT NULL,
    completed_at    timestamptz
);

CREATE TABLE IF NOT EXISTS bulk_operation_items (
    operation_id  uuid NOT NULL REFERENCES bulk_operations (operation_id),
    user_id       uuid NOT NULL,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    reason        text,
    claimed_until timestamptz,
    PRIMARY KEY (operation_id, user_id)
);
CREATE INDEX IF NOT EXISTS bulk_operation_items_pending ON bulk_operation_items (operation_id) WHERE state = 'pending';
