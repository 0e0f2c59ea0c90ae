-- Pages of users in email order read their keys from one index, searched or not (docs/performance.md,
-- status lists). The email index now also carries email and name (INCLUDE), so a search that matches
-- many users (a common surname) walks it in order and tests each entry without reading the table: an
-- index-only scan, where every row read was a heap fetch before. Both columns are in indexes already,
-- so updates that could be HOT stay HOT. The planner takes that walk only if it sees that a pattern
-- matches many rows, which it judges from the column's histogram: with the default 100 entries a
-- pattern matching 1% of users is as likely to be estimated at 0.02% as at 2%, so both columns get
-- 1,000 (ANALYZE samples 300,000 rows instead of 30,000).
DO $$
DECLARE
    tbl text;
    old_index text;
    lock_timeout_before text := current_setting('lock_timeout');
BEGIN
    -- A replay copies the current table's indexes and statistics targets into the one it builds; a
    -- replay running now would build a table without these, so wait for it (one starting meanwhile
    -- refuses: it takes the same lock).
    PERFORM pg_advisory_xact_lock(hashtext('mfaplane-replay'));
    -- Writes to the table wait for the index build; a query holding the table (a long read, a
    -- dump) fails the migration after 10 s rather than stalling the service behind it. Rerun it then.
    PERFORM set_config('lock_timeout', '10s', true);
    -- The previous table too while a replay's grace period still writes it; the current one last, so
    -- that the drop of its old index, which stops reads of it until the commit, is held the shortest.
    FOR tbl IN SELECT u.t FROM read_models,
                   unnest(ARRAY[CASE WHEN previous_until > now() THEN previous_table END, current_table])
                       WITH ORDINALITY AS u(t, n)
               WHERE name = 'principals' AND u.t IS NOT NULL AND to_regclass(u.t) IS NOT NULL ORDER BY u.n LOOP
        IF NOT EXISTS (SELECT FROM pg_indexes WHERE schemaname = current_schema() AND tablename = tbl
                       AND indexdef LIKE '%(kind, lower(email), principal_id) INCLUDE (email, name) WHERE%') THEN
            EXECUTE format('CREATE INDEX %I ON %I (kind, lower(email), principal_id) INCLUDE (email, name) '
                           'WHERE NOT deleted AND email IS NOT NULL', tbl || '_email_keys', tbl);
        END IF;
        EXECUTE format('ALTER TABLE %I ALTER COLUMN email SET STATISTICS 1000, ALTER COLUMN name SET STATISTICS 1000',
                       tbl);
        EXECUTE format('ANALYZE %I', tbl);
        -- The index it replaces (named by 0001, or by PostgreSQL on a table a replay made)
        FOR old_index IN SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = tbl
                         AND indexdef LIKE '%(kind, lower(email), principal_id) WHERE%' LOOP
            EXECUTE format('DROP INDEX %I', old_index);
        END LOOP;
    END LOOP;
    PERFORM set_config('lock_timeout', lock_timeout_before, true);
END $$;
