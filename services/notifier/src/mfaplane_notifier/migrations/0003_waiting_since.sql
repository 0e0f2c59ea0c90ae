-- When a notification began waiting for its recipient or deadline to be known here (events of
-- another topic still behind, e.g. during a broker rebuild): waiting spends no SMTP attempt and is
-- bounded by MAIL_WAIT_MAX_SECONDS of wall-clock time from this moment.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS waiting_since timestamptz;
