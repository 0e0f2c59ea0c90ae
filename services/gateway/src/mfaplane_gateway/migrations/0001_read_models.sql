-- Read models of the gateway, built only from events (rebuildable from the audit log).

-- One row per user or admin: identity facts and the state of their one enrollment
-- (users: scope user_portal; admins: scope admin_portal). Status is derived at query time from
-- required/configured/deadline and the clock, so it turns `expired` the moment a deadline passes.
CREATE TABLE IF NOT EXISTS principals_v1 (
    principal_id     uuid PRIMARY KEY,
    kind             text NOT NULL DEFAULT 'user',
    email            text,
    name             text,
    deleted          boolean NOT NULL DEFAULT false,
    required         boolean NOT NULL DEFAULT false,
    configured       boolean NOT NULL DEFAULT false,
    deadline         timestamptz,
    enrollment_days  integer,
    dismissals       integer NOT NULL DEFAULT 0,
    last_verified_at timestamptz,
    updated_at       timestamptz NOT NULL
);
-- Keyset pagination per sort order: (sort key, principal_id), over listed rows only.
CREATE INDEX IF NOT EXISTS principals_v1_email ON principals_v1 (kind, lower(email), principal_id)
    WHERE NOT deleted AND email IS NOT NULL;
CREATE INDEX IF NOT EXISTS principals_v1_name ON principals_v1 (kind, lower(name), principal_id)
    WHERE NOT deleted AND email IS NOT NULL;
CREATE INDEX IF NOT EXISTS principals_v1_deadline
    ON principals_v1 (kind, COALESCE(deadline, 'infinity'::timestamptz), principal_id)
    WHERE NOT deleted AND email IS NOT NULL;

CREATE TABLE IF NOT EXISTS resources_v1 (
    system_id   uuid PRIMARY KEY,
    name        text,
    kind        text,
    mfa_enabled boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL
);

-- The newest version of each aggregate the projections have applied: read-your-writes waits on it.
CREATE TABLE IF NOT EXISTS projected_versions (
    aggregate_id text PRIMARY KEY,
    version      integer NOT NULL
);

-- Every event of every service, in the order the gateway received them. Append-only: each record
-- carries a SHA-256 over its content and the previous record's hash, so an edit breaks the chain.
CREATE TABLE IF NOT EXISTS audit_log (
    seq            bigint PRIMARY KEY,
    event_id       uuid NOT NULL UNIQUE,
    type           text NOT NULL,
    aggregate_id   text NOT NULL,
    principal_id   uuid,
    actor          text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    envelope       jsonb NOT NULL,
    prev_hash      text NOT NULL,
    hash           text NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_principal ON audit_log (principal_id, seq);
CREATE INDEX IF NOT EXISTS audit_log_occurred ON audit_log (occurred_at, seq);
CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
