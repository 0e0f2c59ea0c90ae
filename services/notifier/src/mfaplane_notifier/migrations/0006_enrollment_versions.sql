-- The version of each enrollment the notifier has seen, and the version a timer's mail was set from
-- (timer events v2): a reminder or expiry is judged once the first reaches the second. NULL: from
-- before, judged by the deadlines seen (0002).
ALTER TABLE enrollments ADD COLUMN IF NOT EXISTS version integer;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS enrollment_version integer;
