-- What a notice about a principal's codes tells: until when code entry is paused (TOTPThrottled),
-- how many recovery codes are left after one was used (TOTPVerified with a recovery code).
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS paused_until timestamptz;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS recovery_codes_left integer;
