-- The version of the enrollment event a timer was set from, said by its firing (timer events v2), so
-- that a consumer can tell a stale firing from one that overtook that event. NULL: set before.
ALTER TABLE deadline_timers ADD COLUMN IF NOT EXISTS enrollment_version integer;
