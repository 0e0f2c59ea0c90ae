-- Opens a session in one round trip (sessions.Tokens.open_session): every sign-in and every step two
-- comes here, and as separate statements in a transaction it cost six round trips.
--
-- The principal's advisory lock is taken first, the lock the projector takes before it records a
-- cutoff and ends the sessions before it (sessions.end_sessions_before). Each statement after it
-- reads what was committed before it began (plpgsql, READ COMMITTED), so a cutoff committed while
-- this waited for the lock is seen, and one committed later finds this session and ends it.
-- Answers 'opened', 'redeemed' (the challenge opened a session already) or 'cut_off'.
CREATE OR REPLACE FUNCTION open_session(
    p_session_id uuid, p_principal_id uuid, p_kind text, p_created_at timestamptz, p_expires_at timestamptz,
    p_authenticated_at timestamptz, p_mfa_verified_at timestamptz, p_challenge_id uuid,
    p_challenge_expires_at timestamptz
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
    INSERT INTO sessions (session_id, principal_id, kind, created_at, expires_at, authenticated_at, mfa_verified_at)
        VALUES (p_session_id, p_principal_id, p_kind, p_created_at, p_expires_at, p_authenticated_at,
                p_mfa_verified_at);
    RETURN 'opened';
END
$$;
