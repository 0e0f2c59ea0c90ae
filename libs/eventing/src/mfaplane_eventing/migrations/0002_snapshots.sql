-- The latest snapshot of an aggregate's state, if it has one: a shortcut for loading a long
-- history (see snapshots.py). Never a source of truth: deleting every row loses nothing.
CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_id      text PRIMARY KEY,
    -- Which code's state this is: a snapshot whose key differs from the loader's is ignored.
    state_key         text NOT NULL,
    aggregate_version integer NOT NULL CHECK (aggregate_version >= 1),
    state             jsonb NOT NULL,
    taken_at          timestamptz NOT NULL DEFAULT now()
);
