-- Who can be mailed, from identity events.
CREATE TABLE IF NOT EXISTS recipients (
    principal_id uuid PRIMARY KEY,
    kind         text NOT NULL,
    email        text NOT NULL,
    name         text NOT NULL,
    deleted      boolean NOT NULL DEFAULT false
);

-- The current state of each enrollment, from mfa events: a mail is only sent while it still holds.
CREATE TABLE IF NOT EXISTS enrollments (
    enrollment_id text PRIMARY KEY,
    required      boolean NOT NULL,
    configured    boolean NOT NULL,
    deadline      timestamptz
);

-- One row per notification, queued by the consumer and sent by the mail loop.
CREATE TABLE IF NOT EXISTS notifications (
    event_id        uuid PRIMARY KEY,
    kind            text NOT NULL,
    principal_id    uuid NOT NULL,
    enrollment_id   text NOT NULL,
    deadline        timestamptz,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'skipped', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,  -- wall-clock time, like claimed_until: delivery is real time
    claimed_until   timestamptz,           -- a sender's lease while it talks to the SMTP server
    last_error      text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (greatest(next_attempt_at, claimed_until))
    WHERE status = 'pending';
