-- Text search in the user lists (`q`: text anywhere in email or name, `ILIKE '%...%'`) through trigram
-- indexes. Without them a search matching few users reads every row in email order: about 2 s at a
-- million users (docs/performance.md, status lists). pg_trgm is a trusted extension (PostgreSQL 13+):
-- the database owner can create it; it goes to `public` so every service schema (and each test's
-- scratch schema) uses the one copy. Where it cannot be created the indexes are skipped with a notice
-- and search stays a scan: same answers, only slower.
DO $$
DECLARE
    ext_schema text;
    tbl text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('mfaplane-extension:pg_trgm'));
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
    EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
        RAISE NOTICE 'pg_trgm not available (%): user search stays a scan', SQLERRM;
    END;
    SELECT n.nspname INTO ext_schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF ext_schema IS NULL THEN
        RETURN;
    END IF;
    -- The principals tables in use (after a replay: principals_v2...); replays copy the indexes on.
    FOR tbl IN SELECT t FROM read_models, unnest(ARRAY[current_table, previous_table]) AS t
               WHERE name = 'principals' AND t IS NOT NULL AND to_regclass(t) IS NOT NULL LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I USING gin (email %I.gin_trgm_ops) '
                       'WHERE NOT deleted AND email IS NOT NULL', tbl || '_email_trgm', tbl, ext_schema);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I USING gin (name %I.gin_trgm_ops) '
                       'WHERE NOT deleted AND email IS NOT NULL', tbl || '_name_trgm', tbl, ext_schema);
    END LOOP;
END $$;
