-- A system or application can be deleted (SystemDeleted): the lists leave it out. None was deleted
-- before, so the tables in use need no replay: the column starts false.
DO $$
DECLARE
    tbl text;
BEGIN
    -- A replay copies the current table's columns into the one it builds: wait for one running now.
    PERFORM pg_advisory_xact_lock(hashtext('mfaplane-replay'));
    FOR tbl IN SELECT t FROM read_models, unnest(ARRAY[current_table, previous_table]) AS t
               WHERE name = 'resources' AND t IS NOT NULL AND to_regclass(t) IS NOT NULL LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS deleted boolean NOT NULL DEFAULT false', tbl);
    END LOOP;
END $$;
