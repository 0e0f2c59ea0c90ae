-- Durable deadline timers: a reminder some time before each enrollment deadline, and the expiry at
-- it. One row per (enrollment, timer); moving a deadline replaces the row, so a timer can only fire
-- for the deadline that is current.
CREATE TABLE IF NOT EXISTS deadline_timers (
    enrollment_id  text NOT NULL,
    timer          text NOT NULL,  -- 'expiry' or 'reminder:<seconds before the deadline>'
    principal_id   uuid NOT NULL,
    scope          text NOT NULL,
    deadline       timestamptz NOT NULL,
    due_at         timestamptz NOT NULL,
    PRIMARY KEY (enrollment_id, timer)
);
-- The firing loop reads only the due end of this index, however many timers are pending.
CREATE INDEX IF NOT EXISTS deadline_timers_due ON deadline_timers (due_at);
