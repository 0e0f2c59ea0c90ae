-- Read-your-writes for bulk results (read_your_writes.py): one consistency token, `bulk:<id>`, stands
-- for every change a bulk made, each named by its aggregate and the version it reached.

-- A bulk operation on users: each applied item's enrollment version. Null for items applied before it
-- was recorded (the token does not wait for those). settled_at: when the token was first found with
-- every item applied and projected; later checks read only that.
ALTER TABLE bulk_operation_items ADD COLUMN IF NOT EXISTS version integer;
ALTER TABLE bulk_operations ADD COLUMN IF NOT EXISTS settled_at timestamptz;
-- An item still pending may now have a `reason`: why its last try did not apply it (mfa answered 5xx,
-- or not at all); it is tried again when its lease runs out.

-- Whether an applied item changed its user (false: the user already was as asked). Null for items
-- applied before it was recorded, counted as changed.
ALTER TABLE bulk_operation_items ADD COLUMN IF NOT EXISTS changed boolean;

-- A bulk switch of systems: its changes, kept for a day (read_your_writes.KEPT_FOR; the gateway's
-- sweep deletes older sets, and their tokens then wait for nothing).
CREATE TABLE IF NOT EXISTS consistency_sets (
    set_id     uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    settled_at timestamptz
);
CREATE INDEX IF NOT EXISTS consistency_sets_created ON consistency_sets (created_at);

CREATE TABLE IF NOT EXISTS consistency_set_changes (
    set_id       uuid NOT NULL REFERENCES consistency_sets ON DELETE CASCADE,
    aggregate_id text NOT NULL,
    version      integer NOT NULL,
    PRIMARY KEY (set_id, aggregate_id)
);
