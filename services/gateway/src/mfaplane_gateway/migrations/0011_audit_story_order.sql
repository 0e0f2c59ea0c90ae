-- The order auditors read the audit log in (audit_order.py): by story_at, then seq. story_at is when
-- the event happened, as the log places it: its occurred_at, but no later than when the gateway
-- stored it (a producer's clock running ahead) and no earlier than the place of its aggregate's
-- previous record (a producer's clock running behind never puts a version before the one it
-- follows). Beside the hash chain (seq order), not part of it: it is computed from what the chain
-- holds and from stored_at, the gateway's clock when it stored the record (NULL before this).
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS stored_at timestamptz;
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS story_at timestamptz;

-- The records stored before: occurred_at, never earlier than the aggregate's previous record. The
-- append-only trigger is off for this statement only, which changes no chained column. The index it
-- replaces goes first, so that the statement has one index fewer to keep up.
DROP INDEX IF EXISTS audit_log_principal;
ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
UPDATE audit_log SET story_at = filled.story_at
FROM (SELECT seq, max(occurred_at) OVER (PARTITION BY aggregate_id ORDER BY seq) AS story_at FROM audit_log) AS filled
WHERE audit_log.seq = filled.seq AND audit_log.story_at IS NULL;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;
ALTER TABLE audit_log ALTER COLUMN story_at SET NOT NULL;

CREATE INDEX IF NOT EXISTS audit_log_aggregate ON audit_log (aggregate_id, seq);

-- Every insert that gives no story_at gets it here (the gateway's append, and the previous release's,
-- which knows no stored_at); a copy of the table keeps the values it gives.
CREATE OR REPLACE FUNCTION audit_log_story_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.story_at IS NULL THEN
        NEW.story_at := greatest(least(NEW.occurred_at, coalesce(NEW.stored_at, NEW.occurred_at)),
                                 (SELECT story_at FROM audit_log WHERE aggregate_id = NEW.aggregate_id
                                  ORDER BY seq DESC LIMIT 1));
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS audit_log_story ON audit_log;
CREATE TRIGGER audit_log_story BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_story_at();

-- The export reads in story order; a user's history and states at past moments per principal in it.
CREATE INDEX IF NOT EXISTS audit_log_story ON audit_log (story_at, seq);
CREATE INDEX IF NOT EXISTS audit_log_principal_story ON audit_log (principal_id, story_at, seq);
