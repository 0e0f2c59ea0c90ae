-- Whose each mailed password reset is, so that a reset link (its token carries the reset id only)
-- finds its account. Whether the reset is still open is the account's events' to say.
CREATE TABLE IF NOT EXISTS password_resets (
    reset_id     uuid PRIMARY KEY,
    principal_id uuid NOT NULL
);
