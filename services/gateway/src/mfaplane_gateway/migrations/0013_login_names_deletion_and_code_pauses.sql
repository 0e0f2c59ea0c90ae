-- New read-model columns, empty on the tables in use (no replay needed for what follows from here on):
-- principals: a user's login name on protected systems (UserLoginNameChanged; no user had one before);
--   whether code attempts are paused (TOTPThrottled, until when) or locked (TOTPFactorLocked, until a
--   reset) -- pauses and locks from before this version show once `replay` has rebuilt the read models;
-- resources: deleted (SystemDeleted; none was deleted before), which the lists leave out.
DO $$
DECLARE
    tbl text;
BEGIN
    -- A replay copies the current table's columns into the one it builds: wait for one running now.
    PERFORM pg_advisory_xact_lock(hashtext('mfaplane-replay'));
    FOR tbl IN SELECT t FROM read_models, unnest(ARRAY[current_table, previous_table]) AS t
               WHERE name = 'principals' AND t IS NOT NULL AND to_regclass(t) IS NOT NULL LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS login_name text, '
                       'ADD COLUMN IF NOT EXISTS throttled_until timestamptz, '
                       'ADD COLUMN IF NOT EXISTS codes_locked boolean NOT NULL DEFAULT false', tbl);
    END LOOP;
    FOR tbl IN SELECT t FROM read_models, unnest(ARRAY[current_table, previous_table]) AS t
               WHERE name = 'resources' AND t IS NOT NULL AND to_regclass(t) IS NOT NULL LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS deleted boolean NOT NULL DEFAULT false', tbl);
    END LOOP;
END $$;
