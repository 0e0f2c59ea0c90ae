-- Failed password attempts per client address (the gateway's `source`), whatever the emails, for
-- limiting password spraying (source_guard.py).
CREATE TABLE IF NOT EXISTS source_failures (
    source      text PRIMARY KEY,
    failures    integer NOT NULL,
    window_from timestamptz NOT NULL
);
