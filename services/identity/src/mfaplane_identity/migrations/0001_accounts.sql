-- Sign-in credentials of users and admins. Password hashes live only here, never in events.
CREATE TABLE IF NOT EXISTS credentials (
    principal_id  uuid PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('user', 'admin')),
    email         text NOT NULL,
    password_hash text NOT NULL,
    deleted       boolean NOT NULL DEFAULT false
);
-- Email is unique regardless of case among the live principals of one kind.
CREATE UNIQUE INDEX IF NOT EXISTS credentials_email ON credentials (kind, lower(email)) WHERE NOT deleted;
