-- Expired sessions are deleted in the background (sessions.delete_expired), oldest first: without
-- this index each pass would read the whole table, which gains a row at every sign-in. Sign-ins
-- wait for the build; on a large table build it beforehand with CREATE INDEX CONCURRENTLY
-- (docs/operations.md), and this then does nothing.
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
