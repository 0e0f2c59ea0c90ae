-- Sign-ins to SSO applications (sso/): the requests the gateway was sent that the user has not
-- finished yet, the OpenID Connect authorization codes and the access tokens it issued. Every token is
-- kept as its SHA-256 hash only; rows go when they expire (sessions.delete_expired).
CREATE TABLE IF NOT EXISTS pending_sign_ins (
    token_hash     bytea PRIMARY KEY,
    application_id uuid NOT NULL,
    protocol       text NOT NULL,
    request        jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    -- SAML: the signed response, until the page that posts it is served (once), under a token of its own
    response       text,
    response_token_hash bytea UNIQUE
);
CREATE INDEX IF NOT EXISTS pending_sign_ins_expiry ON pending_sign_ins (expires_at);

-- An authorization code is redeemed once (used_at); a second try revokes what the first one gave.
-- Codes and tokens name their user and when the sign-in ended: one cut off since (principal_cutoffs)
-- is refused.
CREATE TABLE IF NOT EXISTS oidc_codes (
    code_hash      bytea PRIMARY KEY,
    application_id uuid NOT NULL,
    principal_id   uuid NOT NULL,
    authenticated_at timestamptz NOT NULL,
    grant_data     jsonb NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX IF NOT EXISTS oidc_codes_expiry ON oidc_codes (expires_at);

CREATE TABLE IF NOT EXISTS oidc_access_tokens (
    token_hash     bytea PRIMARY KEY,
    code_hash      bytea NOT NULL,
    principal_id   uuid NOT NULL,
    authenticated_at timestamptz NOT NULL,
    claims         jsonb NOT NULL,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS oidc_access_tokens_expiry ON oidc_access_tokens (expires_at);
CREATE INDEX IF NOT EXISTS oidc_access_tokens_code ON oidc_access_tokens (code_hash);

-- A challenge redeemed without a session: the last step of a sign-in to an application, which goes
-- back to the application and opens no session here. The same checks as open_session, which now
-- redeems through it: under the principal's advisory lock, once, and not past a cutoff.
CREATE OR REPLACE FUNCTION redeem_challenge(
    p_principal_id uuid, p_authenticated_at timestamptz, p_challenge_id uuid, p_challenge_expires_at timestamptz
) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_principal_id::text, 0));
    IF p_challenge_id IS NOT NULL THEN
        INSERT INTO redeemed_challenges (challenge_id, expires_at) VALUES (p_challenge_id, p_challenge_expires_at)
            ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN 'redeemed';
        END IF;
    END IF;
    IF EXISTS (SELECT FROM principal_cutoffs WHERE principal_id = p_principal_id
               AND p_authenticated_at <= not_before) THEN
        RETURN 'cut_off';
    END IF;
    RETURN 'redeemable';
END
$$;

CREATE OR REPLACE FUNCTION open_session(
    p_session_id uuid, p_principal_id uuid, p_kind text, p_created_at timestamptz, p_expires_at timestamptz,
    p_authenticated_at timestamptz, p_mfa_verified_at timestamptz, p_challenge_id uuid,
    p_challenge_expires_at timestamptz
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    outcome text := redeem_challenge(p_principal_id, p_authenticated_at, p_challenge_id, p_challenge_expires_at);
BEGIN
    IF outcome <> 'redeemable' THEN
        RETURN outcome;
    END IF;
    INSERT INTO sessions (session_id, principal_id, kind, created_at, expires_at, authenticated_at, mfa_verified_at)
        VALUES (p_session_id, p_principal_id, p_kind, p_created_at, p_expires_at, p_authenticated_at,
                p_mfa_verified_at);
    RETURN 'opened';
END
$$;
