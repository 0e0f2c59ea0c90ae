-- A challenge gives at most one session: redeeming it inserts its id here, once. Rows go when the
-- challenge would have expired anyway (sessions.delete_expired).
CREATE TABLE IF NOT EXISTS redeemed_challenges (
    challenge_id uuid PRIMARY KEY,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS redeemed_challenges_expiry ON redeemed_challenges (expires_at);

-- The moment of the latest event that ends a principal's sessions (password change, MFA reset or
-- newly required, deletion): a challenge handed out before it is refused, a session whose password
-- was checked before it is ended.
CREATE TABLE IF NOT EXISTS principal_cutoffs (
    principal_id uuid PRIMARY KEY,
    not_before   timestamptz NOT NULL
);

-- When the session's password was checked (its challenge's issue time), which a cutoff compares
-- with: a session opened after the cutoff from a challenge issued before it ends too.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS authenticated_at timestamptz;
UPDATE sessions SET authenticated_at = created_at WHERE authenticated_at IS NULL;
ALTER TABLE sessions ALTER COLUMN authenticated_at SET NOT NULL;
