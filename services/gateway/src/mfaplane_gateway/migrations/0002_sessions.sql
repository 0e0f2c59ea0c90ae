-- Signed-in sessions of users and admins. The token a client holds is a signature over the id;
-- the row makes a session revocable (sign-out, MFA reset, password change, deletion).
CREATE TABLE IF NOT EXISTS sessions (
    session_id   uuid PRIMARY KEY,
    principal_id uuid NOT NULL,
    kind         text NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX IF NOT EXISTS sessions_principal ON sessions (principal_id) WHERE revoked_at IS NULL;
