-- Name search (GET /persons?name=, the portal's person search, issue 19) matches a part of the
-- first or last name (LIKE '%...%'): without an index that is a scan of every person. Trigram
-- GIN indexes on the lowered names let PostgreSQL find the matching rows directly.
--
-- pg_trgm ships with PostgreSQL (the embedded stack's too). A service role may not create an
-- extension (no CREATE on the database: deploy/postgres/init-roles.sql), so there the database
-- administrator installs it; the embedded stack's superuser installs it here. The operator
-- classes are looked up in whatever schema holds the extension.
DO $$
DECLARE
    ext_schema text;
BEGIN
    SELECT extnamespace::regnamespace::text INTO ext_schema FROM pg_extension WHERE extname = 'pg_trgm';
    IF ext_schema IS NULL THEN
        BEGIN
            CREATE EXTENSION pg_trgm SCHEMA public;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'contacts needs the pg_trgm extension for name search: as the database administrator run'
                ' CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public (deploy/postgres/init-roles.sql)';
        END;
        ext_schema := 'public';
    END IF;
    EXECUTE format('CREATE INDEX IF NOT EXISTS persons_last_name_trgm ON persons USING gin (lower(last_name) %I.gin_trgm_ops)',
                   ext_schema);
    EXECUTE format('CREATE INDEX IF NOT EXISTS persons_first_name_trgm ON persons USING gin (lower(first_name) %I.gin_trgm_ops)',
                   ext_schema);
END $$;
