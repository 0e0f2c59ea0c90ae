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
BEGIN
    -- The current table last (a previous one exists during a replay's grace period): the drop of its
    -- old index, which stops reads of it until the commit, is then held the shortest.
    FOR tbl IN SELECT t FROM read_models, unnest(ARRAY[previous_table, current_table]) AS t
               WHERE name = 'principals' AND t IS NOT NULL AND to_regclass(t) IS NOT NULL LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (kind, lower(email), principal_id) INCLUDE (email, name) '
                       'WHERE NOT deleted AND email IS NOT NULL', tbl || '_email_keys', tbl);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN email SET STATISTICS 1000, ALTER COLUMN name SET STATISTICS 1000',
                       tbl);
        EXECUTE format('ANALYZE %I', tbl);
        -- The index it replaces (named by 0001, or by PostgreSQL on a table a replay made). Dropped last:
        -- its lock stops reads of the table until the migration commits; the index build only writes.
        FOR old_index IN SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = tbl
                         AND indexdef LIKE '%(kind, lower(email), principal_id) WHERE%' LOOP
            EXECUTE format('DROP INDEX %I', old_index);
        END LOOP;
    END LOOP;
END $$;
