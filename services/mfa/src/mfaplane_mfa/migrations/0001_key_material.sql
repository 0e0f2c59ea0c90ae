-- Key material, kept out of the events: TOTP keys sealed with AES-GCM, recovery codes as salted
-- hashes. Deleting a row destroys the key for good (crypto-shredding): the events that mention
-- its secret_id stay, so the history of what happened is kept.
CREATE TABLE IF NOT EXISTS totp_secrets (
    secret_id     uuid PRIMARY KEY,
    enrollment_id text NOT NULL,
    sealed        bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS totp_secrets_enrollment ON totp_secrets (enrollment_id);

CREATE TABLE IF NOT EXISTS recovery_code_hashes (
    secret_id uuid NOT NULL REFERENCES totp_secrets (secret_id) ON DELETE CASCADE,
    position  integer NOT NULL,
    hash      text NOT NULL,
    PRIMARY KEY (secret_id, position)
);
