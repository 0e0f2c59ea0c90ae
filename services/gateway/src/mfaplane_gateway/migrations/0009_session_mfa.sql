-- When the session's holder last proved their second factor with a code: at sign-in (verify or
-- setup confirmation) or by a step-up. NULL: signed in without a code. The admin API refuses an
-- admin session without one, and minting an API key needs one from the last few minutes.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS mfa_verified_at timestamptz;
