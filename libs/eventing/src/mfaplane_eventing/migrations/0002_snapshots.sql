-- The latest snapshot of an aggregate's state under each code's key: a shortcut for loading a long
-- history (see snapshots.py). Never a source of truth: deleting rows loses nothing.
CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_id      text NOT NULL,
    -- Which code's state this is: a loader reads only the snapshots under its own key.
    state_key         text NOT NULL,
    aggregate_version integer NOT NULL CHECK (aggregate_version >= 1),
    state             jsonb NOT NULL,
    taken_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_id, state_key)
);
