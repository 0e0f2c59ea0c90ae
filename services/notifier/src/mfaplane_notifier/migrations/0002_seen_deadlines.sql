-- Every deadline the mfa events of an enrollment have set. Reminders and expiries come from the
-- scheduler on another topic, so one can arrive before the mfa event that set its deadline: until
-- that deadline has been seen here the mail is not judged (it waits), rather than skipped as stale.
ALTER TABLE enrollments ADD COLUMN IF NOT EXISTS seen_deadlines timestamptz[] NOT NULL DEFAULT '{}';
