-- The audit log is appended by a consumer group of its own (mfaplane-gateway-audit), apart from the
-- projection of the read models (mfaplane-gateway): either may be ahead of the other.

-- Events the read models have applied before the audit log had them. The audit consumer deletes each
-- as it appends it; a replay switches only when none is left (replay.py), since it rebuilds from the log.
CREATE TABLE IF NOT EXISTS awaiting_audit (
    event_id uuid PRIMARY KEY
);

-- The newest version of each aggregate that both the read models and the audit log have: what a
-- consistency token waits for (read_your_writes.py), so that a client finds its change in both. Each
-- aggregate's records are appended in version order, so its last record has the newest.
CREATE OR REPLACE VIEW recorded_versions AS
SELECT p.aggregate_id,
       least(p.version, coalesce((SELECT (a.envelope->>'aggregate_version')::int FROM audit_log a
                                  WHERE a.aggregate_id = p.aggregate_id ORDER BY a.seq DESC LIMIT 1), 0)) AS version
FROM projected_versions p;
