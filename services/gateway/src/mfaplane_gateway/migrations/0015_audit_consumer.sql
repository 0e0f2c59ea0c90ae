-- The audit log is appended by a consumer group of its own (mfaplane-gateway-audit), apart from the
-- projection of the read models (mfaplane-gateway): either may be ahead of the other.

-- Events the read models have applied before the audit log had them. The audit consumer deletes each
-- as it appends it; a replay switches only when none is left (replay.py), since it rebuilds from the log.
CREATE TABLE IF NOT EXISTS awaiting_audit (
    event_id     uuid PRIMARY KEY,
    projected_at timestamptz NOT NULL DEFAULT now()  -- one long here is an event the log may never get
);

-- The newest version of each aggregate the audit log holds (the audit consumer keeps it, as the projection
-- keeps projected_versions), and of each that both the read models and the audit log hold: what a
-- consistency token waits for (read_your_writes.py), so that a client finds its change in both. Filled here
-- from the log once: one pass over it (seconds for millions of records).
CREATE TABLE IF NOT EXISTS audited_versions (
    aggregate_id text PRIMARY KEY,
    version      integer NOT NULL
);
INSERT INTO audited_versions (aggregate_id, version)
SELECT aggregate_id, max((envelope->>'aggregate_version')::int) FROM audit_log GROUP BY aggregate_id
ON CONFLICT (aggregate_id) DO UPDATE SET version = GREATEST(audited_versions.version, EXCLUDED.version);

CREATE OR REPLACE VIEW recorded_versions AS
SELECT p.aggregate_id, least(p.version, coalesce(a.version, 0)) AS version
FROM projected_versions p LEFT JOIN audited_versions a USING (aggregate_id);
