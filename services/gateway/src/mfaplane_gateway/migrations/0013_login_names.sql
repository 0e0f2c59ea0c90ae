-- A user's login name on protected systems (UserLoginNameChanged), shown in the user's details and
-- lists. No user had one before, so the tables in use need no replay: the column starts empty.
DO $$
DECLARE
    tbl text;
BEGIN
    -- A replay copies the current table's columns into the one it builds: wait for one running now.
    PERFORM pg_advisory_xact_lock(hashtext('mfaplane-replay'));
    FOR tbl IN SELECT t FROM read_models, unnest(ARRAY[current_table, previous_table]) AS t
               WHERE name = 'principals' AND t IS NOT NULL AND to_regclass(t) IS NOT NULL LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS login_name text', tbl);
    END LOOP;
END $$;
