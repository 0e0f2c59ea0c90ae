-- The failed-password counts per email and per source are counters a sign-in writes up to four
-- times (a slot taken before argon2, given back on success). Logged, each write waited for a WAL
-- flush: about 3 ms of a 14 ms sign-in on the bench's host (docs/performance.md, issue 17).
-- Unlogged, they are not flushed, not replicated, and emptied after a database crash or failover:
-- an attacker then gets a fresh window once, which the limits bound again from the next attempt.
-- Nothing else is lost.
ALTER TABLE password_failures SET UNLOGGED;
ALTER TABLE source_failures SET UNLOGGED;
